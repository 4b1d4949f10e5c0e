"""The processes behind ``env.n_envs > 1``: each env with its expert in an :class:`_EnvHost`,
env 0 in the run's own process and the others in spawned workers (:class:`EnvWorkers`), and the
expert of one env as the gate sees it (:class:`RemoteExpert`). :class:`~gatekit.runs.envs.WorkerEnvs`
gates them."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Collection, Iterator
from typing import Any

import numpy as np

from gatekit.config import Component
from gatekit.errors import GatekitError
from gatekit.experts.base import Expert
from gatekit.processes import start_deaf_to_ctrl_c


class _EnvHost:
    """One env and its expert (train split), answering the requests of :class:`EnvWorkers` by
    name: in a worker process, or in the run's own process for env 0."""

    def __init__(self, env_comp: Component, expert_comp: Component, seed: int) -> None:
        from gatekit.arguments import build
        from gatekit.envs import ENVS
        from gatekit.experts import EXPERTS

        self.env = build(ENVS, env_comp, "env", split="train", seed=seed)
        try:
            self.expert = build(EXPERTS, expert_comp, "expert", env=self.env)
            self.expert.bind(self.env)
        except BaseException:
            self.env.close()
            raise
        self.handlers: dict[str, Callable[..., Any]] = {
            "reset": lambda seed: self.env.reset(seed=seed),
            "step": self.step,
            "act": lambda obs: self.expert.act(obs),
            "log_prob": lambda obs, action: float(self.expert.log_prob(obs, action)),
            "expert_reset": lambda seed: self.expert.reset(seed=seed),
        }

    def step(self, action: Any, prefetch: bool = False) -> tuple[Any, tuple[str, Any] | None]:
        """The env's step, and with ``prefetch`` (the expert is in control) the expert's action on
        the next observation, computed now, while the parent works: ``("ok", action)``, or
        ``("error", line)`` for the parent to raise when the gate asks for it (the step's own
        record comes first); None after the episode's last step or without ``prefetch``."""
        out = self.env.step(action)
        if not prefetch or out[2] or out[3]:
            return out, None
        try:
            return out, ("ok", self.expert.act(out[0]))
        except Exception as exc:
            return out, ("error", _one_line(exc))

    def ready(self) -> tuple[Any, ...]:
        """What the parent needs to know: spaces, log_prob, a person, the env's metadata."""
        expert, env = self.expert, self.env
        return (env.observation_space, env.action_space, bool(getattr(expert, "has_log_prob", False)),
                callable(getattr(expert, "claim_control", None)), dict(env.metadata))

    def close(self) -> None:
        try:
            self.expert.close()  # before the env: an expert's window may share the simulator's display
        finally:
            self.env.close()


def _worker_main(conn: Any, env_comp: Component, expert_comp: Component, seed: int) -> None:
    """An env and its expert, answering the parent's requests until ``close``."""
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle: it stops, then closes us
    try:
        host = _EnvHost(env_comp, expert_comp, seed)
    except Exception as exc:  # reported to the parent, which raises it there
        conn.send(("error", _one_line(exc)))
        return
    if "torch" in sys.modules:  # an expert on torch: one thread per process (the envs run side by side)
        sys.modules["torch"].set_num_threads(1)
    conn.send(("ready", host.ready()))
    try:
        while True:
            cmd, args = conn.recv()
            if cmd == "close":
                break
            try:
                conn.send(("ok", host.handlers[cmd](*args)))
            except Exception as exc:
                conn.send(("error", _one_line(exc)))
    except (EOFError, KeyboardInterrupt):  # the parent went away or was interrupted
        pass
    finally:
        host.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class EnvWorkers:
    """``n`` envs with their experts (the recipe's env, train split): env 0 in this process
    (with ``here``, the default), the others in worker processes.

    Args:
        env_comp: the env component (its factory is called with ``seed``).
        expert_comp: the expert component (built on its env).
        n: how many.
        seed: the run's seed; env ``i`` is built with a seed derived from it and ``i`` (the same
            wherever it lives, so a run's records do not depend on ``here``).
        here: build env 0 in this process, which steps it while the workers step theirs (False:
            every env in a worker process, this one only waits).
    """

    def __init__(self, env_comp: Component, expert_comp: Component, n: int, *, seed: int, here: bool = True) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no simulator state is inherited
        seeds = np.random.SeedSequence([seed, 7919]).generate_state(n)
        self.n = n
        self._prefetched: dict[int, tuple[str, Any]] = {}
        self._host: _EnvHost | None = None
        self._conns: dict[int, Any] = {}
        self._procs: dict[int, Any] = {}
        for i in range(1 if here else 0, n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, env_comp, expert_comp, int(seeds[i])), daemon=True)
            start_deaf_to_ctrl_c(proc)  # not killed by a Ctrl-C while it imports the simulator
            child.close()
            self._conns[i] = parent
            self._procs[i] = proc
        try:
            if here:  # built while the workers start theirs
                try:
                    self._host = _EnvHost(env_comp, expert_comp, int(seeds[0]))
                except GatekitError:
                    raise
                except Exception as exc:
                    raise GatekitError(f"env 0 (in this process): {_one_line(exc)}") from exc
            ready = [self._host.ready()] if self._host is not None else []
            ready += [self._receive(i) for i in sorted(self._conns)]
        except BaseException:
            self.close()
            raise
        self.observation_space, self.action_space, self.has_log_prob, self.has_person, self.metadata = ready[0]

    @property
    def processes(self) -> int:
        """How many worker processes (``n - 1`` with env 0 here, else ``n``)."""
        return len(self._procs)

    def _receive(self, i: int) -> Any:
        try:
            status, payload = self._conns[i].recv()
        except EOFError:
            raise GatekitError(f"env worker {i} died (exit code {self._procs[i].exitcode}); see its output above") from None
        if status == "error":
            raise GatekitError(f"env worker {i}: {payload}")
        return payload

    def _here(self, cmd: str, args: tuple[Any, ...]) -> Any:
        """Env 0's answer, with a worker's errors: one line, as a :class:`GatekitError`."""
        assert self._host is not None
        try:
            return self._host.handlers[cmd](*args)
        except GatekitError:
            raise
        except Exception as exc:
            raise GatekitError(f"env 0 (in this process): {_one_line(exc)}") from exc

    def call(self, i: int, cmd: str, *args: Any) -> Any:
        """Run ``cmd`` for env ``i`` and wait for its answer (``act``: the prefetched action of
        the last step, when there is one)."""
        prefetched = self._prefetched.pop(i, None) if cmd in ("act", "reset", "expert_reset") else None
        if cmd == "act" and prefetched is not None:
            status, payload = prefetched
            if status == "error":
                raise GatekitError(f"env worker {i}: {payload}" if i in self._conns else f"env 0 (in this process): {payload}")
            return payload
        if i not in self._conns:
            return self._here(cmd, args)
        self._conns[i].send((cmd, args))
        return self._receive(i)

    def step_each(self, actions: dict[int, Any], prefetch: Collection[int] = ()) -> Iterator[tuple[int, Any]]:
        """Step the envs of ``actions`` in parallel and yield ``(env, result)`` in the order of
        ``actions``, each as soon as it is there: what the caller does with env 0's result
        overlaps the workers' steps. The envs in ``prefetch`` also compute their expert's
        action on the next observation, alongside (the next ``call(i, "act")`` returns it)."""
        for i in actions:
            self._prefetched.pop(i, None)
            if i in self._conns:
                self._conns[i].send(("step", (actions[i], i in prefetch)))
        for i in actions:
            result, prefetched = (self._receive(i) if i in self._conns
                                  else self._here("step", (actions[i], i in prefetch)))
            if prefetched is not None:
                self._prefetched[i] = prefetched
            yield i, result

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.send(("close", ()))
            except (BrokenPipeError, OSError):
                pass
        try:
            if self._host is not None:
                self._host.close()
                self._host = None
        finally:
            for proc in self._procs.values():
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.terminate()


class RemoteExpert(Expert):
    """The expert of one env worker, asked through its pipe (the gate sees an ordinary expert)."""

    def __init__(self, workers: EnvWorkers, index: int) -> None:
        super().__init__(workers.observation_space, workers.action_space)
        self.workers = workers
        self.index = index
        self.has_log_prob = workers.has_log_prob

    def act(self, obs: Any) -> Any:
        return self.workers.call(self.index, "act", obs)

    def log_prob(self, obs: Any, action: Any) -> float:
        return float(self.workers.call(self.index, "log_prob", obs, action))

    def reset(self, *, seed: int | None = None) -> None:
        super().reset(seed=seed)
        self.workers.call(self.index, "expert_reset", seed)
