"""What the gate costs per env step, and how long a criterion takes to decide.

For each criterion (``never``, ``action-gap``, ``aim``, ``thrifty``) an
``InterventionWrapper`` steps the env for ``--steps`` steps with a fixed novice; the env's
``step`` and the expert's ``act`` are timed from inside (CPU time of this process, so a loaded
machine inflates the figures less than wall time would), and everything else the wrapper does
(building the context, the decision, casting, the record, counting) is the gate's overhead:

    overhead = wrapped step - env.step - expert.act      (per step, and as % of env.step)

The learned gates are made ready with their networks at the recipes' sizes (AIM's proxy Q
[400, 300]; Thrifty's 5-member ensemble and risk critic [256, 256]); their weights are random,
which costs the same as trained ones. Decision latency: ``decide`` on one context, and
``decide_batch`` on 64 (per context).

Example:
    .venv/bin/python bench/gate_overhead.py --env cartpole --steps 3000
    .venv/bin/python bench/gate_overhead.py --env metadrive --steps 2000
    .venv/bin/python bench/gate_overhead.py --env null-metadrive --steps 20000 --criteria never,aim
    .venv/bin/python bench/gate_overhead.py --env null-metadrive --steps 5000 --evict-mb 16
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekit.config import Component, build  # noqa: E402
from gatekit.envs import ENVS  # noqa: E402
from gatekit.experts import EXPERTS  # noqa: E402
from gatekit.types import GateContext  # noqa: E402
from gatekit.wrappers import InterventionWrapper  # noqa: E402

EXPERT_OF = {"cartpole": "cartpole-pd", "pendulum": "pendulum-pd", "metadrive": "metadrive-ppo",
             "null-metadrive": ""}


class NullMetaDrive(gym.Env):
    """MetaDrive's spaces (259-dim lidar-and-state observation, 2-dim action) with next to no
    simulation: each step draws a fresh observation. On it the gate's own code is all there is
    to time, with its caches warm (a real simulator step evicts them)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (259,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, horizon: int = 1000, evict_mb: float = 0.0) -> None:
        self.horizon, self.t = horizon, 0
        self._scratch = np.zeros(int(evict_mb * 2**20) // 8) if evict_mb else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.random(259, dtype=np.float32), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        if self._scratch is not None:  # stand-in for a simulator's memory traffic: evicts the caches
            self._scratch += 1.0
        return self.np_random.random(259, dtype=np.float32), 0.0, False, self.t >= self.horizon, {}


class ConstantExpert:
    """The null env's expert: one fixed action (its cost is timed apart, like any expert's)."""

    observation_space, action_space = NullMetaDrive.observation_space, NullMetaDrive.action_space

    def __init__(self) -> None:
        self.has_log_prob = False

    def bind(self, env: Any) -> None:
        pass

    def reset(self, *, seed: int | None = None) -> None:
        pass

    def act(self, obs: Any) -> np.ndarray:
        return np.array([0.1, 0.5], np.float32)

    def close(self) -> None:
        pass


EVICT_MB = 0.0  # --evict-mb


def make_env(env_id: str, seed: int) -> gym.Env:
    if env_id == "null-metadrive":
        return NullMetaDrive(evict_mb=EVICT_MB)
    return build(ENVS, Component(id=env_id), "env", split="train", seed=seed)


def make_expert(env_id: str, env: gym.Env) -> Any:
    if env_id == "null-metadrive":
        return ConstantExpert()
    return build(EXPERTS, Component(id=EXPERT_OF[env_id]), "expert", env=env)


class TimedEnv(gym.Wrapper):
    """Adds the CPU time of every ``step`` and ``reset``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seconds = 0.0

    def step(self, action: Any) -> Any:
        t = time.process_time()
        out = self.env.step(action)
        self.seconds += time.process_time() - t
        return out

    def reset(self, **kwargs: Any) -> Any:
        t = time.process_time()
        out = self.env.reset(**kwargs)
        self.seconds += time.process_time() - t
        return out


class TimedExpert:
    """The expert, with the CPU time of its ``act`` and ``log_prob`` added up."""

    def __init__(self, expert: Any) -> None:
        self._expert = expert
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._expert, name)

    def act(self, obs: Any) -> Any:
        t = time.process_time()
        out = self._expert.act(obs)
        self.seconds += time.process_time() - t
        return out

    def log_prob(self, obs: Any, action: Any) -> float:
        t = time.process_time()
        out = self._expert.log_prob(obs, action)
        self.seconds += time.process_time() - t
        return out


def make_criterion(name: str, obs_space: gym.Space, act_space: gym.Space) -> Any:
    from gatekit.criteria import CRITERIA

    kwargs: dict[str, Any] = {"never": {}, "action-gap": {}, "aim": {"hidden": [400, 300]},
                              "thrifty": {"hidden": [256, 256], "q_hidden": [256, 256]}}[name]
    crit = CRITERIA.get(name)(**kwargs)
    crit.bind(obs_space, act_space)
    if name == "aim":  # ready: thresholds that let both the novice and the expert act
        crit.ready, crit.eps = True, 0.05
        obs = np.stack([obs_space.sample() for _ in range(256)])
        acts = np.stack([np.asarray(act_space.sample()) for _ in range(256)])
        crit.beta = float(np.quantile(crit.q_values(obs, acts), 0.9))
    if name == "thrifty":
        crit.ready = True
        crit.novelty_threshold, crit.risk_threshold, crit.q_median, crit.gap_threshold = 1e9, -1.0, 0.0, 1e9
    return crit


def measure(env_id: str, criterion: str, steps: int, seed: int) -> dict[str, float]:
    """CPU seconds per step: the env's step, the expert's act, and the rest of ``wrapper.step``
    (the gate). The novice (a random action half the time, the expert's the other half, so
    that both take-overs and hand-backs happen) acts outside the timed calls."""
    env = TimedEnv(make_env(env_id, seed))
    raw_expert = make_expert(env_id, env.env)
    expert = TimedExpert(raw_expert)
    crit = make_criterion(criterion, env.observation_space, env.action_space)
    wrapper = InterventionWrapper(env, expert=expert, criterion=crit)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    episode, inside = 0, 0.0
    obs, _ = wrapper.reset(seed=episode)
    env.seconds = expert.seconds = 0.0
    for _ in range(steps):
        novice = wrapper.action_space.sample() if rng.random() < 0.5 else raw_expert.act(obs)
        t = time.process_time()
        obs, _, term, trunc, _ = wrapper.step(novice)
        if term or trunc:
            episode += 1
            obs, _ = wrapper.reset(seed=episode)
        inside += time.process_time() - t
    wrapper.close()
    return {"env": env.seconds / steps, "expert": expert.seconds / steps,
            "gate": (inside - env.seconds - expert.seconds) / steps, "takeover_rate": wrapper.totals.takeover_rate}


def decision_latency(criterion: str, env_id: str, seed: int, repeats: int = 2000) -> tuple[float, float]:
    env = make_env(env_id, seed)
    crit = make_criterion(criterion, env.observation_space, env.action_space)
    obs, _ = env.reset(seed=0)
    act = env.action_space.sample()
    ctx = GateContext(obs=obs, novice_action=act, expert_in_control=False, episode_step=0, expert_fn=lambda o: act)
    for _ in range(50):
        crit.decide(ctx)
    t = time.process_time()
    for _ in range(repeats):
        crit.decide(ctx)
    single = (time.process_time() - t) / repeats
    ctxs = [GateContext(obs=obs, novice_action=act, expert_in_control=False, episode_step=0, expert_fn=lambda o: act)
            for _ in range(64)]
    t = time.process_time()
    for _ in range(max(1, repeats // 64)):
        crit.decide_batch(ctxs)
    batched = (time.process_time() - t) / (max(1, repeats // 64) * 64)
    env.close()
    return single, batched


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", choices=sorted(EXPERT_OF), default="cartpole")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--criteria", default="never,action-gap,aim,thrifty")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evict-mb", type=float, default=0.0,
                   help="null-metadrive: MB of memory each step writes (a simulator's cache eviction)")
    args = p.parse_args()
    global EVICT_MB
    EVICT_MB = args.evict_mb
    torch.set_num_threads(1)
    print(f"env {args.env}, {args.steps} steps per criterion, CPU time of this process "
          f"(load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())})")
    print(f"{'criterion':<11} {'env.step ms':>11} {'expert ms/step':>14} {'gate us/step':>12} {'gate % of step':>14} "
          f"{'decide us':>9} {'batched us':>10}")
    for name in args.criteria.split(","):
        m = measure(args.env, name, args.steps, args.seed)
        single, batched = decision_latency(name, args.env, args.seed)
        pct = m["gate"] / m["env"] * 100 if m["env"] else math.nan
        print(f"{name:<11} {m['env'] * 1e3:>11.3f} {m['expert'] * 1e3:>14.3f} {m['gate'] * 1e6:>12.1f} "
              f"{pct:>13.1f}% {single * 1e6:>9.1f} {batched * 1e6:>10.1f}")


if __name__ == "__main__":
    main()
