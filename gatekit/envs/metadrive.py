"""MetaDrive env factories: ``SafeMetaDriveEnv`` with disjoint train/test maps, headless and offline.

The AIM paper's setting: 50 training maps from scenario seed 100, 50
held-out maps from seed 1000, traffic density 0.06, horizon 1500, leaving the route ends the
episode, obstacles with the library's accident probability 0.8. Observation: the 259-dim
state/lidar vector; action: ``[steering, throttle]`` in ``[-1, 1]^2``; success: ``arrive_dest``.

MetaDrive is imported inside the functions only, so ``import gatekit.envs.metadrive`` works
without it installed. Three things the raw library does that gatekit changes:

* **Offline.** MetaDrive's engine tries to download its render assets when it starts. Physics
  alone needs none of them, so the factories switch that attempt off at run time (no file in
  site-packages is edited). Rendering does need them: ``render=True`` without the assets
  raises a :class:`~gatekit.errors.ConfigError` that says how to fetch them.
* **One engine per process.** MetaDrive allows a single engine per process. Building a second
  env while one is open raises a one-line :class:`~gatekit.errors.GatekitError`;
  ``env.close()`` frees the slot.
* **Seeds map to scenarios.** ``reset(seed=s)`` runs scenario ``start + s % num_scenarios``, so
  evaluating with seeds ``0..49`` visits each held-out map once; ``reset()`` without a seed
  draws the next scenario from the wrapper's ``np_random`` (seeded by the last seeded reset, or
  by the factory's ``seed``), so runs are reproducible.

Example:
    >>> from gatekit.envs.metadrive import make_metadrive_env  # doctest: +SKIP
    >>> env = make_metadrive_env(split="test")                  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                          # held-out map 1000  # doctest: +SKIP
    >>> obs.shape, env.action_space.shape                      # doctest: +SKIP
    ((259,), (2,))
    >>> env.close()                                            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import weakref
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from gatekit.envs.base import METRICS_KEY, SINGLE_INSTANCE_KEY, check_split
from gatekit.errors import ConfigError, GatekitError

#: Per-episode metrics read from the last step's ``info`` (see :mod:`gatekit.envs.base`).
METADRIVE_METRICS = ["route_completion", "crash", "out_of_road"]

# MetaDrive's per-step collision flags; ``info["crash"]`` reports any of them (see MetaDriveGym).
_CRASH_KEYS = ("crash", "crash_vehicle", "crash_object", "crash_building", "crash_human", "crash_sidewalk")
STOPPED_KMH = 1.0  # stop_limit: below this speed the car counts as standing still

# Config keys the factory arguments own: setting them through ``extra_config`` would bypass the
# split/seed mapping or the offline/render handling.
_RESERVED_KEYS = {
    "start_seed": "train_start_seed/test_start_seed",
    "num_scenarios": "num_scenarios",
    "use_render": "render",
}

# The open env of this process (MetaDrive allows one engine per process), as a weak reference
# so a forgotten env that was garbage-collected does not block the next one forever.
_live: weakref.ref[MetaDriveGym] | None = None


def _live_env() -> MetaDriveGym | None:
    return _live() if _live is not None else None


def _one_engine_error() -> GatekitError:
    return GatekitError(
        "metadrive: a MetaDrive env is already open in this process and MetaDrive allows one engine "
        "per process; close() the first env, or evaluate in a worker process"
    )


def import_metadrive() -> None:
    """Import MetaDrive without letting it reconfigure the caller's logging.

    Importing ``metadrive`` runs ``logging.basicConfig(level=INFO)`` in a few of its modules,
    which sets the *root* logger to INFO with a stderr handler: every library's INFO lines
    (imitation's DAgger rounds, ...) then print through the progress bar. The root logger's
    level and handlers are restored once the package is imported (module code runs once).
    MetaDrive's map generator also calls ``logging.debug`` on the root logger, which gives an
    unconfigured root a WARNING-level stderr handler (Python's default): that one is harmless.
    """
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        import metadrive  # noqa: F401

        # imported lazily by MetaDrive at the first reset, and each calls basicConfig(level=INFO)
        import metadrive.component.static_object.traffic_object  # noqa: F401
        import metadrive.policy.replay_policy  # noqa: F401
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)


def _quiet_logger() -> None:
    """Drop MetaDrive's INFO chatter (one line per reset and per episode end); keep warnings."""
    from metadrive.engine.logger import get_logger

    logger = get_logger()
    if logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)


def _no_asset_download() -> None:
    """Stop MetaDrive's engine from trying to download its render assets when it starts.

    ``BaseEngine.__init__`` calls ``try_pull_asset()``, which fetches a zip from GitHub when
    the assets folder is missing or outdated. Physics-only runs need no asset, and gatekit must
    never touch the network at run time, so the check is replaced by a no-op (at run time,
    process-wide; render=True verifies the assets itself before building the env).
    """
    from metadrive.engine.base_engine import BaseEngine

    if not getattr(BaseEngine.try_pull_asset, "_gatekit_offline", False):
        def _skip_pull_asset() -> None:
            return None

        _skip_pull_asset._gatekit_offline = True  # type: ignore[attr-defined]
        BaseEngine.try_pull_asset = staticmethod(_skip_pull_asset)


def _check_render_assets() -> None:
    from metadrive.engine.asset_loader import AssetLoader

    path = str(AssetLoader.asset_path)
    if not os.path.isdir(path) or not os.listdir(path):
        raise ConfigError(
            f"render: MetaDrive's render assets are missing ({path}); fetch them once with "
            "`python -m metadrive.pull_asset` (network needed), or set render=False for physics only"
        )


def _close_inner(env: gym.Env) -> None:
    """Close a MetaDrive env left open by a garbage-collected wrapper (frees the engine)."""
    # The interpreter may be tearing down: there is nothing useful to report then.
    with contextlib.suppress(Exception):
        env.close()


class MetaDriveGym(gym.Wrapper):
    """The gatekit face of a MetaDrive env: seed-to-scenario mapping, metrics, one-engine guard.

    * ``reset(seed=s)`` runs scenario ``start_seed + s % num_scenarios`` and re-seeds
      :attr:`np_random`; ``reset()`` draws the scenario from :attr:`np_random`.
    * Every step's ``info`` gets ``is_success`` (= ``arrive_dest``), ``route_completion``
      (float), ``out_of_road`` (bool) and ``crash`` (bool): True once the ego vehicle has
      crashed into anything (a vehicle, an object, a building, a person, a sidewalk) at any step
      of the episode so far. ``SafeMetaDriveEnv`` does not end an episode on a crash, so a
      last-step-only flag would miss almost every crash; the raw per-step flags
      (``crash_vehicle``, ``crash_object``, ...) are left as MetaDrive reports them.
    * With ``stop_limit``, an episode whose car has stood still (under 1 km/h) for that many
      consecutive steps is truncated, with ``info["stopped_too_long"] = True``.
    * ``metadata`` names the metrics and marks the env single-instance (see
      :mod:`gatekit.envs.base`).

    Args:
        env: a MetaDrive env (``SafeMetaDriveEnv``) that has not been reset yet.
        start_seed: first scenario index of this split.
        num_scenarios: number of scenarios of this split.
        seed: seeds :attr:`np_random` before any seeded reset (None: random).
        stop_limit: consecutive steps at rest that truncate an episode (None: never).
    """

    def __init__(self, env: gym.Env, *, start_seed: int, num_scenarios: int, seed: int | None = None,
                 stop_limit: int | None = None) -> None:
        global _live
        if _live_env() is not None:
            # Not env.close(): MetaDrive's close() shuts whatever engine is live, i.e. the other env's.
            raise _one_engine_error()
        super().__init__(env)
        self.start_seed = int(start_seed)
        self.num_scenarios = int(num_scenarios)
        self.metadata = {**env.metadata, METRICS_KEY: list(METADRIVE_METRICS), SINGLE_INSTANCE_KEY: True}
        # gym.Wrapper forwards np_random to the inner env; MetaDrive never uses that generator
        # itself (its randomness comes from the scenario seed), so it is this wrapper's own.
        if seed is not None:
            self.np_random, _ = seeding.np_random(int(seed))
        self.current_scenario: int | None = None
        self._crashed = False
        self.stop_limit = stop_limit
        self._stopped_for = 0  # consecutive steps at rest (stop_limit)
        self._closed = False
        _live = weakref.ref(self)
        self._finalizer = weakref.finalize(self, _close_inner, env)
        self._finalizer.atexit = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset to scenario ``start_seed + seed % num_scenarios`` (or a drawn one if no seed)."""
        if self._closed:
            raise GatekitError("metadrive: this env was closed; build a new one")
        if options:
            raise ConfigError(f"reset: MetaDrive envs take no reset options, got {sorted(options)}")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
                raise ValueError(f"seed must be a non-negative int, got {seed!r}")
            self.np_random, _ = seeding.np_random(int(seed))
            index = int(seed) % self.num_scenarios
        else:
            index = int(self.np_random.integers(self.num_scenarios))
        self.current_scenario = self.start_seed + index
        self._crashed = False
        self._stopped_for = 0
        return self.env.reset(seed=self.current_scenario)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._crashed = self._crashed or any(bool(info.get(k, False)) for k in _CRASH_KEYS)
        info["is_success"] = bool(info.get("arrive_dest", False))
        info["crash"] = self._crashed
        info["out_of_road"] = bool(info.get("out_of_road", False))
        info["route_completion"] = float(info.get("route_completion", 0.0))
        if self.stop_limit is not None:
            at_rest = float(self.env.unwrapped.agent.speed_km_h) < STOPPED_KMH  # type: ignore[attr-defined]
            self._stopped_for = self._stopped_for + 1 if at_rest else 0
            if self._stopped_for >= self.stop_limit and not terminated:
                truncated = True
                info["stopped_too_long"] = True
        return obs, float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        """Close the MetaDrive engine and free this process's env slot (safe to call twice)."""
        global _live
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        try:
            self.env.close()
        finally:
            if _live_env() is self:
                _live = None


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name}: expected an int >= {low}, got {value!r}")
    return int(value)


def _check_unit(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    return bool(value)


def _check_splits(num_scenarios: Any, train_start_seed: Any, test_start_seed: Any) -> tuple[int, int, int]:
    """Scenario counts and start seeds, the train and test ranges disjoint."""
    n = _check_int("num_scenarios", num_scenarios, 1)
    train = _check_int("train_start_seed", train_start_seed, 0)
    test = _check_int("test_start_seed", test_start_seed, 0)
    if train < test + n and test < train + n:
        raise ConfigError(f"num_scenarios: train maps [{train}, {train + n}) and test maps [{test}, {test + n}) "
                          f"overlap; lower num_scenarios or move a start seed")
    return n, train, test


def _check_map(map: Any) -> None:  # noqa: A002  (MetaDrive's own name for it)
    if map is None or (isinstance(map, str) and map.strip()):
        return
    if isinstance(map, numbers.Integral) and not isinstance(map, bool) and int(map) >= 1:
        return
    raise ConfigError(f"map: expected a block count >= 1 or a block string such as 'COT', got {map!r}")


def _check_extra_config(extra_config: Any) -> None:
    if extra_config is None:
        return
    if not isinstance(extra_config, dict):
        raise ConfigError(f"extra_config: expected a mapping of SafeMetaDriveEnv config entries, got {type(extra_config).__name__}")
    for key, arg in _RESERVED_KEYS.items():
        if key in extra_config:
            raise ConfigError(f"extra_config: '{key}' is set by the argument {arg}; use that instead")


def make_metadrive_env(
    *,
    split: str = "train",
    seed: int | None = None,
    num_scenarios: int = 50,
    train_start_seed: int = 100,
    test_start_seed: int = 1000,
    traffic_density: float = 0.06,
    horizon: int = 1500,
    accident_prob: float = 0.8,
    map: int | str | None = None,  # shadows the builtin on purpose: MetaDrive's own name
    out_of_route_done: bool = True,
    stop_limit: int | None = None,
    render: bool = False,
    extra_config: dict[str, Any] | None = None,
) -> gym.Env:
    """Build ``SafeMetaDriveEnv`` for one split, wrapped in :class:`MetaDriveGym`.

    Args:
        split: ``"train"`` (scenarios ``train_start_seed ...``) or ``"test"`` (from
            ``test_start_seed``); the two ranges must not overlap.
        seed: seeds the scenario draws of ``reset()`` without a seed (None: random).
        num_scenarios: maps per split.
        train_start_seed: first training scenario index.
        test_start_seed: first held-out scenario index.
        traffic_density: vehicles per lane-meter-ish, MetaDrive's knob (0 = no traffic).
        horizon: steps before the episode is truncated.
        accident_prob: probability of an obstacle (broken-down car, cones) on each block.
        map: MetaDrive's ``map``: a block count (int) or a block string such as ``"COT"``;
            None keeps the library default (3 blocks).
        out_of_route_done: end the episode when the car leaves its route.
        stop_limit: training split only (not in the paper): truncate an episode once the car
            has stood still (under 1 km/h) for this many consecutive steps; None never does.
            MetaDrive's PPO expert can wait behind an obstacle until the 1500-step horizon, and
            a run with a 2K-step budget then spends most of it on one stop. Held-out episodes
            keep the paper's protocol, so test figures stay comparable.
        render: open a window (needs a display and the render assets).
        extra_config: further ``SafeMetaDriveEnv`` config entries, applied last.

    Returns:
        The wrapped env; ``env.unwrapped`` is the ``SafeMetaDriveEnv``.

    Raises:
        ConfigError: an argument is invalid, or render=True without assets.
        GatekitError: another MetaDrive env is open in this process.
    """
    split = check_split(split)
    if seed is not None:
        _check_int("seed", seed, 0)
    num_scenarios, train_start_seed, test_start_seed = _check_splits(num_scenarios, train_start_seed, test_start_seed)
    traffic_density = _check_unit("traffic_density", traffic_density)
    horizon = _check_int("horizon", horizon, 1)
    accident_prob = _check_unit("accident_prob", accident_prob)
    _check_map(map)
    out_of_route_done = _check_bool("out_of_route_done", out_of_route_done)
    if stop_limit is not None:
        stop_limit = _check_int("stop_limit", stop_limit, 1)
    render = _check_bool("render", render)
    _check_extra_config(extra_config)

    if _live_env() is not None:
        raise _one_engine_error()
    try:
        import_metadrive()
        from metadrive.engine.engine_utils import engine_initialized
        from metadrive.envs.safe_metadrive_env import SafeMetaDriveEnv
    except ImportError as exc:
        raise ConfigError(
            f"env: MetaDrive is not installed ({exc}); pip install 'gatekit[metadrive]'"
        ) from exc
    if engine_initialized():  # someone built a MetaDrive env outside gatekit and left it open
        raise _one_engine_error()

    _quiet_logger()
    _no_asset_download()
    if render:
        _check_render_assets()

    start = train_start_seed if split == "train" else test_start_seed
    config: dict[str, Any] = {
        "start_seed": start,
        "num_scenarios": num_scenarios,
        "traffic_density": traffic_density,
        "horizon": horizon,
        "accident_prob": accident_prob,
        "out_of_route_done": out_of_route_done,
        "use_render": render,
        "log_level": logging.WARNING,
        # MetaDrive recycles the vehicles and objects of past episodes; a recycled body carries
        # float-level leftovers into the physics, so the same seed replayed later in the same
        # process drifts by ~1e-8 and then apart. Fresh objects make every seeded episode
        # bit-identical, at ~10 ms per reset.
        "num_buffering_objects": 0,
    }
    if map is not None:
        config["map"] = int(map) if isinstance(map, numbers.Integral) else map
    config.update(extra_config or {})
    try:
        inner = SafeMetaDriveEnv(config)
    except (KeyError, TypeError, AssertionError) as exc:
        raise ConfigError(f"extra_config: SafeMetaDriveEnv rejected the config: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    return MetaDriveGym(inner, start_seed=start, num_scenarios=num_scenarios, seed=seed,
                        stop_limit=stop_limit if split == "train" else None)


def make_metadrive_toy_env(*, split: str = "train", seed: int | None = None, **overrides: Any) -> gym.Env:
    """A one-map MetaDrive task for quick runs: map ``"COT"`` (a curve, a roundabout and a
    T-junction, in MetaDrive's block letters), one scenario, no traffic and no obstacles.

    Args:
        split: ``"train"`` or ``"test"`` (a different seed, so a different geometry).
        seed: as in :func:`make_metadrive_env`.
        **overrides: any other :func:`make_metadrive_env` argument.

    Example:
        >>> env = make_metadrive_toy_env(split="test")  # doctest: +SKIP
    """
    kwargs: dict[str, Any] = {"num_scenarios": 1, "traffic_density": 0.0, "accident_prob": 0.0, "map": "COT"}
    kwargs.update(overrides)
    return make_metadrive_env(split=split, seed=seed, **kwargs)
