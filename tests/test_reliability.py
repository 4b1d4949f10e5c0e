"""Nothing lost: kills and resumes, failing experts, bad recipes (docs/reliability.md)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekit.cli import main
from gatekit.config import load_recipe, load_recipe_dict
from gatekit.data import read_log
from gatekit.errors import ExpertError, GatekitError
from gatekit.runs import train
from tests.bad_inputs import BAD_OPTIONS, BAD_RECIPES
from tests.damage import FILES, KINDS, make_base, random_damage, run_case
from tests.recipes import fast_recipe, tiny_recipe


def _start(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "gatekit.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("trial", [0, 1])
def test_sigkill_then_resume_keeps_every_record_once(tmp_path, trial):
    rng = random.Random(1000 + trial)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(fast_recipe()))
    run = tmp_path / "run"
    proc = _start(["train", str(recipe), "--out", str(run), "--no-progress"], tmp_path)
    log = run / "records.gkr"
    target = rng.randint(100, 1500)  # a random point of the run, in records (wall time varies with load)
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or read_log(log)[2]["records"] < target):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _, before, info = read_log(log)
    n_before = info["records"]
    assert target <= n_before < 2500, "the kill should land mid-run"

    res = subprocess.run([sys.executable, "-m", "gatekit.cli", "train", "--resume", str(run), "--no-progress"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    _, after, info_after = read_log(log)
    assert info_after["torn_bytes"] == 0
    # every record written before the kill is still there, unchanged, exactly once
    for name in ("step", "episode", "obs", "expert_action", "executed_action", "intervened"):
        np.testing.assert_array_equal(after[name][:n_before], before[name])
    assert np.array_equal(after["step"], np.arange(len(after["step"])))  # no step twice, none missing
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["total_steps"] == 2500 == len(after["step"])
    assert results["expert_steps"] == int(after["intervened"].sum())
    assert results["switches"] == int(after["switched"].sum())


FLAKY = '''
from gatekit.experts.classic import CartPoleExpert

class FlakyExpert(CartPoleExpert):
    calls = 0

    def act(self, obs):
        type(self).calls += 1
        if type(self).calls > 700:
            raise ConnectionError("teleoperation link lost")
        return super().act(obs)
'''


def test_expert_that_raises_stops_the_run_cleanly_with_everything_saved(tmp_path, monkeypatch):
    (tmp_path / "flaky_plugin.py").write_text(FLAKY)
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = fast_recipe(expert={"id": "flaky_plugin:FlakyExpert"})
    with pytest.raises(ExpertError, match=r"teleoperation link lost at step (\d+) \(episode \d+\); every step before it is saved"):
        train(load_recipe_dict(raw), out=tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and "teleoperation link lost" in results["error"]
    _, cols, _ = read_log(tmp_path / "run" / "records.gkr")
    assert len(cols["step"]) == results["total_steps"] == 700  # one query per step, all 700 answered ones kept
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_nonfinite_observation_is_a_clean_error():
    import gymnasium as gym

    from gatekit.criteria.simple import NeverCriterion
    from gatekit.envs.toy import EchoEnv
    from gatekit.experts.classic import EchoExpert
    from gatekit.wrappers import InterventionWrapper

    class NaNObs(gym.ObservationWrapper):
        def observation(self, obs):
            return np.full_like(obs, np.nan)

    env = NaNObs(EchoEnv())
    w = InterventionWrapper(env, expert=EchoExpert(env=env), criterion=NeverCriterion())
    with pytest.raises(GatekitError, match="non-finite observation at step 0"):
        w.reset(seed=0)


# --- mutated recipes: every failure is one clean line with exit code 2 ----------------------

VALID = fast_recipe()
PATHS = []


def _paths(node, prefix=()):
    for k, v in node.items():
        PATHS.append((*prefix, k))
        if isinstance(v, dict):
            _paths(v, (*prefix, k))


_paths(VALID)

junk = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**9), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@st.composite
def mutations(draw):
    raw = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = raw
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                break
        if not isinstance(node, dict):
            continue
        key = path[-1]
        kind = draw(st.sampled_from(["delete", "typo", "value"]))
        if kind == "delete":
            node.pop(key, None)
        elif kind == "typo" and key in node:
            node[key + draw(st.sampled_from(["s", "_", "x"]))] = node.pop(key)
        else:
            node[key] = draw(junk)
    return raw


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=mutations())
def test_mutated_recipes_fail_cleanly(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("m") / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["train", str(path), "--dry-run", "--out", str(path.parent / "run")])
    assert res.exit_code in (0, 2), (raw, res.output, res.stderr, res.exception)
    if res.exit_code == 2:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gatekit: error: "), res.stderr
    else:
        load_recipe(path)  # accepted recipes really are valid


# --- bad input: every case is one clean line with exit code 2 -----------------------------------

@pytest.mark.parametrize(("case", "text", "message"), BAD_RECIPES, ids=[c for c, _, _ in BAD_RECIPES])
def test_bad_recipe_is_one_line(tmp_path, case, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    t0 = time.perf_counter()
    res = CliRunner().invoke(main, ["train", str(path), "--dry-run", "--out", str(tmp_path / "run")])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("gatekit: error: "), (res.stderr, res.exception)
    assert message in lines[0], lines[0]
    assert time.perf_counter() - t0 < 30  # bounded: no expansion, no recursion
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("case", "args", "message"), BAD_OPTIONS, ids=[c for c, _, _ in BAD_OPTIONS])
def test_bad_option_is_one_line(tmp_path, case, args, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe()))
    res = CliRunner().invoke(main, ["train", str(path), "--dry-run", *args])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and message in lines[0], (res.stderr, res.exception)


def test_run_folders_never_leave_the_output_root(tmp_path):
    from gatekit.runs.rundir import default_run_dir

    assert default_run_dir("tiny", 0, root=tmp_path).parent == tmp_path
    with pytest.raises(GatekitError, match="'name' must be"):
        default_run_dir("../..", 0, root=tmp_path)


# --- a finished run folder damaged at random: intact records read, damage reported, clean resume ---

@pytest.fixture(scope="module")
def damage_base(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("damage") / "base")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(file=st.sampled_from(FILES), kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
def test_property_random_damage_to_a_run_folder(damage_base, tmp_path_factory, file, kind, seed):
    d = random_damage(random.Random(seed), damage_base, file=file, kind=kind)
    out = run_case(damage_base, tmp_path_factory.mktemp("case"), d)
    assert out.survived, (str(d), out.violations)
