"""The envs a run steps: one in this process, or ``env.n_envs``: env 0 here, the others in worker processes.

Both kinds offer the loop one interface (:class:`EnvBatch`): reset env ``i`` with a seed, step a
set of envs with the novice's actions, and get back, per env, the reward, the end flags, the
``info`` and the step's record.

* :class:`InProcessEnvs`: one env behind an :class:`~gatekit.wrappers.InterventionWrapper`.
* :class:`WorkerEnvs`: ``n`` envs, each **together with its expert**: env 0 in the run's own
  process, envs 1..n-1 in worker processes, so an expert that reads its simulator (MetaDrive's
  PPO expert, the MiniGrid planner) answers where its env lives and a one-engine-per-process
  simulator never sees two engines in a process. Env 0 steps here while the workers step
  theirs: n envs keep n cores busy with n processes, where n workers and a waiting run process
  would be n + 1 (``bench/env_throughput.py`` measures both). The gate stays here: one
  :class:`~gatekit.wrappers.intervention.StepGate` per env, one criterion deciding for the whole
  batch (``decide_batch``), one record store. The envs step in parallel; the expert is asked
  only when the criterion reads its action (a round trip to that env's process), except that
  while it holds control its next action is computed beside the env's step. Records carry
  their env's index; step and episode ids are global, in env order within a batch, so a run is
  deterministic for a given ``n``.

A person as the expert (the ``keyboard`` expert, a ``needs_person`` criterion such as ``human``)
needs the one window of the run's own process and the wrapper's ``claim_control`` hook on every
step: :class:`WorkerEnvs` refuses them (``env.n_envs: 1`` runs them).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gatekit.config import Component
from gatekit.errors import GatekitError
from gatekit.experts.base import Expert
from gatekit.types import Decision, Transition
from gatekit.wrappers.intervention import (
    K_EPISODE,
    InterventionWrapper,
    StepGate,
    Totals,
    check_obs,
)


@dataclass
class StepOut:
    """What one env's step gave: reward, end flags, ``info`` (with ``info["gatekit"]``), record."""

    env: int
    obs: Any
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    record: Transition


class EnvBatch(Protocol):
    """The loop's view of its envs (see the module docstring)."""

    n: int
    info_key: str

    @property
    def totals(self) -> Totals: ...

    @property
    def next_episode(self) -> int: ...

    def obs(self, i: int) -> Any: ...

    def reset(self, i: int, *, seed: int) -> Any: ...

    def step(self, actions: dict[int, Any]) -> list[StepOut]: ...

    def restore(self, totals: Totals, *, episodes: int) -> None: ...

    def close(self) -> None: ...


class InProcessEnvs:
    """One env, gated by an :class:`~gatekit.wrappers.InterventionWrapper` in this process."""

    n = 1

    def __init__(self, wrapper: InterventionWrapper) -> None:
        self.wrapper = wrapper
        self.info_key = wrapper.info_key
        self._obs: Any = None

    @property
    def totals(self) -> Totals:
        return self.wrapper.totals

    @property
    def next_episode(self) -> int:
        return self.wrapper.episode + 1

    def obs(self, i: int) -> Any:
        return self._obs

    def reset(self, i: int, *, seed: int) -> Any:
        self._obs, _ = self.wrapper.reset(seed=seed)
        return self._obs

    def step(self, actions: dict[int, Any]) -> list[StepOut]:
        obs, reward, terminated, truncated, info = self.wrapper.step(actions[0])
        self._obs = obs
        assert self.wrapper.last_record is not None
        return [StepOut(0, obs, float(reward), bool(terminated), bool(truncated), info, self.wrapper.last_record)]

    def restore(self, totals: Totals, *, episodes: int) -> None:
        self.wrapper.restore(totals, episodes=episodes)

    def close(self) -> None:
        """Close the expert, then the env (MetaDrive's close quits pygame, an expert's window with it)."""
        try:
            self.wrapper.expert.close()
        finally:
            self.wrapper.close()


# -- worker processes ---------------------------------------------------------------------------


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
            proc.start()
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

    def step_many(self, actions: dict[int, Any], prefetch: Collection[int] = ()) -> dict[int, Any]:
        """Step the envs of ``actions`` in parallel (env 0 here while the workers step theirs);
        their results by env index."""
        return dict(self.step_each(actions, prefetch))

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


class WorkerEnvs:
    """``n`` envs in worker processes, gated here (see the module docstring).

    Args:
        workers: the env processes.
        criterion: the gate, deciding for the batch.
        store: where every step's record goes (in env order within a batch).
        warmup_steps: the expert acts on the first N steps of the run (counted over all envs).
        on_nonfinite: what a non-finite novice action does (see the wrapper).
        info_key: the key of the gate's entry in ``info``.
    """

    def __init__(self, workers: EnvWorkers, criterion: Any, store: Any, *, warmup_steps: int = 0,
                 on_nonfinite: str = "expert", info_key: str = "gatekit") -> None:
        if criterion.needs_person:
            raise GatekitError(f"criterion '{criterion.name}' is gated by a person at a window, which env worker "
                               f"processes cannot show; set env.n_envs: 1")
        if workers.has_person:
            raise GatekitError("the expert is a person at a window, which env worker processes cannot show; "
                               "set env.n_envs: 1")
        if criterion.needs_log_prob and not workers.has_log_prob:
            raise GatekitError(f"criterion '{criterion.name}' needs an expert with log_prob(); this expert has none "
                               f"(use criterion 'action-gap' instead)")
        criterion.bind(workers.observation_space, workers.action_space)
        self.workers = workers
        self.criterion = criterion
        self.store = store
        self.warmup_steps = warmup_steps
        self.info_key = info_key
        self.n = workers.n
        self._totals = Totals()
        self._next_episode = 0
        self.gates = [StepGate(expert=RemoteExpert(workers, i), criterion=criterion, action_space=workers.action_space,
                               on_nonfinite=on_nonfinite, index=i) for i in range(self.n)]  # type: ignore[arg-type]
        for gate in self.gates:
            gate.totals = self._totals  # one set of counters over all envs
        self._obs: list[Any] = [None] * self.n

    @property
    def totals(self) -> Totals:
        return self._totals

    @property
    def next_episode(self) -> int:
        return self._next_episode

    def obs(self, i: int) -> Any:
        return self._obs[i]

    def reset(self, i: int, *, seed: int) -> Any:
        obs, _ = self.workers.call(i, "reset", seed)
        expert_seed, criterion_seed = np.random.SeedSequence(seed).generate_state(2)
        self.gates[i].expert.reset(seed=int(expert_seed))
        self.criterion.reset(seed=int(criterion_seed))
        check_obs(obs, self._totals.steps, self._next_episode)
        gate = self.gates[i]
        gate.start_episode()
        gate.episode = self._next_episode
        self._next_episode += 1
        self._obs[i] = obs
        return obs

    def step(self, actions: dict[int, Any]) -> list[StepOut]:
        order = sorted(actions)
        prepared = {i: self.gates[i].prepare(self._obs[i], actions[i]) for i in order}
        first = self._totals.steps
        forced = {i for k, i in enumerate(order) if first + k < self.warmup_steps or not prepared[i][1]}
        ask = [i for i in order if i not in forced]
        decided = dict(zip(ask, self.criterion.decide_batch([prepared[i][0] for i in ask]), strict=True))
        executed, infos = {}, {}
        for i in order:
            ctx, ok = prepared[i]
            executed[i], infos[i] = self.gates[i].resolve(ctx, decided.get(i, Decision(expert_acts=True)), ok)
        # the expert in control reads its action on the next step: computed beside this step
        prefetch = {i for i in order if self.gates[i].expert_in_control}
        out = []
        for i, result in self.workers.step_each(executed, prefetch):  # env 0's record while the workers step
            gate, (ctx, _), ginfo = self.gates[i], prepared[i], infos[i]
            obs, reward, terminated, truncated, info = result
            record = gate.record(ctx, ginfo, float(reward), obs, terminated, truncated)
            self.store.append(record)
            gate.count(ginfo)
            self.criterion.observe(ctx, record)
            check_obs(obs, self._totals.steps, gate.episode)
            if terminated or truncated:
                ginfo[K_EPISODE] = gate.episode_summary()
                self.criterion.end_episode()
            self._obs[i] = obs
            out.append(StepOut(i, obs, float(reward), bool(terminated), bool(truncated),
                               {**info, self.info_key: ginfo}, record))
        return out

    def restore(self, totals: Totals, *, episodes: int) -> None:
        for name in ("steps", "expert_steps", "expert_queries", "switches", "episodes"):
            setattr(self._totals, name, getattr(totals, name))
        self._next_episode = episodes

    def close(self) -> None:
        self.workers.close()
