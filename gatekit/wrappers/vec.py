"""The vectorised twin of :class:`~gatekit.wrappers.InterventionWrapper` for SB3 ``VecEnv``.

Each sub-env has its own expert and its own control state; the criterion is shared and
decides for the whole batch at once (:meth:`Criterion.decide_batch`, which learned gates
override to run their networks once per batch). ``infos[i]["gatekit"]`` has the same schema
as the single-env wrapper's. Experts that read privileged simulator state need the sub-envs
in this process (``DummyVecEnv``); with ``SubprocVecEnv`` only experts that act on the
observation work. A person (an expert with ``claim_control``, such as ``keyboard``, or a
criterion with ``needs_person``, such as ``human``) gates one env at a time: the single-env
wrapper takes them, this one refuses them.

Example:
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from gatekit.envs.toy import EchoEnv
    >>> from gatekit.experts.classic import EchoExpert
    >>> from gatekit.criteria.simple import ActionGapCriterion
    >>> venv = DummyVecEnv([EchoEnv, EchoEnv])
    >>> venv = InterventionVecWrapper(venv, experts=[EchoExpert(env=e, action=[0.0]) for e in venv.envs],
    ...                               criterion=ActionGapCriterion(threshold=0.1))
    >>> obs = venv.reset()
    >>> obs, rewards, dones, infos = venv.step(np.array([[0.0], [0.9]], dtype=np.float32))
    >>> [i["gatekit"]["intervened"] for i in infos]
    [False, True]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from gatekit.criteria.base import Criterion
from gatekit.errors import GatekitError
from gatekit.experts.base import Expert
from gatekit.types import Decision, GateContext
from gatekit.wrappers.intervention import K_EPISODE, StepGate, Totals, check_components


class InterventionVecWrapper(VecEnvWrapper):
    """Gate a batch of envs with one criterion and one expert per env.

    Args:
        venv: the vectorised env.
        experts: one expert per sub-env.
        criterion: the shared gate.
        stores: one record store per sub-env (anything with ``append``), or None.
        info_key: the key of the wrapper's entry in each ``info``.
        on_nonfinite: as for :class:`~gatekit.wrappers.InterventionWrapper`.
    """

    def __init__(self, venv: VecEnv, *, experts: Sequence[Expert], criterion: Criterion,
                 stores: Sequence[Any] | None = None, info_key: str = "gatekit",
                 on_nonfinite: Literal["expert", "raise"] = "expert") -> None:
        super().__init__(venv)
        if len(experts) != venv.num_envs:
            raise ValueError(f"experts: need one expert per env ({venv.num_envs}), got {len(experts)}")
        if stores is not None and len(stores) != venv.num_envs:
            raise ValueError(f"stores: need one store per env ({venv.num_envs}), got {len(stores)}")
        if criterion.needs_person:
            raise GatekitError(f"criterion '{criterion.name}' is gated by a person, who watches one env; "
                               f"use InterventionWrapper on a single env")
        person = next((i for i, e in enumerate(experts) if callable(getattr(e, "claim_control", None))), None)
        if person is not None:
            raise GatekitError(f"experts[{person}]: {type(experts[person]).__name__} is a person, who gates one env; "
                               f"use InterventionWrapper on a single env")
        sub_envs = getattr(venv, "envs", None)
        for i, expert in enumerate(experts):
            check_components(venv, expert, criterion)  # type: ignore[arg-type]
            if sub_envs is not None:
                expert.bind(sub_envs[i])
        criterion.bind(venv.observation_space, venv.action_space)
        self.criterion = criterion
        self.experts = list(experts)
        self.stores = list(stores) if stores is not None else None
        self.info_key = info_key
        self.gates = [StepGate(expert=e, criterion=criterion, action_space=venv.action_space, on_nonfinite=on_nonfinite,
                               index=i) for i, e in enumerate(experts)]
        self._obs: Any = None  # VecEnvObs: array, dict or tuple of arrays
        self._pending: list[tuple[GateContext, dict[str, Any]]] = []

    @property
    def totals(self) -> Totals:
        """Counters summed over sub-envs."""
        t = Totals()
        for g in self.gates:
            for k in ("steps", "expert_steps", "expert_queries", "switches", "episodes"):
                setattr(t, k, getattr(t, k) + getattr(g.totals, k))
        return t

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        if seed is not None:
            states = np.random.SeedSequence(seed).generate_state(2 * len(self.gates) + 1)
            for i, e in enumerate(self.experts):
                e.reset(seed=int(states[i]))
            self.criterion.reset(seed=int(states[-1]))
        return self.venv.seed(seed)

    def reset(self) -> Any:
        obs = self.venv.reset()
        for g in self.gates:
            g.start_episode()
        self._obs = obs
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        prepared = [g.prepare(self._obs[i], actions[i]) for i, g in enumerate(self.gates)]
        ask = [i for i, (_, ok) in enumerate(prepared) if ok]
        decisions: dict[int, Decision] = dict(zip(ask, self.criterion.decide_batch([prepared[i][0] for i in ask]), strict=True))
        executed = []
        self._pending = []
        for i, (g, (ctx, ok)) in enumerate(zip(self.gates, prepared, strict=True)):
            decision = decisions.get(i, Decision(expert_acts=True))  # a NaN novice action: the expert acts
            action, ginfo = g.resolve(ctx, decision, ok)
            executed.append(action)
            self._pending.append((ctx, ginfo))
        self.venv.step_async(np.stack([np.asarray(a) for a in executed]))

    def step_wait(self) -> Any:
        obs: Any
        obs, rewards, dones, infos = self.venv.step_wait()
        infos = list(infos)
        for i, (g, (ctx, ginfo)) in enumerate(zip(self.gates, self._pending, strict=True)):
            done = bool(dones[i])
            truncated = bool(infos[i].get("TimeLimit.truncated", False))
            next_obs = infos[i]["terminal_observation"] if done and "terminal_observation" in infos[i] else obs[i]
            record = g.record(ctx, ginfo, float(rewards[i]), next_obs, done and not truncated, truncated)
            if self.stores is not None:
                self.stores[i].append(record)
            g.count(ginfo)
            self.criterion.observe(ctx, record)
            if done:
                ginfo[K_EPISODE] = g.episode_summary()
                self.criterion.end_episode()
                g.start_episode()
            infos[i] = {**infos[i], self.info_key: ginfo}
        self._obs = obs
        return obs, rewards, dones, infos
