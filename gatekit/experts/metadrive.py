"""The PPO driving expert shipped in the metadrive wheel, as a gatekit :class:`Expert`.

The wheel carries the actor of a PPO agent trained on MetaDrive
(``metadrive/examples/ppo_expert/expert_weights.npz``). This module runs its forward pass in
numpy, reading the ego vehicle of the env it is bound to (privileged access, like a person
watching the road), so it does not depend on the observation the env hands the novice.

The network. A 275-dim observation goes through two tanh layers of 256 units and a linear
layer of 4 outputs: the mean and the log standard deviation of a diagonal Gaussian over
``[steering, throttle]``. The observation is MetaDrive's ``LidarStateObservation`` of the ego
vehicle with 240 lidar lasers (50 m), the 4 nearest vehicles (4 numbers each), no side or
lane-line detector: 9 ego-state + 10 navigation + 16 neighbour + 240 lidar numbers. Entries 10
and 15 (the lateral offsets of the two navigation checkpoints) are mirrored (``1 - x``): the
expert was trained before MetaDrive flipped its lateral axis.

Actions. Stochastic mode samples the Gaussian with :attr:`Expert.np_random`; deterministic
mode returns the mean. Either is clipped to the action space ``[-1, 1]^2``, exactly what
MetaDrive does to any action it executes, so the label the expert reports is the action that
runs.

Likelihoods for a simulated person. :meth:`~MetaDrivePPOExpert.log_prob` scores an action
under the network's own Gaussian, whose steering std is tiny (median about 0.007 on the
training maps, against 0.47 for throttle). PVP's release simulates its person with another
PPO policy whose std is state-independent, ``(0.1365, 0.4583)``, and takes over when that
density of the novice's action falls below ``1 - free_level = 0.05``: steering within about
0.38 of the mean passes. The same 0.05 threshold under this network's own std passes only
steering within about 0.03, so the person takes over almost always. ``log_prob_std`` gives
``log_prob`` a fixed std (the mean stays this network's), the release's tolerance;
:data:`RELEASE_STD` holds the release's values. Actions are unaffected.

Example:
    >>> from gatekit.envs.metadrive import make_metadrive_env      # doctest: +SKIP
    >>> from gatekit.experts.metadrive import MetaDrivePPOExpert  # doctest: +SKIP
    >>> env = make_metadrive_env(split="test")                      # doctest: +SKIP
    >>> expert = MetaDrivePPOExpert(env=env)                        # doctest: +SKIP
    >>> obs, _ = env.reset(seed=0); expert.reset(seed=0)            # doctest: +SKIP
    >>> action = expert.act(obs)                                    # doctest: +SKIP
    >>> mean, std = expert.distribution()                           # doctest: +SKIP
    >>> expert.log_prob(obs, action)                                # doctest: +SKIP
"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, ExpertError
from gatekit.experts.base import Expert, gaussian_log_density, positive_stds

OBS_DIM = 275
ACTION_DIM = 2
_LAYERS = (
    ("default_policy/fc_1/kernel", (OBS_DIM, 256)),
    ("default_policy/fc_1/bias", (256,)),
    ("default_policy/fc_2/kernel", (256, 256)),
    ("default_policy/fc_2/bias", (256,)),
    ("default_policy/fc_out/kernel", (256, 2 * ACTION_DIM)),
    ("default_policy/fc_out/bias", (2 * ACTION_DIM,)),
)
# The ego-vehicle sensors the expert was trained with; they replace the env's own settings
# while the expert observes (and only then).
_EXPERT_SENSORS: dict[str, Any] = {
    "lidar": {"num_lasers": 240, "distance": 50, "num_others": 4, "gaussian_noise": 0.0,
              "dropout_prob": 0.0, "add_others_navi": False},
    "side_detector": {"num_lasers": 0, "distance": 50, "gaussian_noise": 0.0, "dropout_prob": 0.0},
    "lane_line_detector": {"num_lasers": 0, "distance": 20, "gaussian_noise": 0.0, "dropout_prob": 0.0},
}
# Lateral offsets of the two navigation checkpoints, mirrored since MetaDrive 0.4 (see above).
_MIRRORED = (10, 15)
#: The state-independent action std of the PPO expert that simulates the person in PVP's
#: release (``exp(log_std)`` of its checkpoint): steering, throttle.
RELEASE_STD = (0.1365, 0.4583)


def default_weights() -> Path:
    """Path of the PPO expert's weights inside the installed metadrive package."""
    try:
        root = importlib.resources.files("metadrive")
    except ModuleNotFoundError as exc:
        raise ConfigError("expert: MetaDrive is not installed; pip install 'gatekit[metadrive]'") from exc
    return Path(str(root.joinpath("examples", "ppo_expert", "expert_weights.npz")))


def load_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Load and check the actor's weights (float64 copies) from an ``.npz`` file.

    Raises:
        ConfigError: the file is missing, unreadable, or lacks a layer of the right shape.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights: no file at {path}; give the path of the PPO expert's expert_weights.npz")
    try:
        # allow_pickle=False: a weights file must hold plain arrays, never code.
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name], dtype=np.float64) for name in data.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"weights: cannot read {path} as an .npz of arrays ({exc})") from exc
    for name, shape in _LAYERS:
        if name not in arrays or arrays[name].shape != shape:
            got = arrays[name].shape if name in arrays else "missing"
            raise ConfigError(f"weights: {path} needs layer '{name}' of shape {shape}, got {got}")
    return {name: arrays[name] for name, _ in _LAYERS}


def check_metadrive_env(env: gym.Env, expert_id: str) -> None:
    """Raise ConfigError unless ``env`` is a MetaDrive env with a ``[steering, throttle]`` Box
    (shared by the MetaDrive experts; ``expert_id`` names the one asking)."""
    sim = env.unwrapped
    if not (hasattr(sim, "agent_manager") and hasattr(sim, "config")):
        raise ConfigError(f"expert: {expert_id} reads a MetaDrive ego vehicle, but the env is {type(sim).__name__}; "
                          "pick a MetaDrive env (metadrive, metadrive-toy)")
    space = env.action_space
    if not (isinstance(space, gym.spaces.Box) and space.shape == (ACTION_DIM,)):
        raise ConfigError(f"expert: {expert_id} outputs [steering, throttle] (a Box of shape (2,)), but the env's "
                          f"action space is {space}; pick a MetaDrive env")


def check_std(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array of two finite positive standard deviations ``[steering,
    throttle]`` (else a ConfigError naming the field ``name``)."""
    std = positive_stds(value, ACTION_DIM)
    if std is None:
        raise ConfigError(f"{name}: expected two positive numbers [steering, throttle], got {value!r}")
    return std


def _plain(value: Any) -> Any:
    """A detached copy of a MetaDrive config entry (a ``Config`` or a plain dict)."""
    return value.get_dict() if hasattr(value, "get_dict") else copy.deepcopy(value)


class MetaDrivePPOExpert(Expert):
    """MetaDrive's shipped PPO driving policy, stochastic (as in AIM's training) or deterministic.

    ``act(obs)`` ignores ``obs`` and observes the ego vehicle of the bound env
    (``env.unwrapped.agent``) itself, so call it after ``env.reset``/``env.step`` and before the
    next ``env.step`` (the gatekit contract: experts are queried before the env steps).

    Likelihoods. :meth:`log_prob` is the log density of the *unclipped* diagonal Gaussian
    ``N(mean, diag(std^2))`` at ``action`` as given. Clipping is not modelled: an action on
    the boundary (a clipped sample, or a novice's full throttle) is scored by the density at
    the boundary, not by the probability mass that clipping piles up there. That keeps
    ``log_prob`` a density, comparable across actions and experts, and equal to the quantity
    the PPO policy was trained with.

    The mean and std of the current state are cached, so ``act`` and ``log_prob`` (and
    :meth:`distribution`) on the same step run the lidar and the network once. The cache is
    keyed on the engine's step counter and the ego vehicle's pose and speed, and cleared by
    :meth:`reset` and :meth:`bind`.

    Args:
        env: the MetaDrive env the expert advises (a gatekit MetaDrive env, possibly wrapped).
        deterministic: return the mean instead of a sample.
        weights: path of an ``.npz`` with the actor's layers; None: the file in the metadrive
            wheel (:func:`default_weights`).
        log_prob_std: a fixed ``[steering, throttle]`` std for :meth:`log_prob` (around the
            network's mean) instead of the network's own; None: the network's. PVP's release
            scores with :data:`RELEASE_STD` (see the module docstring). ``act`` is unaffected.
    """

    has_log_prob = True

    def __init__(self, *, env: gym.Env, deterministic: bool = False, weights: str | Path | None = None,
                 log_prob_std: list[float] | tuple[float, ...] | None = None) -> None:
        if not isinstance(deterministic, bool | np.bool_):
            raise ConfigError(f"deterministic: expected true or false, got {deterministic!r}")
        self.log_prob_std = None if log_prob_std is None else check_std(log_prob_std, "log_prob_std")
        check_metadrive_env(env, "metadrive-ppo")  # before loading weights: a wrong env fails fast
        action_space = env.action_space
        assert isinstance(action_space, gym.spaces.Box)  # checked above
        super().__init__(env.observation_space, action_space)
        self.deterministic = bool(deterministic)
        self.weights_path = default_weights() if weights is None else Path(weights)
        self._w = load_weights(self.weights_path)
        self._low = np.asarray(action_space.low, dtype=np.float64)
        self._high = np.asarray(action_space.high, dtype=np.float64)
        self._observer: Any = None
        self._cache_key: tuple[Any, ...] | None = None
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        self.bind(env)

    # ----------------------------------------------------------------------------- binding
    def bind(self, env: gym.Env) -> None:
        """Advise ``env`` (a MetaDrive env, possibly wrapped); forgets the cached state."""
        check_metadrive_env(env, "metadrive-ppo")
        super().bind(env)
        self._observer = None  # built from this env's config on first use
        self._forget()

    def reset(self, *, seed: int | None = None) -> None:
        """Start of an episode: re-seed the sampler (with a seed) and forget the cached state."""
        super().reset(seed=seed)
        self._forget()

    def _forget(self) -> None:
        self._cache_key = None
        self._cache = None

    def _sim(self) -> Any:
        """The bound MetaDrive env itself (typed Any: its attributes are MetaDrive's)."""
        if self.env is None:
            raise ExpertError("expert: metadrive-ppo is not bound to an env; call expert.bind(env)")
        return self.env.unwrapped

    def _ego(self) -> Any:
        sim = self._sim()
        if getattr(sim, "engine", None) is None:
            raise ExpertError("expert: the MetaDrive env has no engine (not reset yet, or closed); reset it first")
        agents = sim.agents
        if len(agents) != 1:
            raise ExpertError(f"expert: metadrive-ppo drives one ego vehicle, the env has {len(agents)}")
        # MetaDrive 0.4.3 calls it ``agent`` (``vehicle`` is its deprecated alias).
        return next(iter(agents.values()))

    def _make_observer(self) -> Any:
        from gatekit.envs.metadrive import import_metadrive

        import_metadrive()
        from metadrive.obs.state_obs import LidarStateObservation

        config = self._sim().config.copy(unchangeable=False)
        config["vehicle_config"].update(_EXPERT_SENSORS)
        config["random_agent_model"] = False
        config["vehicle_config"]["random_agent_model"] = False
        observer = LidarStateObservation(config)
        if observer.observation_space.shape != (OBS_DIM,):
            raise ConfigError(
                f"expert: the PPO expert needs a {OBS_DIM}-dim observation, this env's config gives "
                f"{observer.observation_space.shape}; use the default vehicle navigation module"
            )
        return observer

    # ----------------------------------------------------------------------------- network
    def observe(self) -> np.ndarray:
        """The expert's 275-dim observation of the current state (float64, mirrored entries fixed)."""
        vehicle = self._ego()
        if self._observer is None:
            self._observer = self._make_observer()
        # The observer reads the sensor settings from the vehicle's own config: swap the
        # expert's in for the call, and always put the env's back (the env observes next).
        saved = {key: _plain(vehicle.config[key]) for key in _EXPERT_SENSORS}
        saved_random_model = vehicle.config["random_agent_model"]
        try:
            vehicle.config.update(_EXPERT_SENSORS)
            vehicle.config["random_agent_model"] = False
            obs = np.asarray(self._observer.observe(vehicle), dtype=np.float64)
        finally:
            vehicle.config.update(saved)
            vehicle.config["random_agent_model"] = saved_random_model
        for i in _MIRRORED:
            obs[i] = 1.0 - obs[i]
        return obs

    def forward(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of the action Gaussian for an expert observation (shape (275,))."""
        w = self._w
        x = np.tanh(obs @ w["default_policy/fc_1/kernel"] + w["default_policy/fc_1/bias"])
        x = np.tanh(x @ w["default_policy/fc_2/kernel"] + w["default_policy/fc_2/bias"])
        out = x @ w["default_policy/fc_out/kernel"] + w["default_policy/fc_out/bias"]
        return out[:ACTION_DIM], np.exp(out[ACTION_DIM:])

    def _state_key(self, vehicle: Any) -> tuple[Any, ...]:
        sim = self._sim()
        return (id(sim.engine), sim.engine.episode_step, sim.current_seed, *map(float, vehicle.position),
                float(vehicle.heading_theta), float(vehicle.speed))

    def distribution(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (float64, shape (2,)) of the expert's action Gaussian now."""
        vehicle = self._ego()
        key = self._state_key(vehicle)
        if self._cache is None or key != self._cache_key:
            mean, std = self.forward(self.observe())
            if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
                raise ExpertError(f"expert: the PPO network gave a non-finite output (mean {mean}, std {std})")
            self._cache, self._cache_key = (mean, std), key
        mean, std = self._cache
        return mean.copy(), std.copy()

    # ----------------------------------------------------------------------------- Expert API
    def act(self, obs: Any) -> np.ndarray:
        """The expert's action now: a Gaussian sample (or the mean), clipped to ``[-1, 1]^2``."""
        mean, std = self.distribution()
        action = mean if self.deterministic else self.np_random.normal(mean, std)
        return np.clip(action, self._low, self._high).astype(np.float32)

    def log_prob(self, obs: Any, action: Any) -> float:
        """Diagonal-Gaussian log density of ``action`` at the current state (clipping ignored),
        with the network's std or, if set, ``log_prob_std``.

        Example:
            >>> expert.log_prob(obs, expert.act(obs))  # doctest: +SKIP
            1.83
        """
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (ACTION_DIM,):
            raise ExpertError(f"expert: log_prob needs a [steering, throttle] action, got shape {np.shape(action)}")
        mean, std = self.distribution()
        if self.log_prob_std is not None:
            std = self.log_prob_std
        return gaussian_log_density(a, mean, std)
