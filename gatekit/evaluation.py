"""Evaluation on held-out scenes: the novice (or the expert) alone, no gate.

Episode ``i`` of an evaluation resets the test env with ``seed=i``, so every evaluation of a
run, and of every run of a comparison, visits the same held-out scenes. Metrics per episode:
``success`` (``info["is_success"]``), ``return``, ``length``, and the env's extra metrics
(``env.metadata["gatekit_metrics"]``, e.g. MetaDrive's ``route_completion``). Summaries give
the mean, the standard deviation and a 95% interval half-width (normal approximation);
:meth:`Stat.interval` gives a success rate's 95% interval as Wilson's score interval, which
stays in [0, 1] where the normal one leaves it (0.9 success in 10 episodes: [0.6, 0.98], not
[0.71, 1.09]).

:class:`EvalWorker` runs evaluations in a separate process: simulators that allow one engine
per process (MetaDrive) never see a second engine, and training goes on while the second core
evaluates.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gatekit.arguments import build
from gatekit.config import Component
from gatekit.envs.base import METRICS_KEY
from gatekit.errors import EvaluationError
from gatekit.processes import start_deaf_to_ctrl_c


@dataclass(frozen=True)
class Stat:
    """Mean, standard deviation, 95% interval half-width and count of one metric."""

    mean: float
    std: float
    ci95: float
    n: int

    @staticmethod
    def of(values: list[float]) -> Stat:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return Stat(math.nan, math.nan, math.nan, 0)
        std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
        return Stat(float(arr.mean()), std, 1.96 * std / math.sqrt(arr.size), int(arr.size))

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "ci95": self.ci95, "n": self.n}

    def interval(self, *, proportion: bool = False) -> tuple[float, float]:
        """The 95% interval: Wilson's for a proportion (a success rate: in [0, 1]), else
        ``mean +- ci95``."""
        if proportion:
            return wilson(self.mean, self.n)
        return self.mean - self.ci95, self.mean + self.ci95


PROPORTIONS = ("success",)
"""Metrics that are fractions of episodes (their intervals are Wilson's)."""


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``p`` observed in ``n`` trials (NaNs for n = 0).

    Example:
        >>> [round(x, 3) for x in wilson(0.9, 10)]
        [0.596, 0.982]
        >>> wilson(1.0, 5)[1]
        1.0
    """
    if n <= 0 or p != p:
        return math.nan, math.nan
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(episodes: list[dict[str, float]]) -> dict[str, Stat]:
    """Per-metric :class:`Stat` over a list of per-episode metric dicts."""
    keys = sorted({k for ep in episodes for k in ep})
    return {k: Stat.of([ep[k] for ep in episodes if k in ep]) for k in keys}


def run_episodes(env: Any, act: Callable[[Any], Any], episodes: int, *, on_episode: Callable[[int], None] | None = None,
                 reset_actor: Callable[[int], None] | None = None, first: int = 0) -> list[dict[str, float]]:
    """Run ``episodes`` test episodes (seeds ``first .. first + episodes - 1``) with ``act`` and
    return their metrics. Each episode depends on its seed alone, so a set of episodes split
    into parts (run anywhere) gives the same metrics as one run."""
    extra = list(env.metadata.get(METRICS_KEY, []))
    out = []
    for i in range(first, first + episodes):
        obs, info = env.reset(seed=i)
        _check_finite(obs, i, 0)
        if reset_actor is not None:
            reset_actor(i)
        ret, length = 0.0, 0
        while True:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            ret += float(reward)
            length += 1
            _check_finite(obs, i, length, reward=ret)
            if terminated or truncated:
                break
        ep = {"success": float(bool(info.get("is_success", False))), "return": ret, "length": float(length)}
        for key in extra:
            if key in info:
                ep[key] = float(info[key])
        out.append(ep)
        if on_episode is not None:
            on_episode(i)
    return out


def _check_finite(obs: Any, episode: int, step: int, *, reward: float = 0.0) -> None:
    """A test episode with a NaN/inf observation or return has no meaningful figures."""
    arr = np.asarray(obs)
    bad = np.issubdtype(arr.dtype, np.floating) and not bool(np.isfinite(arr).all())
    if bad or not math.isfinite(reward):
        what = "observation" if bad else "reward"
        raise EvaluationError(f"the test env returned a non-finite {what} in test episode {episode} at step {step}; "
                              f"fix the env or wrap it to sanitise its {what}s")


def evaluate(env_comp: Component, actor: Any, episodes: int, *, expert_comp: Component | None = None,
             on_episode: Callable[[int], None] | None = None, first: int = 0) -> list[dict[str, float]]:
    """Build the test env from ``env_comp`` and evaluate ``actor`` on it.

    ``actor`` is a policy (``obs -> action``); with ``expert_comp`` the expert it names is built
    on the test env and evaluated instead (``actor`` is ignored). ``first`` is the first
    episode's index (its reset seed): an evaluation cut into parts visits the same episodes.
    """
    from gatekit.envs import ENVS
    from gatekit.experts import EXPERTS

    env = build(ENVS, env_comp, "env", split="test", seed=0)
    try:
        if expert_comp is not None:
            expert = build(EXPERTS, expert_comp, "expert", env=env)
            expert.bind(env)
            return run_episodes(env, expert.act, episodes, on_episode=on_episode,
                                reset_actor=lambda i: expert.reset(seed=10_000 + i), first=first)
        return run_episodes(env, actor, episodes, on_episode=on_episode, first=first)
    finally:
        env.close()


def _worker_main(conn: Any, threads: int) -> None:
    import torch

    # Ctrl-C reaches every process of the terminal's group: the run decides (it checkpoints,
    # then closes this worker), so the worker must not die first and look like a crash. It
    # started with SIGINT ignored (start_deaf_to_ctrl_c); this keeps it so if started otherwise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        tag, env_comp, actor, episodes, expert_comp, first = msg

        def tick(i: int, tag: str = tag) -> None:
            conn.send((tag, "episode", i))

        try:
            result: Any = evaluate(env_comp, actor, episodes, expert_comp=expert_comp, first=first, on_episode=tick)
            conn.send((tag, "ok", result))
        except Exception as exc:  # reported to the parent, which decides
            text = (str(exc).splitlines() or [""])[0][:300]
            conn.send((tag, "error", text if isinstance(exc, EvaluationError) else
                       f"{type(exc).__name__}{': ' + text if text else ''}"))


class EvalWorker:
    """Evaluations in a spawned worker process, one at a time, in submission order.

    Example:
        worker = EvalWorker()
        worker.submit("step-2000", env_comp, novice_policy, episodes=10)
        ...
        for tag, episodes in worker.poll(): ...
        worker.close()
    """

    def __init__(self, *, threads: int = 1) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_main, args=(child, threads), daemon=True)
        start_deaf_to_ctrl_c(self._proc)
        self.pending: list[str] = []
        self.episodes_done: dict[str, int] = {}
        """Episodes finished so far of each pending evaluation (the worker reports each one)."""

    def submit(self, tag: str, env_comp: Component, actor: Any, episodes: int, *, expert_comp: Component | None = None,
               first: int = 0) -> None:
        """Evaluate ``actor`` (or the expert of ``expert_comp``) on test episodes
        ``first .. first + episodes - 1``."""
        self._conn.send((tag, env_comp, actor, episodes, expert_comp, first))
        self.pending.append(tag)
        self.episodes_done[tag] = 0

    def poll(self, *, block: bool = False, on_episode: Callable[[str, int], None] | None = None
             ) -> list[tuple[str, list[dict[str, float]]]]:
        """Finished evaluations; with ``block`` wait for all pending ones. ``on_episode(tag,
        episodes_done)`` is called as the worker reports each finished episode.

        Raises:
            EvaluationError: an evaluation failed in the worker, or the worker died (killed,
                out of memory); one line naming the evaluation.
        """
        done = []
        while self.pending:
            try:
                if block:
                    while not self._conn.poll(0.5):
                        if not self._proc.is_alive():
                            raise EOFError
                elif not self._conn.poll():
                    break
                tag, status, payload = self._conn.recv()
            except (EOFError, OSError):
                raise EvaluationError(self._death()) from None
            if status == "episode":
                self.episodes_done[tag] = self.episodes_done.get(tag, 0) + 1
                if on_episode is not None:
                    on_episode(tag, self.episodes_done[tag])
                continue
            self.pending.remove(tag)
            self.episodes_done.pop(tag, None)
            if status != "ok":
                raise EvaluationError(f"evaluation '{tag}' failed in the evaluation worker: {payload}")
            done.append((tag, payload))
        return done

    def _death(self) -> str:
        self._proc.join(timeout=5)
        code = self._proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}" if code is not None else "stopped answering"
        tags = ", ".join(f"'{t}'" for t in self.pending) or "nothing"
        return f"the evaluation worker (pid {self._proc.pid}) {how} while evaluating {tags}"

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()
