"""MetaDrive's rule-based IDM driver as a gatekit :class:`Expert` (privileged, stateful).

MetaDrive drives its traffic with ``IDMPolicy``: a PID lane keeper on the route's reference
lanes (heading and lateral error) and the Intelligent Driver Model for speed (a target of
30 km/h, braking for the nearest object ahead in its lane), with optional lane changes to
overtake slow objects and to follow the route through merges. It reads the simulator directly
(lanes, other objects), never the observation, so it needs no training and does not depend on
the novice's observation.

State. ``IDMPolicy`` is stateful: its PID controllers integrate the error of the previous call,
and it tracks its *routing target lane* step by step. MetaDrive calls it on every step; gatekit
queries an expert only when a criterion asks, so between two queries the car may have moved
on by many steps. This module keeps the policy MetaDrive's own when it is queried step after
step, and re-syncs it (PIDs zeroed, routing lane re-read from the car's current lane, as at an
episode start) when a query follows a gap. Without the re-sync a stale routing lane points the
PID at a lane the car left long ago.

Likelihoods. The policy is deterministic, but the human-gated criteria (HG-DAgger's and PVP's
gates, a log-density threshold) need a density. The expert reports a fixed diagonal Gaussian
around its (clipped) action, with the standard deviations of the PVP release's SB3 PPO expert
(sigma = 0.1365 steering, 0.4583 throttle, the ``exp`` of its state-independent ``log_std``):
its gate thresholds were tuned against that density, so a novice is judged by the same
yardstick. ``deterministic=False`` samples that Gaussian; by default the expert acts on the
mean (a rule-based driver's own action; sampling throttle noise of 0.46 only degrades it).

Example:
    >>> from gatekit.envs.metadrive import make_metadrive_env        # doctest: +SKIP
    >>> from gatekit.experts.metadrive_idm import MetaDriveIDMExpert  # doctest: +SKIP
    >>> env = make_metadrive_env(split="test")                        # doctest: +SKIP
    >>> expert = MetaDriveIDMExpert(env=env)                          # doctest: +SKIP
    >>> obs, _ = env.reset(seed=0); expert.reset(seed=0)              # doctest: +SKIP
    >>> action = expert.act(obs)                                      # doctest: +SKIP
    >>> expert.log_prob(obs, action)                                  # doctest: +SKIP
    0.934...
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, ExpertError
from gatekit.experts.base import Expert, gaussian_log_density
from gatekit.experts.metadrive import (
    ACTION_DIM,
    RELEASE_STD,
    check_metadrive_env,
    check_std,
)


class MetaDriveIDMExpert(Expert):
    """MetaDrive's ``IDMPolicy`` driving the ego vehicle, with a fixed Gaussian for likelihoods.

    ``act(obs)`` ignores ``obs`` and reads the bound env's simulator; call it after
    ``env.reset``/``env.step`` and before the next ``env.step`` (gatekit's contract). Two
    queries on the same step return the same action (the policy is advanced once per step).

    Held-out figures (the 50 test maps of the ``metadrive`` env, episode ``i`` on map
    ``1000 + i``; ``python bench/metadrive_ceiling.py --expert metadrive-idm --mode det
    --episodes 50``, metadrive 0.4.3), mean over 50 episodes:

    ====================  =======  =====  ======  =====  ===========
    setting               success  route  return  crash  out of road
    ====================  =======  =====  ======  =====  ===========
    lane changes, mean     0.96    0.98   370     0.22   0.04
    lane changes, sampled  0.98    0.98   372     0.14   0.02
    no lane changes        0.70    0.84   319     0.14   0.00
    ====================  =======  =====  ======  =====  ===========

    (``crash``: any contact during the episode, which ``SafeMetaDriveEnv`` does not end.) The
    PPO policy shipped in the metadrive wheel (``metadrive-ppo``) scores 0.64 / 0.81 there, the
    AIM paper's expert 0.84 / 0.93. Without lane changes the IDM waits behind a broken-down car
    until the episode times out.

    Args:
        env: the MetaDrive env the expert advises (a gatekit MetaDrive env, possibly wrapped).
        lane_change: let the IDM change lanes (to overtake slow objects and follow merges);
            False keeps it in its lane, stopping behind whatever blocks it.
        deterministic: act on the IDM's action; False samples the Gaussian around it.
        sigma: the Gaussian's standard deviations ``[steering, throttle]`` (default: the PVP
            release's expert, :data:`gatekit.experts.metadrive.RELEASE_STD`).
    """

    has_log_prob = True

    def __init__(self, *, env: gym.Env, lane_change: bool = True, deterministic: bool = True,
                 sigma: Any = RELEASE_STD) -> None:
        for name, value in (("lane_change", lane_change), ("deterministic", deterministic)):
            if not isinstance(value, bool | np.bool_):
                raise ConfigError(f"{name}: expected true or false, got {value!r}")
        check_metadrive_env(env, "metadrive-idm")
        super().__init__(env.observation_space, env.action_space)
        self.lane_change = bool(lane_change)
        self.deterministic = bool(deterministic)
        self.sigma = check_std(sigma, "sigma")
        space = env.action_space
        assert isinstance(space, gym.spaces.Box)  # checked above
        self._low = np.asarray(space.low, dtype=np.float64)
        self._high = np.asarray(space.high, dtype=np.float64)
        self._policy: Any = None
        self._vehicle_id: int | None = None
        self._last_step: int | None = None
        self._cache_key: tuple[Any, ...] | None = None
        self._mean: np.ndarray | None = None
        self.resyncs = 0
        """How many queries followed a gap and re-synced the policy (a diagnostic)."""
        self.bind(env)

    def bind(self, env: gym.Env) -> None:
        """Advise ``env`` (a MetaDrive env, possibly wrapped); drops the policy state."""
        check_metadrive_env(env, "metadrive-idm")
        super().bind(env)
        self._drop()

    def reset(self, *, seed: int | None = None) -> None:
        """Start of an episode: re-seed (with a seed) and drop the policy state."""
        super().reset(seed=seed)
        self._drop()

    def _drop(self) -> None:
        self._policy, self._vehicle_id, self._last_step = None, None, None
        self._cache_key, self._mean = None, None

    def _sim(self) -> Any:
        if self.env is None:
            raise ExpertError("expert: metadrive-idm is not bound to an env; call expert.bind(env)")
        sim = self.env.unwrapped
        if getattr(sim, "engine", None) is None:
            raise ExpertError("expert: the MetaDrive env has no engine (not reset yet, or closed); reset it first")
        return sim

    def _ego(self, sim: Any) -> Any:
        agents = sim.agents
        if len(agents) != 1:
            raise ExpertError(f"expert: metadrive-idm drives one ego vehicle, the env has {len(agents)}")
        return next(iter(agents.values()))

    def _new_policy(self, vehicle: Any) -> Any:
        from gatekit.envs.metadrive import import_metadrive

        import_metadrive()
        from metadrive.policy.idm_policy import IDMPolicy

        # The policy's own generator (its overtaking timer) is seeded from this expert's, so
        # a seeded expert.reset makes the episode reproducible.
        policy = IDMPolicy(control_object=vehicle, random_seed=int(self.np_random.integers(2**31 - 1)))
        # IDMPolicy reads this switch from the engine's config at construction; the expert's
        # own setting wins, whatever the env was built with.
        policy.enable_lane_change = self.lane_change
        return policy

    def mean(self) -> np.ndarray:
        """The IDM's action now, clipped to the action space (float64, shape (2,))."""
        sim = self._sim()
        vehicle = self._ego(sim)
        step = int(sim.engine.episode_step)
        key = (id(sim.engine), sim.current_seed, id(vehicle), step)
        if self._mean is not None and key == self._cache_key:
            return self._mean.copy()
        if self._policy is None or self._vehicle_id != id(vehicle):
            self._policy, self._vehicle_id = self._new_policy(vehicle), id(vehicle)
        elif self._last_step is None or step != self._last_step + 1:
            # A gap since the last query: start the controllers afresh from the car's lane.
            self._policy.reset()
            self.resyncs += 1
        raw = np.asarray(self._policy.act(), dtype=np.float64)
        if raw.shape != (ACTION_DIM,) or not np.all(np.isfinite(raw)):
            raise ExpertError(f"expert: MetaDrive's IDM gave a bad action {raw!r}")
        self._mean = np.clip(raw, self._low, self._high)
        self._last_step, self._cache_key = step, key
        return self._mean.copy()

    def act(self, obs: Any) -> np.ndarray:
        """The IDM's action (or a Gaussian sample around it), clipped to ``[-1, 1]^2``."""
        mean = self.mean()
        action = mean if self.deterministic else self.np_random.normal(mean, self.sigma)
        return np.clip(action, self._low, self._high).astype(np.float32)

    def distribution(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the expert's action Gaussian now."""
        return self.mean(), self.sigma.copy()

    def log_prob(self, obs: Any, action: Any) -> float:
        """Log density of ``action`` under ``N(IDM action, diag(sigma^2))`` (clipping ignored)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (ACTION_DIM,):
            raise ExpertError(f"expert: log_prob needs a [steering, throttle] action, got shape {np.shape(action)}")
        return gaussian_log_density(a, self.mean(), self.sigma)
