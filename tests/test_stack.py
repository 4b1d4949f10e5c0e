"""gatekit on today's stack without extras: a component that needs a missing optional package
is one line naming the extra, and the wrapper steps on whatever gymnasium is installed."""

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
from click.testing import CliRunner

from gatekit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_needing_a_missing_extra_is_one_line_naming_it(monkeypatch):
    for name in [m for m in sys.modules if m == "imitation" or m.startswith("imitation.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "imitation", None)  # `import imitation` now fails as if not installed
    res = CliRunner().invoke(main, ["train", str(ROOT / "recipes/hg_cartpole.yaml"), "--dry-run"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'gatekit[imitation]'" in lines[0] and "learner 'bc'" in lines[0]
    assert "Traceback" not in res.output + res.stderr


def test_wrapper_steps_on_the_installed_gymnasium():
    from gatekit import InterventionWrapper
    from gatekit.criteria.simple import ActionGapCriterion
    from gatekit.experts.classic import PendulumExpert

    env = gym.make("Pendulum-v1")
    env = InterventionWrapper(env, expert=PendulumExpert(env=env), criterion=ActionGapCriterion(threshold=0.25))
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, _, _, _, info = env.step(np.array([2.0], np.float32))
    assert env.totals.steps == 5 and env.totals.expert_steps >= 1
    assert info["gatekit"]["executed_action"].shape == (1,)
    print(f"gymnasium {gym.__version__}: wrapper stepped")
