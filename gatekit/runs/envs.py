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

The processes themselves (where each env and its expert live, and how they answer) are in
:mod:`gatekit.runs.env_workers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gatekit.errors import GatekitError
from gatekit.runs.env_workers import EnvWorkers, RemoteExpert
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


__all__ = ["EnvBatch", "EnvWorkers", "InProcessEnvs", "RemoteExpert", "StepOut", "WorkerEnvs"]
