"""MetaDrive env factories and the shipped PPO expert.

MetaDrive allows one engine per process, so every test that builds an engine runs it in a
child process (``python -c``) that prints one ``RESULT {json}`` line; the test process itself
never imports MetaDrive's engine. Argument checks fail before MetaDrive is touched, so they run
in-process.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gatekit.envs.metadrive import make_metadrive_env, make_metadrive_toy_env
from gatekit.errors import ConfigError
from gatekit.experts.metadrive import RELEASE_STD

ROOT = Path(__file__).resolve().parent.parent
needs_metadrive = pytest.mark.skipif(importlib.util.find_spec("metadrive") is None, reason="metadrive not installed")


def run_child(code: str, timeout: float = 120) -> tuple[dict, str]:
    """Run ``code`` in a fresh interpreter; return its ``RESULT`` json and its whole output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("RESULT "):]), output


# ------------------------------------------------------------------------- no engine needed
def test_modules_import_without_metadrive():
    result, _ = run_child("""
        import json, sys
        class Block:  # make `import metadrive` fail, as if it were not installed
            def find_spec(self, name, path=None, target=None):
                if name == "metadrive" or name.startswith("metadrive."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None
        sys.meta_path.insert(0, Block())
        import gatekit.envs.metadrive as envs
        import gatekit.experts.metadrive  # noqa: F401
        from gatekit.errors import ConfigError
        try:
            envs.make_metadrive_env()
            message = None
        except ConfigError as exc:
            message = str(exc)
        print("RESULT " + json.dumps({"message": message, "loaded": "metadrive" in sys.modules}))
    """)
    assert not result["loaded"]
    assert result["message"] and "not installed" in result["message"] and "\n" not in result["message"]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"num_scenarios": 0}, "num_scenarios"),
    ({"num_scenarios": 2000}, "num_scenarios"),  # train and test maps would overlap
    ({"traffic_density": 1.5}, "traffic_density"),
    ({"horizon": 0}, "horizon"),
    ({"accident_prob": -0.1}, "accident_prob"),
    ({"map": 0}, "map"),
    ({"map": ""}, "map"),
    ({"train_start_seed": -1}, "train_start_seed"),
    ({"seed": -3}, "seed"),
    ({"out_of_route_done": "yes"}, "out_of_route_done"),
    ({"render": 1}, "render"),
    ({"stop_limit": 0}, "stop_limit"),
    ({"extra_config": ["x"]}, "extra_config"),
    ({"extra_config": {"start_seed": 5}}, "extra_config"),
    ({"extra_config": {"use_render": True}}, "extra_config"),
])
def test_bad_arguments_raise_one_line_config_error(kwargs, field):
    with pytest.raises(ConfigError) as info:
        make_metadrive_env(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{field}:") and "\n" not in message


def test_bad_split_and_toy_overrides_are_checked():
    with pytest.raises(ValueError, match="split"):
        make_metadrive_env(split="validation")
    with pytest.raises(ConfigError, match="^traffic_density:"):
        make_metadrive_toy_env(traffic_density=3)
    with pytest.raises(TypeError):
        make_metadrive_toy_env(no_such_argument=1)


def test_expert_rejects_other_envs_and_bad_weights(tmp_path):
    from gatekit.envs.toy import EchoEnv
    from gatekit.experts.metadrive import MetaDrivePPOExpert, load_weights

    for env in (EchoEnv(dim=1), EchoEnv(dim=2), EchoEnv(n_actions=3)):
        with pytest.raises(ConfigError, match="^expert: metadrive-ppo"):
            MetaDrivePPOExpert(env=env)
    with pytest.raises(ConfigError, match="^weights: no file"):
        load_weights(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"default_policy/fc_1/kernel": np.zeros((3, 3))})
    with pytest.raises(ConfigError, match="^weights: .*fc_1/kernel"):
        load_weights(bad)


# ------------------------------------------------------------------------- env in a child
@needs_metadrive
def test_render_without_assets_and_unknown_config_key_fail_cleanly():
    result, _ = run_child("""
        import json
        from pathlib import PurePosixPath
        from metadrive.engine.asset_loader import AssetLoader
        from gatekit.envs.metadrive import make_metadrive_env
        from gatekit.errors import ConfigError
        AssetLoader.asset_path = PurePosixPath("/nonexistent/metadrive/assets")  # as on a fresh install
        messages = []
        for kwargs in ({"render": True}, {"extra_config": {"no_such_key": 1}}):
            try:
                make_metadrive_env(**kwargs).close()
                messages.append(None)
            except ConfigError as exc:
                messages.append(str(exc))
        env = make_metadrive_env()  # the failures above left no engine behind
        env.close()
        print("RESULT " + json.dumps(messages))
    """)
    render, unknown = result
    assert render.startswith("render:") and "python -m metadrive.pull_asset" in render and "\n" not in render
    assert unknown.startswith("extra_config:") and "no_such_key" in unknown and "\n" not in unknown


@needs_metadrive
def test_offline_reset_and_step_attempt_no_network():
    result, output = run_child("""
        import json, logging, socket, urllib.request
        attempts = []
        def refuse(name):
            def blocked(*args, **kwargs):
                attempts.append(name)
                raise OSError(f"network disabled in this test ({name})")
            return blocked
        socket.socket.connect = refuse("socket.connect")
        socket.socket.connect_ex = refuse("socket.connect_ex")
        socket.create_connection = refuse("socket.create_connection")
        socket.getaddrinfo = refuse("socket.getaddrinfo")
        urllib.request.urlopen = refuse("urllib.request.urlopen")
        urllib.request.urlretrieve = refuse("urllib.request.urlretrieve")

        import numpy as np
        from gymnasium.utils.env_checker import check_env
        from gatekit.envs.metadrive import make_metadrive_toy_env
        env = make_metadrive_toy_env(split="train", seed=0)
        check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=0)
        steps, last = 0, {}
        for _ in range(30):
            obs, reward, terminated, truncated, last = env.step(np.array([0.0, 0.5], np.float32))
            steps += 1
            if terminated or truncated:
                break
        out = {
            "attempts": attempts, "steps": steps, "obs_shape": list(obs.shape), "obs_dtype": str(obs.dtype),
            "action": [str(env.action_space), str(env.action_space.dtype)],
            "metadata": {k: env.metadata[k] for k in ("gatekit_metrics", "gatekit_single_instance")},
            "types": {k: type(last[k]).__name__ for k in ("is_success", "route_completion", "crash", "out_of_road")},
            "route": last["route_completion"],
            # MetaDrive must leave the root logger at WARNING: at INFO every library's chatter prints
            "root_level": logging.getLogger().level,
        }
        env.close()
        print("RESULT " + json.dumps(out))
    """)
    assert result["attempts"] == []
    assert result["steps"] == 30
    assert result["obs_shape"] == [259] and result["obs_dtype"] == "float32"
    assert result["action"][1] == "float32" and "(2,)" in result["action"][0]
    assert result["metadata"] == {"gatekit_metrics": ["route_completion", "crash", "out_of_road"],
                                  "gatekit_single_instance": True}
    assert result["types"] == {"is_success": "bool", "route_completion": "float", "crash": "bool", "out_of_road": "bool"}
    assert 0.0 < result["route"] < 1.0
    assert "[INFO]" not in output  # MetaDrive's INFO chatter is off
    assert result["root_level"] == logging.WARNING


@needs_metadrive
def test_one_engine_guard_and_seed_to_scenario_mapping():
    result, _ = run_child("""
        import json, gc
        import numpy as np
        from gatekit.envs.metadrive import make_metadrive_env
        from gatekit.errors import GatekitError
        env = make_metadrive_env(split="test", seed=1, traffic_density=0.0, accident_prob=0.0)
        try:
            make_metadrive_env(split="train")
            second = None
        except GatekitError as exc:
            second = str(exc)

        def scene(seed=None):
            obs, _ = env.reset(seed=seed)
            net = env.unwrapped.engine.current_map.road_network
            return env.current_scenario, sorted(net.graph.keys()), obs
        s0, roads0, obs0 = scene(0)
        s50, roads50, obs50 = scene(50)
        s1, roads1, _ = scene(1)
        env.reset(seed=7)
        draws_a = [scene()[0] for _ in range(4)]
        env.reset(seed=7)
        draws_b = [scene()[0] for _ in range(4)]
        env.close()
        env.close()  # closing twice is fine
        again = make_metadrive_env(split="train", traffic_density=0.0, accident_prob=0.0)
        again.reset(seed=0)
        train0 = again.current_scenario
        del again
        gc.collect()  # a forgotten env is closed when collected, freeing the engine
        third = make_metadrive_env(split="test")
        third.close()
        print("RESULT " + json.dumps({
            "second": second, "s0": s0, "s50": s50, "s1": s1, "same_map": roads0 == roads50,
            "same_obs": bool(np.array_equal(obs0, obs50)), "other_map": roads0 != roads1,
            "draws_a": draws_a, "draws_b": draws_b, "train0": train0,
        }))
    """)
    assert result["second"] and result["second"].startswith("metadrive:") and "\n" not in result["second"]
    assert "close()" in result["second"] and "worker process" in result["second"]
    assert (result["s0"], result["s50"], result["s1"]) == (1000, 1000, 1001)
    assert result["same_map"] and result["same_obs"] and result["other_map"]
    assert result["draws_a"] == result["draws_b"]
    assert all(1000 <= s < 1050 for s in result["draws_a"])
    assert result["train0"] == 100


@needs_metadrive
def test_stop_limit_truncates_a_training_episode_at_rest_and_leaves_held_out_ones_alone():
    result, _ = run_child("""
        import json
        import numpy as np
        from gatekit.envs.metadrive import make_metadrive_env
        brake = np.array([0.0, -1.0], np.float32)
        out = {}
        for split in ("train", "test"):
            env = make_metadrive_env(split=split, traffic_density=0.0, accident_prob=0.0, stop_limit=5)
            env.reset(seed=0)
            steps = []
            for t in range(1, 9):
                _, _, terminated, truncated, info = env.step(brake)
                steps.append([t, truncated, bool(info.get("stopped_too_long", False))])
                if terminated or truncated:
                    break
            # moving resets the count: 2 steps braking, then full throttle (over 1 km/h from the
            # 4th step on), never truncates
            env.reset(seed=0)
            moving = []
            for t in range(12):
                _, _, _, truncated, _ = env.step(brake if t < 2 else np.array([0.0, 1.0], np.float32))
                moving.append(truncated)
            env.close()
            out[split] = {"steps": steps, "moving": moving}
        print("RESULT " + json.dumps(out))
    """)
    assert result["train"]["steps"][-1] == [5, True, True]  # truncated at the 5th step at rest
    assert not any(t for _, t, _ in result["train"]["steps"][:-1])
    assert len(result["test"]["steps"]) == 8 and not any(t for _, t, _ in result["test"]["steps"])
    assert not any(result["train"]["moving"]) and not any(result["test"]["moving"])


# ------------------------------------------------------------------------- expert in a child
@needs_metadrive
def test_expert_matches_reference_and_log_prob_monte_carlo():
    result, _ = run_child("""
        import importlib.util, json, math
        from pathlib import Path
        import numpy as np
        import metadrive
        from gatekit.envs.metadrive import make_metadrive_env
        from gatekit.experts.metadrive import MetaDrivePPOExpert

        # MetaDrive's own numpy expert, loaded by path (its package __init__ would pull in torch).
        path = Path(metadrive.__file__).parent / "examples" / "ppo_expert" / "numpy_expert.py"
        spec = importlib.util.spec_from_file_location("md_numpy_expert", path)
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)

        env = make_metadrive_env(split="test")
        expert = MetaDrivePPOExpert(env=env, deterministic=True)
        calls = []
        forward = expert.forward
        expert.forward = lambda obs: calls.append(1) or forward(obs)
        obs, _ = env.reset(seed=0)
        expert.reset(seed=0)
        max_diff, state = 0.0, None
        for t in range(300):
            before = len(calls)
            action = expert.act(obs)
            expert.log_prob(obs, action)
            mean, std = expert.distribution()
            cached = len(calls) - before == 1
            max_diff = max(max_diff, float(np.abs(reference.expert(env.unwrapped.agent, deterministic=True) - mean).max()))
            # A state where clipping to [-1, 1] is negligible (4 std inside), so samples are
            # plain Gaussian draws (on map 1000 the first is at step 48).
            if np.all(np.abs(mean) + 4 * std < 1.0):
                state = t
                break
            obs, *_ = env.step(action)

        # Monte Carlo at this state: no env step, so every call hits the cached distribution.
        expert.deterministic = False
        expert.reset(seed=123)
        mean, std = expert.distribution()
        samples = np.array([expert.act(obs) for _ in range(4000)], dtype=np.float64)
        logps = np.array([expert.log_prob(obs, a) for a in samples])
        entropy = float(np.sum(0.5 * np.log(2 * math.pi * math.e * std**2)))
        # The density integrates to one (grid over +-6 std).
        g0 = np.linspace(mean[0] - 6 * std[0], mean[0] + 6 * std[0], 121)
        g1 = np.linspace(mean[1] - 6 * std[1], mean[1] + 6 * std[1], 121)
        dens = np.array([[math.exp(expert.log_prob(obs, [a, b])) for b in g1] for a in g0])
        trapezoid = getattr(np, "trapezoid", None) or np.trapz  # renamed in numpy 2
        mass = float(trapezoid(trapezoid(dens, g1, axis=1), g0))
        expert.reset(seed=123)
        repeat = np.array([expert.act(obs) for _ in range(5)], dtype=np.float64)
        act_dtype = str(expert.act(obs).dtype)
        env.close()
        print("RESULT " + json.dumps({
            "max_diff": max_diff, "state": state, "cached": cached, "calls_after_mc": len(calls),
            "mean": mean.tolist(), "std": std.tolist(), "emp_mean": samples.mean(0).tolist(),
            "emp_std": samples.std(0).tolist(), "mean_logp": float(logps.mean()), "entropy": entropy,
            "mass": mass, "repeat_ok": bool(np.array_equal(repeat, samples[:5])),
            "act_dtype": act_dtype,
        }))
    """)
    assert result["max_diff"] < 1e-4  # same mean as MetaDrive's own numpy expert
    assert result["state"] is not None and result["cached"]
    n = 4000
    mean, std = result["mean"], result["std"]
    for i in range(2):
        assert abs(result["emp_mean"][i] - mean[i]) < 5 * std[i] / n**0.5
        assert abs(result["emp_std"][i] / std[i] - 1) < 0.06
    # log p of a 2-d Gaussian sample has variance 1, so the mean of n has standard error n**-0.5.
    assert abs(result["mean_logp"] + result["entropy"]) < 5 / n**0.5
    assert abs(result["mass"] - 1.0) < 1e-3
    assert result["repeat_ok"] and result["act_dtype"] == "float32"


@needs_metadrive
def test_expert_is_deterministic_given_seeds():
    result, _ = run_child("""
        import json
        import numpy as np
        from gatekit.envs.metadrive import make_metadrive_env
        from gatekit.experts.metadrive import MetaDrivePPOExpert

        env = make_metadrive_env(split="train", seed=0)
        expert = MetaDrivePPOExpert(env=env)  # stochastic

        def rollout(env_seed, expert_seed, steps=80):
            obs, _ = env.reset(seed=env_seed)
            expert.reset(seed=expert_seed)
            actions, observations = [], []
            for _ in range(steps):
                action = expert.act(obs)
                actions.append(action.tolist())
                obs, _, terminated, truncated, _ = env.step(action)
                observations.append(float(obs.sum()))
                if terminated or truncated:
                    break
            return actions, observations

        a1, o1 = rollout(3, 5)
        a2, o2 = rollout(3, 5)
        a3, _ = rollout(3, 6)
        bounded = bool(np.all(np.abs(np.array(a1 + a3)) <= 1.0))
        env.close()
        print("RESULT " + json.dumps({"same": a1 == a2 and o1 == o2, "differs": a1 != a3, "n": len(a1),
                                      "bounded": bounded}))
    """)
    assert result["same"] and result["differs"] and result["bounded"]
    assert result["n"] >= 50


@needs_metadrive
def test_log_prob_std_scores_with_the_release_tolerance():
    # PVP's simulated person scores the novice's action with a fixed std (0.1365, 0.4583); the
    # wheel network's own steering std is ~20x smaller, so at a 0.05 density threshold a
    # steering offset of 0.2 passes the release's person and fails the network's.
    result, _ = run_child("""
        import json, math
        import numpy as np
        from gatekit.envs.metadrive import make_metadrive_env
        from gatekit.experts.metadrive import RELEASE_STD, MetaDrivePPOExpert

        env = make_metadrive_env(split="train", seed=0)
        own = MetaDrivePPOExpert(env=env, deterministic=True)
        release = MetaDrivePPOExpert(env=env, deterministic=True, log_prob_std=list(RELEASE_STD))
        obs, _ = env.reset(seed=0)
        for _ in range(30):
            obs, *_ = env.step(own.act(obs))
        mean, std = own.distribution()
        offset = mean + np.array([0.2, 0.0])
        s = np.array(RELEASE_STD)
        want = float(np.sum(-0.5 * ((offset - mean) / s) ** 2 - np.log(s) - 0.5 * math.log(2 * math.pi)))
        result = {"own_std": std.tolist(), "own": own.log_prob(obs, offset), "release": release.log_prob(obs, offset),
                  "want": want, "same_action": bool(np.array_equal(own.act(obs), release.act(obs)))}
        env.close()
        print("RESULT " + json.dumps(result))
    """)
    assert result["own_std"][0] < 0.05  # the network is sure of its steering
    assert abs(result["release"] - result["want"]) < 1e-9
    assert result["release"] > math.log(0.05) > result["own"]
    assert result["same_action"]  # only the likelihood changes, never the expert's action


def test_log_prob_std_is_checked():
    from gatekit.envs.toy import EchoEnv
    from gatekit.experts.metadrive import MetaDrivePPOExpert

    for bad in ([0.1], [0.1, 0.0], [0.1, float("nan")], "wide"):
        with pytest.raises(ConfigError, match="^log_prob_std:"):
            MetaDrivePPOExpert(env=EchoEnv(dim=2), log_prob_std=bad)


# The child-process code that drives 5 held-out maps with `expert` (defined before it) alone.
DRIVE_HELD_OUT = """
        successes, routes = [], []
        for i in range(5):
            obs, info = env.reset(seed=i)
            expert.reset(seed=10_000 + i)
            while True:
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                if terminated or truncated:
                    break
            successes.append(info["is_success"])
            routes.append(info["route_completion"])
        env.close()
"""


@pytest.mark.slow
@needs_metadrive
def test_expert_drives_held_out_maps():
    result, _ = run_child("""
        import json
        from gatekit.envs.metadrive import make_metadrive_env
        from gatekit.experts.metadrive import MetaDrivePPOExpert
        env = make_metadrive_env(split="test")
        expert = MetaDrivePPOExpert(env=env, deterministic=True)
    """ + DRIVE_HELD_OUT + """
        print("RESULT " + json.dumps({"successes": successes, "routes": routes}))
    """, timeout=600)
    assert sum(result["successes"]) >= 2
    assert sum(result["routes"]) / 5 > 0.5


# ------------------------------------------------------------------------- IDM expert
def test_idm_expert_rejects_other_envs_and_bad_arguments():
    from gatekit.envs.toy import EchoEnv
    from gatekit.experts.metadrive import check_std
    from gatekit.experts.metadrive_idm import MetaDriveIDMExpert

    for env in (EchoEnv(dim=2), EchoEnv(n_actions=3)):
        with pytest.raises(ConfigError, match="^expert: metadrive-idm"):
            MetaDriveIDMExpert(env=env)
    for sigma in ([0.1], [0.1, 0.0], [0.1, float("nan")], "wide", None):
        with pytest.raises(ConfigError, match="^sigma: expected two positive numbers"):
            check_std(sigma, "sigma")
    assert check_std((0.137, 0.458), "sigma").tolist() == [0.137, 0.458]


@needs_metadrive
def test_idm_expert_drives_like_metadrives_own_idm_and_resyncs_after_a_gap():
    """On the toy map the expert queried every step retraces MetaDrive's own IDMPolicy (the env
    driving the car itself); after a gap in the queries its action is that of a fresh policy."""
    result, _ = run_child("""
        import json, math
        import numpy as np
        from gatekit.config import Component, build
        from gatekit.envs.metadrive import import_metadrive, make_metadrive_toy_env
        from gatekit.experts import EXPERTS

        import_metadrive()
        from metadrive.policy.idm_policy import IDMPolicy

        STEPS = 120
        # 1. MetaDrive drives the ego car with its IDMPolicy (the action handed to step is ignored).
        env = make_metadrive_toy_env(split="test", extra_config={"agent_policy": IDMPolicy})
        env.reset(seed=0)
        native = []
        for _ in range(STEPS):
            env.step(np.zeros(2, dtype=np.float32))
            native.append([float(x) for x in env.unwrapped.agent.position])
        env.close()

        # 2. The expert drives through the env's ordinary action input.
        env = make_metadrive_toy_env(split="test")
        expert = build(EXPERTS, Component(id="metadrive-idm"), "expert", env=env)
        obs, _ = env.reset(seed=0)
        expert.reset(seed=0)
        ours, logps, same_step = [], [], True
        calls = []
        for t in range(STEPS):
            action = expert.act(obs)
            if t == 0:
                act = expert._policy.act
                expert._policy.act = lambda *a, **k: calls.append(1) or act(*a, **k)
            same_step &= bool(np.array_equal(expert.act(obs), action))  # cached: no second advance
            logps.append(expert.log_prob(obs, action))
            obs, *_ = env.step(action)
            ours.append([float(x) for x in env.unwrapped.agent.position])
        gap = np.abs(np.asarray(native) - np.asarray(ours)).max()
        n_calls = len(calls)  # steps 1..119: one call each, whatever the repeated queries

        # 3. A gap: another driver (a second IDM, so the car stays in its lane and no action
        # saturates) drives 15 steps without the expert being asked; then it is asked again.
        other = build(EXPERTS, Component(id="metadrive-idm"), "expert", env=env)
        other.reset(seed=2)
        for _ in range(15):
            obs, *_ = env.step(other.act(obs))
        fresh = build(EXPERTS, Component(id="metadrive-idm"), "expert", env=env)
        fresh.reset(seed=1)
        fresh_action = fresh.act(obs).tolist()
        after_gap = expert.act(obs).tolist()
        resyncs = expert.resyncs
        env.close()
        print("RESULT " + json.dumps({"gap": float(gap), "calls": n_calls, "same_step": same_step,
                                      "logp0": logps[0], "after_gap": after_gap, "fresh": fresh_action,
                                      "resyncs": resyncs, "moved": float(np.linalg.norm(np.subtract(ours[-1], ours[0])))}))
    """, timeout=300)
    assert result["moved"] > 20  # it drives
    assert result["gap"] < 1e-6, result["gap"]  # MetaDrive's own IDM trajectory
    assert result["calls"] == 119 and result["same_step"]  # advanced once per step
    # deterministic: the action is the mean, the log density its peak -log(2 pi s1 s2)
    assert abs(result["logp0"] + math.log(2 * math.pi * RELEASE_STD[0] * RELEASE_STD[1])) < 1e-9
    assert result["resyncs"] == 1 and result["after_gap"] == result["fresh"]
    assert max(abs(x) for x in result["fresh"]) < 1  # not clipped: the PID state shows


@pytest.mark.slow
@needs_metadrive
def test_idm_expert_drives_held_out_maps():
    result, _ = run_child("""
        import json
        from gatekit.envs.metadrive import make_metadrive_env
        from gatekit.experts.metadrive_idm import MetaDriveIDMExpert
        env = make_metadrive_env(split="test")
        expert = MetaDriveIDMExpert(env=env)
    """ + DRIVE_HELD_OUT + """
        print("RESULT " + json.dumps({"successes": successes, "resyncs": expert.resyncs}))
    """, timeout=600)
    assert sum(result["successes"]) >= 4 and result["resyncs"] == 0
