"""MiniGrid tasks as gatekit env factories: egocentric image, frame stack, disjoint layout splits.

Three factories, registered in :data:`gatekit.envs.ENVS`:

* :func:`make_multiroom_env` (``minigrid-multiroom``): MultiRoom with exactly 6 rooms of size at
  most 6, gymnasium id ``gatekit/MultiRoom-N6-S6-v0`` (the AIM release's MiniGrid task).
* :func:`make_fourrooms_env` (``minigrid-fourrooms``): ``MiniGrid-FourRooms-v0``.
* :func:`make_doorkey_env` (``minigrid-doorkey``): ``MiniGrid-DoorKey-{size}x{size}-v0``.

Every env built here has:

* Observation: the agent's egocentric 7x7x3 view (minigrid's ``image``; no mission string),
  channel-first and stacked over ``frame_stack`` frames, oldest first: a ``uint8`` Box of shape
  ``(3 * frame_stack, 7, 7)``. On reset the stack is filled with the first frame.
* Action: ``Discrete(7)``, minigrid's own (left, right, forward, pickup, drop, toggle, done).
* Layout splits: ``reset(seed=s)`` generates the layout from seed ``s % 1_000_000`` (train) or
  ``1_000_000 + s % 1_000_000`` (test), so the two splits never share a layout and evaluation
  with seeds ``0..N-1`` is reproducible. ``reset()`` without a seed draws the next layout seed
  of the split from the wrapper's own generator, which every seeded reset re-seeds (and the
  factory's ``seed`` seeds before the first one).
* ``info["is_success"]`` on an episode's last step: the agent reached the goal (terminated with
  a positive reward). ``info["layout_seed"]`` at reset names the layout.

minigrid is imported only when a factory is called, so this module imports without it.

Example:
    >>> from gatekit.envs.minigrid import make_multiroom_env
    >>> env = make_multiroom_env(split="test")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype.name, info["layout_seed"]
    ((12, 7, 7), 'uint8', 1000000)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.envs.base import METRICS_KEY
from gatekit.errors import ConfigError

#: Layout seeds of a split lie in ``[offset, offset + SPLIT_SIZE)``; train's offset is 0.
SPLIT_SIZE = 1_000_000
#: The test split's first layout seed.
TEST_SEED_OFFSET = 1_000_000

MULTIROOM_ID = "gatekit/MultiRoom-N6-S6-v0"

_VIEW = 7  # minigrid's default agent_view_size; the observation shape depends on it


def multiroom_id(num_rooms: int = 6, max_room_size: int = 6) -> str:
    """Register (once) and return the gymnasium id of MultiRoom with exactly ``num_rooms`` rooms.

    The entry point is an import string, so registering needs no minigrid.

    Example:
        >>> multiroom_id()
        'gatekit/MultiRoom-N6-S6-v0'
    """
    env_id = f"gatekit/MultiRoom-N{num_rooms}-S{max_room_size}-v0"
    if env_id not in gym.envs.registry:
        gym.register(
            id=env_id,
            entry_point="minigrid.envs:MultiRoomEnv",
            kwargs={"minNumRooms": num_rooms, "maxNumRooms": num_rooms, "maxRoomSize": max_room_size},
        )
    return env_id


def _doorkey_id(size: int) -> str:
    # minigrid registers 5, 6, 8 and 16; other sizes get a gatekit id so that env.spec tells
    # the truth about the size.
    env_id = f"MiniGrid-DoorKey-{size}x{size}-v0"
    if env_id in gym.envs.registry:
        return env_id
    env_id = f"gatekit/DoorKey-{size}x{size}-v0"
    if env_id not in gym.envs.registry:
        gym.register(id=env_id, entry_point="minigrid.envs:DoorKeyEnv", kwargs={"size": size})
    return env_id


multiroom_id()  # the release's task id exists as soon as gatekit.envs.minigrid is imported


class SplitLayouts(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Map reset seeds into a split's own range of layout seeds.

    ``reset(seed=s)`` resets the inner env with ``offset + s % SPLIT_SIZE`` and re-seeds this
    wrapper's generator with ``s``; ``reset()`` draws ``offset + k`` with ``k`` uniform in
    ``[0, SPLIT_SIZE)`` from that generator. MiniGrid uses its ``np_random`` only to generate
    the layout, so the layout seed fixes the whole episode.

    Args:
        env: A MiniGrid env (possibly wrapped).
        offset: First layout seed of the split (0 for train, :data:`TEST_SEED_OFFSET` for test).
        seed: Seeds the generator for unseeded resets that come before any seeded one; None
            draws it from the OS.
    """

    def __init__(self, env: gym.Env, *, offset: int, seed: int | None = None) -> None:
        # Recorded so that env.spec.make() rebuilds the whole wrapper stack (check_env does).
        gym.utils.RecordConstructorArgs.__init__(self, offset=offset, seed=seed)
        super().__init__(env)
        self.offset = int(offset)
        self._layouts = np.random.default_rng(seed)
        self.layout_seed: int | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._layouts = np.random.default_rng(int(seed))
            k = int(seed) % SPLIT_SIZE
        else:
            k = int(self._layouts.integers(SPLIT_SIZE))
        self.layout_seed = self.offset + k
        obs, info = self.env.reset(seed=self.layout_seed, options=options)
        return obs, {**info, "layout_seed": self.layout_seed}


class StackedView(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Keep minigrid's egocentric ``image`` only, channel-first, stacked over ``frames`` steps.

    The observation is a ``uint8`` array of shape ``(3 * frames, 7, 7)``: frame ``t - frames + 1``
    in channels ``0:3`` up to frame ``t`` in the last three channels. Reset fills every slot with
    the first frame. (gymnasium 0.29's ``FrameStack`` returns ``LazyFrames`` with the stack as a
    leading axis, which SB3 and the gate do not expect.)

    Args:
        env: A MiniGrid env whose observation is a dict with an ``image`` of shape (7, 7, 3).
        frames: How many frames to stack (>= 1).
    """

    def __init__(self, env: gym.Env, *, frames: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, frames=frames)
        super().__init__(env)
        image = env.observation_space["image"]  # type: ignore[index]
        h, w, c = image.shape
        self.frames = int(frames)
        self._stack = np.zeros((self.frames, c, h, w), dtype=np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, (self.frames * c, h, w), np.uint8)

    def _push(self, obs: dict[str, Any]) -> np.ndarray:
        self._stack[:-1] = self._stack[1:]
        self._stack[-1] = np.transpose(obs["image"], (2, 0, 1))
        # A copy: the caller may keep observations (replay buffers) while the stack moves on.
        return self._stack.reshape(self.observation_space.shape).copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._stack[:] = np.transpose(obs["image"], (2, 0, 1))
        return self._stack.reshape(self.observation_space.shape).copy(), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._push(obs), reward, terminated, truncated, info


class GoalSuccess(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Add ``info["is_success"]`` on an episode's last step: terminated with a positive reward.

    MiniGrid pays ``1 - 0.9 * steps / max_steps > 0`` only on reaching the goal and ends with
    reward 0 otherwise (lava, timeout).
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        self.metadata = {**env.metadata, METRICS_KEY: []}

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, "is_success": bool(terminated and float(reward) > 0.0)}
        return obs, reward, terminated, truncated, info


def _check_int(name: str, value: Any, low: int, high: int | None = None, *, hint: str) -> int:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if ok and value >= low and (high is None or value <= high):
        return int(value)
    bound = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ConfigError(f"{name}: must be an integer {bound}, got {value!r}; {hint}")


def _check_common(split: Any, seed: Any, frame_stack: Any, max_steps: Any) -> tuple[int, int | None]:
    if split not in ("train", "test"):
        raise ConfigError(f"split: must be 'train' or 'test', got {split!r}")
    if seed is not None:
        _check_int("seed", seed, 0, hint="give a non-negative integer or null")
    frames = _check_int("frame_stack", frame_stack, 1, hint="e.g. frame_stack: 4")
    steps = None if max_steps is None else _check_int("max_steps", max_steps, 1,
                                                       hint="or null for minigrid's default")
    return frames, steps


def _import_minigrid() -> None:
    try:
        import minigrid  # noqa: F401  (importing registers the MiniGrid-* ids)
    except ModuleNotFoundError as exc:
        raise ConfigError("env: MiniGrid envs need the minigrid package; "
                          "`pip install gatekit[minigrid]`") from exc


def _wrap(env: gym.Env, *, split: str, seed: int | None, frame_stack: int) -> gym.Env:
    env = StackedView(env, frames=frame_stack)
    env = GoalSuccess(env)
    return SplitLayouts(env, offset=0 if split == "train" else TEST_SEED_OFFSET, seed=seed)


def make_multiroom_env(*, split: str = "train", seed: int | None = None, frame_stack: int = 4,
                       max_steps: int | None = None, num_rooms: int = 6, max_room_size: int = 6) -> gym.Env:
    """MiniGrid MultiRoom with exactly ``num_rooms`` rooms of size at most ``max_room_size``.

    Args:
        split: ``"train"`` or ``"test"`` (disjoint layouts).
        seed: Seeds the layout stream of unseeded resets (see :class:`SplitLayouts`).
        frame_stack: Frames in the observation stack.
        max_steps: Episode limit; None keeps minigrid's ``20 * num_rooms``.
        num_rooms: Rooms in every layout, 1 to 6 (minigrid's own range; more may never fit
            on its 25x25 grid, and its generator retries forever).
        max_room_size: Largest room side (walls included), 4 to 10.

    Example:
        >>> env = make_multiroom_env(frame_stack=1)
        >>> env.observation_space.shape, int(env.action_space.n), env.spec.id
        ((3, 7, 7), 7, 'gatekit/MultiRoom-N6-S6-v0')
    """
    frames, steps = _check_common(split, seed, frame_stack, max_steps)
    rooms = _check_int("num_rooms", num_rooms, 1, 6, hint="e.g. num_rooms: 6")
    size = _check_int("max_room_size", max_room_size, 4, 10, hint="e.g. max_room_size: 6")
    _import_minigrid()
    kwargs: dict[str, Any] = {} if steps is None else {"max_steps": steps}
    env = gym.make(multiroom_id(rooms, size), **kwargs)
    return _wrap(env, split=split, seed=seed, frame_stack=frames)


def make_fourrooms_env(*, split: str = "train", seed: int | None = None, frame_stack: int = 4,
                       max_steps: int | None = None) -> gym.Env:
    """MiniGrid FourRooms (19x19, four rooms joined by gaps; random start and goal).

    Args:
        split: ``"train"`` or ``"test"`` (disjoint layouts).
        seed: Seeds the layout stream of unseeded resets (see :class:`SplitLayouts`).
        frame_stack: Frames in the observation stack.
        max_steps: Episode limit; None keeps minigrid's 100.
    """
    frames, steps = _check_common(split, seed, frame_stack, max_steps)
    _import_minigrid()
    kwargs: dict[str, Any] = {} if steps is None else {"max_steps": steps}
    env = gym.make("MiniGrid-FourRooms-v0", **kwargs)
    return _wrap(env, split=split, seed=seed, frame_stack=frames)


def make_doorkey_env(*, split: str = "train", seed: int | None = None, size: int = 5, frame_stack: int = 4,
                     max_steps: int | None = None) -> gym.Env:
    """MiniGrid DoorKey: pick up the key, unlock the door, reach the goal.

    Args:
        split: ``"train"`` or ``"test"`` (disjoint layouts).
        seed: Seeds the layout stream of unseeded resets (see :class:`SplitLayouts`).
        size: Grid side, walls included (>= 5; minigrid registers 5, 6, 8 and 16).
        frame_stack: Frames in the observation stack.
        max_steps: Episode limit; None keeps minigrid's ``10 * size**2``.
    """
    frames, steps = _check_common(split, seed, frame_stack, max_steps)
    side = _check_int("size", size, 5, 64, hint="e.g. size: 5")
    _import_minigrid()
    kwargs: dict[str, Any] = {} if steps is None else {"max_steps": steps}
    env = gym.make(_doorkey_id(side), **kwargs)
    return _wrap(env, split=split, seed=seed, frame_stack=frames)
