"""A person as the expert, without a window: the wrapper's and the run's hooks for a person.

A stand-in person (:class:`ClaimingPerson`, no pygame) claims control on planned steps and
counts its claims as effort; these tests check what the wrapper, the vectorised wrapper, the
env workers and the run layer do with such an expert. The keyboard expert itself is tested in
``tests/test_keyboard.py`` (it needs pygame).
"""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from gatekit.config import load_recipe_dict
from gatekit.criteria.base import Criterion
from gatekit.criteria.human import HumanCriterion
from gatekit.criteria.simple import ActionGapCriterion
from gatekit.envs.toy import EchoEnv
from gatekit.errors import ConfigError, GatekitError
from gatekit.experts.base import Expert
from gatekit.experts.classic import EchoExpert
from gatekit.experts.keyboard import Effort
from gatekit.runs import train
from gatekit.runs.envs import InProcessEnvs
from gatekit.runs.results import RunResult
from gatekit.types import Decision, GateContext
from gatekit.wrappers import InterventionWrapper

PERSON = "tests.test_person:ClaimingPerson"


class ClaimingPerson(Expert):
    """Acts with a fixed action; claims control (True) on the wrapper's calls numbered in
    ``take``, hands back (False) on those in ``give``; every claim is one take-over or
    hand-back of its :class:`Effort`."""

    def __init__(self, *, env: gym.Env, action: list[float] | None = None, take: list[int] | None = None,
                 give: list[int] | None = None) -> None:
        super().__init__(env.observation_space, env.action_space)
        self.action = np.asarray(action if action is not None else [0.0], dtype=np.float32)
        self.take, self.give = set(take or []), set(give or [])
        self.calls: list[tuple[bool, bool]] = []  # (expert_in_control, watched) per call
        self.mine = Effort()
        self.before = Effort()
        self.closed = False

    def act(self, obs: Any) -> Any:
        return self.action

    def claim_control(self, obs: Any, *, expert_in_control: bool, watched: bool) -> bool | None:
        n = len(self.calls)
        self.calls.append((expert_in_control, watched))
        if n in self.take:
            self.mine.takeovers += 1
            return True
        if n in self.give:
            self.mine.handbacks += 1
            return False
        return None

    def effort(self) -> Effort:
        return self.before + self.mine

    def load_effort(self, state: dict[str, Any]) -> None:
        self.before = Effort(**state)

    def close(self) -> None:
        self.closed = True


class Asked(Criterion):
    """Records each step it is asked on; the expert acts on the steps in ``expert``."""

    name = "asked"

    def __init__(self, expert: set[int] | None = None) -> None:
        super().__init__()
        self.expert = expert or set()
        self.asked: list[int] = []

    def takeover(self, ctx: GateContext) -> Decision:
        self.asked.append(ctx.episode_step)
        return Decision(expert_acts=ctx.episode_step in self.expert, score=1.0)


def f32(x: float) -> np.ndarray:
    return np.array([x], np.float32)


def test_claims_answer_instead_of_the_criterion_and_the_effort_goes_into_info():
    env = EchoEnv(horizon=20)
    person = ClaimingPerson(env=env, take=[3], give=[5])
    crit = Asked(expert={6, 8})
    w = InterventionWrapper(env, expert=person, criterion=crit, warmup_steps=2)
    w.reset(seed=0)
    infos = [w.step(f32(0.5))[4] for _ in range(9)]
    g = [i["gatekit"] for i in infos]
    assert [x["intervened"] for x in g] == [True, True, False, False, False, True, True, False, True]
    # warm-up steps 0-1: forced, the person is not asked; the claims of calls 3 and 5 (steps 5
    # and 7) answer instead of the criterion, which decides on every other step
    assert len(person.calls) == 7 and person.calls[0] == (True, False)
    assert crit.asked == [2, 3, 4, 6, 8] and not crit.human_gated
    assert g[5]["switched"] and np.isnan(g[5]["score"]) and g[6]["score"] == 1.0
    assert g[7]["handed_back"] and g[8]["switched"]
    assert g[-1]["person"] == person.effort().as_dict() and g[-1]["person"]["takeovers"] == 1
    # LeRobot's keys at the top level: an intervention, and its executed expert action
    assert [i["is_intervention"] for i in infos] == [x["intervened"] for x in g]
    assert infos[5]["action_intervention"].tolist() == [0.0] and "action_intervention" not in infos[2]


def test_without_an_effort_there_is_no_person_key():
    env = EchoEnv()
    w = InterventionWrapper(env, expert=EchoExpert(env=env, action=[0.0]), criterion=ActionGapCriterion(threshold=0.1))
    w.reset(seed=0)
    info = w.step(f32(0.0))[4]
    assert "person" not in info["gatekit"] and info["is_intervention"] is False


def test_the_human_criterion_keeps_control_where_the_person_put_it():
    env = EchoEnv(horizon=20)
    person = ClaimingPerson(env=env, take=[1], give=[4])
    w = InterventionWrapper(env, expert=person, criterion=HumanCriterion())
    w.reset(seed=0)
    g = [w.step(f32(0.5))[4]["gatekit"] for _ in range(6)]
    assert [x["intervened"] for x in g] == [False, True, True, True, False, False]
    assert all(watched for _, watched in person.calls)  # human-gated: the person watches every step
    assert not any(x["expert_queried"] for x in g[4:])  # watching gives no label


def test_the_human_criterion_refuses_an_expert_without_a_person():
    env = EchoEnv()
    with pytest.raises(GatekitError, match="gated by a person.*use expert 'keyboard'"):
        InterventionWrapper(env, expert=EchoExpert(env=env, action=[0.0]), criterion=HumanCriterion())


def test_the_vectorised_wrapper_refuses_a_person():
    from stable_baselines3.common.vec_env import DummyVecEnv

    from gatekit.wrappers import InterventionVecWrapper

    venv = DummyVecEnv([EchoEnv, EchoEnv])
    with pytest.raises(GatekitError, match="criterion 'human' is gated by a person.*InterventionWrapper"):
        InterventionVecWrapper(venv, experts=[ClaimingPerson(env=e) for e in venv.envs], criterion=HumanCriterion())
    with pytest.raises(GatekitError, match=r"experts\[1\]: ClaimingPerson is a person.*InterventionWrapper"):
        InterventionVecWrapper(venv, experts=[EchoExpert(env=venv.envs[0], action=[0.0]), ClaimingPerson(env=venv.envs[1])],
                               criterion=ActionGapCriterion(threshold=0.1))


def test_the_run_closes_the_expert_before_the_env():
    closed = []

    class Env(EchoEnv):
        def close(self) -> None:
            closed.append("env")

    class Person(ClaimingPerson):
        def close(self) -> None:
            closed.append("expert")

    env = Env()
    envs = InProcessEnvs(InterventionWrapper(env, expert=Person(env=env), criterion=ActionGapCriterion(threshold=0.1)))
    envs.close()
    assert closed == ["expert", "env"]


def _recipe(*, n_envs: int = 1, expert: dict[str, Any] | None = None, criterion: dict[str, Any] | None = None,
            steps: int = 60) -> Any:
    return load_recipe_dict({
        "name": "person", "seed": 0,
        "env": {"id": "echo", "dim": 1, "horizon": 10, "n_envs": n_envs},
        "expert": expert or {"id": PERSON, "take": [3, 13, 23], "give": [6, 16, 24]},
        "criterion": criterion or {"id": "human"},
        "learner": {"id": "mlp-bc", "hidden": [8], "iterations": 1, "first_iterations": 1, "batch_size": 8},
        "budget": {"total_steps": steps},
        "eval": {"final_episodes": 1, "in_worker": False},
        "log": {"tensorboard": False, "progress": False, "plots": False},
        "data": {"checkpoint_every": 1000},
    })


def test_the_persons_effort_goes_into_results_and_checkpoint_and_adds_up_on_resume(tmp_path):
    from gatekit.cli import results_table

    def interrupt(live: dict[str, Any]) -> None:
        if live["steps"] >= 25:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    res = train(_recipe(), out=out, on_progress=interrupt)
    assert res.status == "interrupted" and res.person is not None
    assert res.total_steps == 25 and res.switches == 3
    assert (res.person["takeovers"], res.person["handbacks"]) == (3, 3)
    assert json.loads((out / "results.json").read_text())["person"] == res.person
    assert RunResult.read(out).person == res.person and "person" not in RunResult.read(out).extra
    assert torch.load(out / "checkpoint.pt", weights_only=True)["person"]["takeovers"] == 3
    res = train(resume=out)  # a new person: its calls count from 0 again, 35 more steps
    assert res.status == "finished" and res.total_steps == 60 and res.person is not None
    assert (res.person["takeovers"], res.person["handbacks"]) == (6, 6)  # both sessions counted
    rows = [str(c) for c in results_table(res, "t").columns[0]._cells]
    assert "person: help requests (response s, median / p90)" in rows


def test_a_run_without_a_person_reports_none():
    res = RunResult.from_json({"status": "finished", "recipe": "r", "seed": 0, "env": "e", "expert": "x",
                               "criterion": "c", "learner": "l", "total_steps": 1, "expert_steps": 0,
                               "expert_queries": 0, "switches": 0, "episodes": 1, "wall_seconds": 1.0})
    assert res.person is None and "person" not in res.to_json()
    with pytest.raises(ValueError, match="'person' must be an object"):
        RunResult.from_json({**res.to_json(), "person": 3})


def test_env_workers_refuse_a_person_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^env.n_envs: expert 'keyboard' is a person.*set env.n_envs: 1$"):
        train(_recipe(n_envs=2, expert={"id": "keyboard"}), out=tmp_path / "a")  # before any worker starts
    with pytest.raises(GatekitError, match=r"^the expert is a person at a window.*set env.n_envs: 1$"):
        train(_recipe(n_envs=2, criterion={"id": "never"}), out=tmp_path / "b")  # a plugin: refused from its worker's answer
    with pytest.raises(GatekitError, match=r"^criterion 'human' is gated by a person.*set env.n_envs: 1$"):
        train(_recipe(n_envs=2, expert={"id": "echo", "action": [0.0]}, criterion={"id": "human"}), out=tmp_path / "c")
