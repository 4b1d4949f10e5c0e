"""A shortest-path planner over MiniGrid's true grid: the MiniGrid expert (no learning).

:class:`MiniGridPlannerExpert` reads the full grid, the agent's pose and what it carries from
the bound env (``env.unwrapped``) and returns the first action of a shortest action sequence to
a goal cell. It opens closed doors (``toggle`` when facing one) and, for locked doors, fetches a
key of the door's colour first (``pickup``), as DoorKey requires. Optimal and deterministic.

How it plans. A state is ``(x, y, direction, carried)``; the actions are left, right, forward,
pickup (a key, when the hands are empty) and toggle. A closed door costs two steps to pass
(toggle, then forward), a locked one the same but only while carrying a key of its colour. A
Dijkstra search run *backwards* from the goal gives the cost-to-go of every state that can reach
the goal, so the action for any pose is a lookup: when the novice moves the agent elsewhere the
planner needs no new search. A new search runs only when the grid changes (a door opened or
closed, a key picked up or dropped, a new episode): a handful of times per episode.

Example:
    >>> from gatekit.envs.minigrid import make_doorkey_env
    >>> from gatekit.experts.minigrid import MiniGridPlannerExpert
    >>> env = make_doorkey_env(split="test")
    >>> expert = MiniGridPlannerExpert(env=env)
    >>> obs, _ = env.reset(seed=0)
    >>> done = False
    >>> while not done:
    ...     obs, reward, terminated, truncated, info = env.step(expert.act(obs))
    ...     done = terminated or truncated
    >>> info["is_success"]
    True
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError
from gatekit.experts.base import Expert

# minigrid's Actions enum, spelled out so this module imports without minigrid.
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)

# Direction d moves the agent by _DIRS[d] (minigrid's DIR_TO_VEC: right, down, left, up).
_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))

# Cell kinds of the planner's map.
_BLOCKED, _FREE, _GOAL, _OPEN, _CLOSED, _LOCKED, _KEY = range(7)

_INF = math.inf


class _Plan:
    """Cost-to-go of every state for one grid configuration, and what it was computed from."""

    __slots__ = ("grid", "cells", "doors", "door_states", "carrying", "width", "height", "kinds",
                 "colors", "key_layer", "layers", "cost")

    def __init__(self, env: Any) -> None:
        grid = env.grid
        self.grid = grid
        # The grid's objects themselves, not their ids: holding them keeps ids from being reused,
        # and list equality compares them by identity (WorldObj has no __eq__), in C.
        self.cells = list(grid.grid)
        self.doors = [o for o in self.cells if o is not None and o.type == "door"]
        self.door_states = [(o.is_open, o.is_locked) for o in self.doors]
        self.carrying = env.carrying
        self.width, self.height = grid.width, grid.height
        n = self.width * self.height
        kinds = [_BLOCKED] * n
        colors: list[str | None] = [None] * n
        key_layer = [0] * n
        # Layer 0: carrying what the agent carries now (maybe nothing). With empty hands, layer
        # i >= 1 means "carrying the i-th key of the grid", whose cell is then empty.
        self.layers: list[Any] = [self.carrying]
        for i, obj in enumerate(self.cells):
            if obj is None:
                kinds[i] = _FREE
                continue
            kind = obj.type
            if kind == "goal":
                kinds[i] = _GOAL
            elif kind == "door":
                kinds[i] = _OPEN if obj.is_open else (_LOCKED if obj.is_locked else _CLOSED)
                colors[i] = obj.color
            elif kind == "key" and self.carrying is None:
                kinds[i] = _KEY
                self.layers.append(obj)
                key_layer[i] = len(self.layers) - 1
            elif kind == "lava":
                kinds[i] = _BLOCKED  # overlapping ends the episode without reward
            elif obj.can_overlap():
                kinds[i] = _FREE  # floor
        self.kinds, self.colors, self.key_layer = kinds, colors, key_layer
        self.cost = self._search()

    def matches(self, env: Any) -> bool:
        """Whether the env's grid is still the one this plan was computed for."""
        return (env.grid is self.grid and env.carrying is self.carrying
                and env.grid.grid == self.cells
                and [(o.is_open, o.is_locked) for o in self.doors] == self.door_states)

    # ---- the state graph -------------------------------------------------------------------

    def standable(self, cell: int, layer: int) -> bool:
        kind = self.kinds[cell]
        if kind in (_FREE, _OPEN, _CLOSED, _LOCKED):
            # One stands on a door cell only after opening it.
            return True
        return kind == _KEY and self.key_layer[cell] == layer

    def enter_cost(self, cell: int, layer: int) -> int:
        """Steps to move forward into ``cell`` from a neighbour (0: impossible)."""
        kind = self.kinds[cell]
        if kind in (_FREE, _OPEN, _GOAL):
            return 1
        if kind == _CLOSED:
            return 2  # toggle, forward
        if kind == _LOCKED:
            held = self.layers[layer]
            if held is not None and held.type == "key" and held.color == self.colors[cell]:
                return 2
            return 0
        if kind == _KEY and self.key_layer[cell] == layer:
            return 1
        return 0

    def index(self, x: int, y: int, d: int, layer: int) -> int:
        return ((layer * self.height + y) * self.width + x) * 4 + d

    def _search(self) -> list[float]:
        """Backward Dijkstra from the goal: the cost-to-go of every state."""
        w, h = self.width, self.height
        cost = [_INF] * (w * h * 4 * len(self.layers))
        heap: list[tuple[float, int, int, int, int]] = []
        # Stepping onto a goal ends the episode: the states facing a goal cost 1.
        for cell, kind in enumerate(self.kinds):
            if kind != _GOAL:
                continue
            gx, gy = cell % w, cell // w
            for d, (dx, dy) in enumerate(_DIRS):
                x, y = gx - dx, gy - dy
                if not (0 <= x < w and 0 <= y < h):
                    continue
                for layer in range(len(self.layers)):
                    if self.standable(y * w + x, layer):
                        s = self.index(x, y, d, layer)
                        if cost[s] > 1:
                            cost[s] = 1
                            heapq.heappush(heap, (1, x, y, d, layer))
        while heap:
            c, x, y, d, layer = heapq.heappop(heap)
            if c > cost[self.index(x, y, d, layer)]:
                continue
            # Turns: left from d + 1 and right from d - 1 lead to d.
            for pd in ((d + 1) % 4, (d + 3) % 4):
                s = self.index(x, y, pd, layer)
                if c + 1 < cost[s]:
                    cost[s] = c + 1
                    heapq.heappush(heap, (c + 1, x, y, pd, layer))
            dx, dy = _DIRS[d]
            # Forward from the cell behind, entering this one.
            px, py = x - dx, y - dy
            if 0 <= px < w and 0 <= py < h and self.standable(py * w + px, layer):
                step = self.enter_cost(y * w + x, layer)
                s = self.index(px, py, d, layer)
                if step and c + step < cost[s]:
                    cost[s] = c + step
                    heapq.heappush(heap, (c + step, px, py, d, layer))
            # Pickup: with empty hands, facing this layer's key.
            if layer > 0 and self.layers[0] is None:
                fx, fy = x + dx, y + dy
                if 0 <= fx < w and 0 <= fy < h and self.key_layer[fy * w + fx] == layer \
                        and self.kinds[fy * w + fx] == _KEY and self.standable(y * w + x, 0):
                    s = self.index(x, y, d, 0)
                    if c + 1 < cost[s]:
                        cost[s] = c + 1
                        heapq.heappush(heap, (c + 1, x, y, d, 0))
        return cost

    def best(self, x: int, y: int, d: int) -> tuple[int, float]:
        """The optimal action at pose ``(x, y, d)`` in layer 0 and its cost-to-go (inf: none)."""
        w, h = self.width, self.height
        dx, dy = _DIRS[d]
        fx, fy = x + dx, y + dy
        options: list[tuple[float, int]] = []  # (cost, action); ties go to the earlier entry
        if 0 <= fx < w and 0 <= fy < h:
            front = fy * w + fx
            kind = self.kinds[front]
            if kind == _GOAL:
                return FORWARD, 1
            step = self.enter_cost(front, 0)
            if step == 1:
                options.append((1 + self.cost[self.index(fx, fy, d, 0)], FORWARD))
            elif step == 2:
                options.append((2 + self.cost[self.index(fx, fy, d, 0)], TOGGLE))
            if kind == _KEY and self.layers[0] is None:
                options.append((1 + self.cost[self.index(x, y, d, self.key_layer[front])], PICKUP))
        options.append((1 + self.cost[self.index(x, y, (d + 3) % 4, 0)], LEFT))
        options.append((1 + self.cost[self.index(x, y, (d + 1) % 4, 0)], RIGHT))
        total, action = min(options, key=lambda o: o[0])
        return action, total


class MiniGridPlannerExpert(Expert):
    """Shortest path to the goal over the true MiniGrid grid; opens doors, fetches keys.

    ``act(obs)`` ignores ``obs``: it reads the current state of the bound env, so call it before
    the env steps (gatekit does). The planner is deterministic, so :meth:`log_prob` puts all the
    mass on its own action: 0.0 for it and :attr:`OFF_PLAN_LOG_PROB` (``log(1e-6)``, finite so
    that likelihood-based gates and losses stay finite) for any other action. When several actions
    are equally short, it picks the first of forward, toggle, pickup, left, right.

    When no path exists (no goal, a locked door without its key, the agent boxed in), it never
    raises: it toggles a door in front, else moves forward if it can, else turns left.

    Args:
        env: The MiniGrid env to advise on (any wrapper stack around a ``MiniGridEnv``).

    Raises:
        ConfigError: ``env.unwrapped`` is not a MiniGrid env.
    """

    has_log_prob = True
    #: Log-probability of an action other than the planner's (a probability of 1e-6).
    OFF_PLAN_LOG_PROB = math.log(1e-6)

    def __init__(self, *, env: gym.Env) -> None:
        base = getattr(env, "unwrapped", None)
        if not all(hasattr(base, a) for a in ("grid", "agent_pos", "agent_dir", "carrying")):
            raise ConfigError(f"expert: minigrid-planner needs a MiniGrid env, got {type(base).__name__}; "
                              "use a minigrid-* env")
        super().__init__(env.observation_space, env.action_space)
        self._plan: _Plan | None = None
        self.plans_computed = 0  # searches run so far (how well the cache works)
        self.bind(env)

    def bind(self, env: gym.Env) -> None:
        super().bind(env)
        self._plan = None

    def reset(self, *, seed: int | None = None) -> None:
        super().reset(seed=seed)
        self._plan = None

    def _current_plan(self, base: Any) -> _Plan:
        plan = self._plan
        if plan is None or not plan.matches(base):
            plan = _Plan(base)
            self._plan = plan
            self.plans_computed += 1
        return plan

    def plan_cost(self) -> float:
        """Steps the planner needs from the current state to the goal (inf when unreachable)."""
        base: Any = self.env.unwrapped  # type: ignore[union-attr]
        if base.agent_pos is None or base.agent_dir is None or base.agent_dir < 0:
            return _INF
        return self._current_plan(base).best(int(base.agent_pos[0]), int(base.agent_pos[1]), int(base.agent_dir))[1]

    def act(self, obs: Any) -> int:
        base: Any = self.env.unwrapped  # type: ignore[union-attr]
        pos, d = base.agent_pos, base.agent_dir
        if pos is None or d is None or d < 0:
            return LEFT  # not reset yet: any valid action
        x, y, d = int(pos[0]), int(pos[1]), int(d)
        action, total = self._current_plan(base).best(x, y, d)
        if total < _INF:
            return action
        return self._fallback(base, x, y, d)

    @staticmethod
    def _fallback(base: Any, x: int, y: int, d: int) -> int:
        dx, dy = _DIRS[d]
        fx, fy = x + dx, y + dy
        if not (0 <= fx < base.grid.width and 0 <= fy < base.grid.height):
            return LEFT
        front = base.grid.get(fx, fy)
        if front is not None and front.type == "door" and not front.is_open:
            return TOGGLE
        if front is None or (front.can_overlap() and front.type != "lava"):
            return FORWARD
        return LEFT

    def log_prob(self, obs: Any, action: Any) -> float:
        """0.0 for the planner's action in the env's current state, ``log(1e-6)`` otherwise."""
        chosen = int(np.asarray(action).reshape(-1)[0])
        return 0.0 if chosen == self.act(obs) else self.OFF_PLAN_LOG_PROB
