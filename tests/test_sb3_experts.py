"""SB3 experts (model zips and bare policy state dicts) and `gatekit train-expert`."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.config import Component, build, load_recipe_dict
from gatekit.envs import ENVS
from gatekit.errors import ConfigError, SpaceMismatchError
from gatekit.experts import EXPERTS

sb3 = pytest.importorskip("stable_baselines3")

ROOT = Path(__file__).resolve().parents[1]


def _cartpole():
    return ENVS.get("cartpole")(split="test")


def _pendulum():
    return ENVS.get("pendulum")(split="test")


@pytest.fixture(scope="module")
def ppo_zip(tmp_path_factory):
    """A PPO model trained for a few hundred CartPole steps, saved as an SB3 zip."""
    env = ENVS.get("cartpole")(split="train")
    model = sb3.PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(256)
    path = tmp_path_factory.mktemp("sb3") / "ppo_cartpole.zip"
    model.save(path)
    return path, model


def _observations(env, n=20):
    obs, _ = env.reset(seed=0)
    out = []
    for _ in range(n):
        out.append(obs)
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    return out


def test_zip_round_trip_through_registry_and_recipe(ppo_zip):
    path, model = ppo_zip
    env = _cartpole()
    expert = EXPERTS.get("sb3")(env=env, path=str(path))
    assert expert.algo == "ppo" and expert.has_log_prob and expert.env is env
    recipe = load_recipe_dict({"name": "t", "env": "cartpole", "expert": {"id": "sb3", "path": str(path)},
                               "criterion": "action-gap", "learner": "mlp-bc", "budget": {"total_steps": 10}})
    from_recipe = build(EXPERTS, recipe.expert, "expert", env=env)
    for obs in _observations(env):
        want = int(model.predict(obs, deterministic=True)[0])
        assert expert.act(obs) == want and from_recipe.act(obs) == want
        assert isinstance(expert.act(obs), int)
    # SB3's own convention: the .zip suffix may be left out
    assert EXPERTS.get("sb3")(env=env, path=str(path)[: -len(".zip")], algo="ppo").algo == "ppo"


def test_log_prob_matches_sb3_distribution(ppo_zip):
    path, model = ppo_zip
    env = _cartpole()
    expert = EXPERTS.get("sb3")(env=env, path=str(path))
    for obs in _observations(env, 5):
        obs_t, _ = model.policy.obs_to_tensor(obs)
        dist = model.policy.get_distribution(obs_t)
        for a in (0, 1):
            want = float(dist.log_prob(torch.tensor([a])).detach())
            assert expert.log_prob(obs, a) == pytest.approx(want, abs=1e-6)
        assert np.exp([expert.log_prob(obs, 0), expert.log_prob(obs, 1)]).sum() == pytest.approx(1.0, abs=1e-5)


def test_stochastic_expert_is_seeded_and_leaves_global_torch_rng_alone(ppo_zip):
    path, _ = ppo_zip
    env = _cartpole()
    expert = EXPERTS.get("sb3")(env=env, path=str(path), deterministic=False)
    obs = _observations(env, 1)[0]
    before = torch.get_rng_state()
    expert.reset(seed=3)
    first = [expert.act(obs) for _ in range(30)]
    expert.reset(seed=3)
    assert [expert.act(obs) for _ in range(30)] == first
    assert set(first) == {0, 1}  # it does sample
    assert torch.equal(torch.get_rng_state(), before)


def test_sac_log_prob_is_the_squashed_density_in_env_units(tmp_path):
    env = _pendulum()  # action bounds [-2, 2]: the rescaling's Jacobian matters
    model = sb3.SAC("MlpPolicy", env, buffer_size=10, seed=0, device="cpu")
    model.save(tmp_path / "sac.zip")
    expert = EXPERTS.get("sb3")(env=env, path=str(tmp_path / "sac.zip"), deterministic=False)
    assert expert.algo == "sac" and expert.has_log_prob
    obs = _observations(env, 1)[0]
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        scaled, logp = model.actor.action_log_prob(obs_t)
    action = model.policy.unscale_action(scaled.numpy())[0]
    assert expert.log_prob(obs, action) == pytest.approx(float(logp) + np.log(2.0 / 4.0), abs=1e-4)
    expert.reset(seed=1)
    a = expert.act(obs)
    assert a.shape == (1,) and -2.0 <= float(a[0]) <= 2.0


@pytest.mark.parametrize("algo,env_fn,log_prob", [
    ("ppo", _cartpole, True), ("a2c", _cartpole, True), ("dqn", _cartpole, False),
    ("sac", _pendulum, True), ("td3", _pendulum, False), ("ddpg", _pendulum, False),
])
def test_algo_auto_detection_and_log_prob_availability(tmp_path, algo, env_fn, log_prob):
    env = env_fn()
    cls = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN, "sac": sb3.SAC, "td3": sb3.TD3, "ddpg": sb3.DDPG}[algo]
    extra = {} if algo in ("ppo", "a2c") else {"buffer_size": 10}
    model = cls("MlpPolicy", env, seed=0, device="cpu", **extra)
    model.save(tmp_path / "m.zip")
    expert = EXPERTS.get("sb3")(env=env, path=str(tmp_path / "m.zip"))
    assert expert.algo == algo and expert.has_log_prob is log_prob
    obs = _observations(env, 1)[0]
    np.testing.assert_array_equal(np.asarray(expert.act(obs)), np.asarray(model.predict(obs, deterministic=True)[0]))
    if not log_prob:
        with pytest.raises(ConfigError, match="no action distribution") as exc:
            expert.log_prob(obs, expert.act(obs))
        assert "\n" not in str(exc.value)


def test_space_mismatch_names_both_spaces(ppo_zip):
    path, _ = ppo_zip
    with pytest.raises(SpaceMismatchError) as exc:
        EXPERTS.get("sb3")(env=_pendulum(), path=str(path))
    msg = str(exc.value)
    assert "\n" not in msg and "observation space" in msg and "(4,)" in msg and "(3,)" in msg


def test_missing_file_and_wrong_algo_are_one_line_config_errors(ppo_zip, tmp_path):
    env = _cartpole()
    with pytest.raises(ConfigError, match=r"^expert\.path: no file at") as exc:
        build(EXPERTS, Component(id="sb3", kwargs={"path": str(tmp_path / "nope.zip")}), "expert", env=env)
    assert "\n" not in str(exc.value)
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(ConfigError, match="not an SB3 model zip"):
        EXPERTS.get("sb3")(env=env, path=str(tmp_path / "junk.zip"))
    with pytest.raises(ConfigError, match="holds a ppo model"):
        EXPERTS.get("sb3")(env=env, path=str(ppo_zip[0]), algo="dqn")
    with pytest.raises(ConfigError, match="must be one of"):
        build(EXPERTS, Component(id="sb3", kwargs={"path": str(ppo_zip[0]), "algo": "trpo"}), "expert", env=env)


def test_policy_state_dict_expert(ppo_zip, tmp_path):
    _, model = ppo_zip
    env = _cartpole()
    pth = tmp_path / "policy.pth"
    torch.save(model.policy.state_dict(), pth)
    expert = build(EXPERTS, Component(id="sb3-policy", kwargs={"path": str(pth), "net_arch": [64, 64]}), "expert", env=env)
    assert expert.has_log_prob
    for obs in _observations(env, 10):
        assert expert.act(obs) == int(model.predict(obs, deterministic=True)[0])
        obs_t, _ = model.policy.obs_to_tensor(obs)
        want = float(model.policy.get_distribution(obs_t).log_prob(torch.tensor([1])).detach())
        assert expert.log_prob(obs, 1) == pytest.approx(want, abs=1e-6)
    # net_arch None: the sizes are read from the weights
    assert EXPERTS.get("sb3-policy")(env=env, path=str(pth)).act(obs) == expert.act(obs)


def test_policy_state_dict_wrong_architecture_names_the_layer(ppo_zip, tmp_path):
    _, model = ppo_zip
    env = _cartpole()
    pth = tmp_path / "policy.pth"
    torch.save(model.policy.state_dict(), pth)
    with pytest.raises(ConfigError) as exc:
        EXPERTS.get("sb3-policy")(env=env, path=str(pth), net_arch=[32, 32])
    msg = str(exc.value)
    assert "\n" not in msg and "mlp_extractor.policy_net.0.weight" in msg and "(64, 4)" in msg and "(32, 4)" in msg
    with pytest.raises(ConfigError, match="are those of a ppo or a2c policy; set expert.algo to ppo or a2c"):
        EXPERTS.get("sb3-policy")(env=env, path=str(pth), algo="dqn")
    torch.save({k: v for k, v in model.policy.state_dict().items() if k != "action_net.bias"}, tmp_path / "cut.pth")
    with pytest.raises(ConfigError, match="has no layer 'action_net.bias', which an SB3 ppo policy"):
        EXPERTS.get("sb3-policy")(env=env, path=str(tmp_path / "cut.pth"))
    with pytest.raises(ConfigError, match="whole SB3 model zip"):
        EXPERTS.get("sb3-policy")(env=env, path=str(ppo_zip[0]))
    with pytest.raises(ConfigError, match=r"^expert\.path: no file"):
        EXPERTS.get("sb3-policy")(env=env, path=str(tmp_path / "none.pth"))
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        EXPERTS.get("sb3-policy")(env=env, path=str(pth), activation="rellu")


def test_expert_recipe_is_strict():
    from gatekit.expert_training import load_expert_recipe

    path = ROOT / "recipes/ppo_expert_cartpole.yaml"
    assert load_expert_recipe(path).ppo["n_steps"] == 128
    for override, pattern in [
        ("ppo.n_step=8", "unknown key 'ppo.n_step'; did you mean 'n_steps'"),
        ("n_env=2", "did you mean 'n_envs'"),
        ("n_envs=0", "'n_envs' must be >= 1"),
        ("env.sucess_return=3", "unknown key 'env.sucess_return'; did you mean 'success_return'"),
        ("ppo.learning_rate=fast", "'ppo.learning_rate' must be a number"),
        ("ppo.policy=MlpPolcy", "did you mean 'MlpPolicy'"),
        ("ppo.seed=3", "'ppo.seed' is set by gatekit"),
        ("ppo.policy_kwargs={activation_fn: tahn}", "did you mean 'tanh'"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            load_expert_recipe(path, [override])
    assert load_expert_recipe(ROOT / "recipes/ppo_expert_metadrive.yaml").env.id == "metadrive"


def test_train_expert_cli_writes_a_loadable_zip(tmp_path):
    from gatekit.expert_training import load_expert_recipe

    out = tmp_path / "expert"
    res = CliRunner().invoke(main, [
        "train-expert", str(ROOT / "recipes/ppo_expert_cartpole.yaml"), "--out", str(out), "--no-progress",
        "--set", "total_timesteps=256", "--set", "n_envs=2", "--set", "eval_episodes=2",
        "--set", "ppo.n_steps=64", "--set", "ppo.batch_size=64", "--set", "ppo.n_epochs=1",
    ])
    assert res.exit_code == 0, res.stderr + res.output
    assert "test success" in res.output and "steps per s" in res.output
    for name in ("expert.zip", "recipe.yaml", "results.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["timesteps"] == 256 and results["n_envs"] == 2 and results["test"]["success"]["n"] == 2
    assert load_expert_recipe(out / "recipe.yaml").n_envs == 2  # the resolved recipe loads back
    expert = EXPERTS.get("sb3")(env=_cartpole(), path=str(out / "expert.zip"))
    assert expert.algo == "ppo" and expert.act(_observations(_cartpole(), 1)[0]) in (0, 1)
    # the expert is not overwritten by a second run into the same folder
    res = CliRunner().invoke(main, ["train-expert", str(ROOT / "recipes/ppo_expert_cartpole.yaml"), "--out", str(out)])
    assert res.exit_code == 2 and "already holds an expert.zip" in res.stderr


def test_train_expert_same_seed_twice_gives_the_same_weights(tmp_path):
    from gatekit.expert_training import load_expert_recipe, train_expert

    recipe = load_expert_recipe(ROOT / "recipes/ppo_expert_cartpole.yaml", [
        "total_timesteps=128", "n_envs=2", "eval_episodes=0", "ppo.n_steps=32", "ppo.batch_size=32", "ppo.n_epochs=2"])
    weights = []
    for run in ("a", "b"):
        train_expert(recipe, out=tmp_path / run, progress=False)
        model = sb3.PPO.load(tmp_path / run / "expert.zip", device="cpu")
        weights.append(model.policy.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# ---------------------------------------------------------------------------------------------
# safe loading: nothing in a zip is unpickled unless trust_pickle is set


def _rewrite_zip(src, dst, edit_data=None, state=None, drop=()):
    """Copy an SB3 zip, editing its data JSON and/or replacing its policy.pth."""
    import io
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            blob = zin.read(name)
            if name == "data" and edit_data is not None:
                data = json.loads(blob)
                edit_data(data)
                blob = json.dumps(data).encode()
            if name == "policy.pth" and state is not None:
                buf = io.BytesIO()
                torch.save(state, buf)
                blob = buf.getvalue()
            zout.writestr(name, blob)
    return dst


class _TouchOnUnpickle:
    """Unpickling this runs ``Path(marker).touch()``: a harmless stand-in for a code-execution payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _payload(marker):
    import base64
    import pickle

    return {":type:": "<class 'gymnasium.spaces.box.Box'>",
            ":serialized:": base64.b64encode(pickle.dumps(_TouchOnUnpickle(marker))).decode()}


def _logp_sb3(policy, obs, action):
    obs_t, _ = policy.obs_to_tensor(obs)
    with torch.no_grad():
        return float(policy.get_distribution(obs_t).log_prob(torch.as_tensor(np.asarray(action)[None])).reshape(-1)[0])


def test_zip_on_box_env_loads_safely_and_matches_ppo_load(tmp_path):
    env = _pendulum()
    model = sb3.PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu",
                    policy_kwargs={"net_arch": {"pi": [32], "vf": [16, 16]}, "activation_fn": torch.nn.ReLU})
    model.learn(64)
    model.save(tmp_path / "ppo.zip")
    loaded = sb3.PPO.load(tmp_path / "ppo.zip", device="cpu")
    before = torch.get_rng_state()
    expert = EXPERTS.get("sb3")(env=env, path=str(tmp_path / "ppo.zip"))
    assert torch.equal(torch.get_rng_state(), before)  # building the policy leaves torch's global stream alone
    assert expert.algo == "ppo" and expert.has_log_prob
    assert isinstance(expert.policy.activation_fn(), torch.nn.ReLU)
    for obs in _observations(env, 10):
        np.testing.assert_allclose(expert.act(obs), loaded.predict(obs, deterministic=True)[0], atol=1e-6)
        a = env.action_space.sample()
        assert expert.log_prob(obs, a) == pytest.approx(_logp_sb3(loaded.policy, obs, a), abs=1e-5)


def test_log_prob_std_scores_around_the_policy_mean_with_a_fixed_std(tmp_path, ppo_zip):
    env = _pendulum()
    model = sb3.PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [16]})
    model.learn(64)
    model.save(tmp_path / "ppo.zip")
    own = EXPERTS.get("sb3")(env=env, path=str(tmp_path / "ppo.zip"))
    recipe = load_recipe_dict({"name": "t", "env": "pendulum", "criterion": "action-gap", "learner": "mlp-bc",
                               "expert": {"id": "sb3", "path": str(tmp_path / "ppo.zip"), "log_prob_std": [0.3]},
                               "budget": {"total_steps": 10}})
    fixed = build(EXPERTS, recipe.expert, "expert", env=env)
    for obs in _observations(env, 5):
        obs_t, _ = model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            mean = float(model.policy.get_distribution(obs_t).distribution.mean.reshape(-1)[0])
        # one std away from the policy's mean, under the fixed std 0.3 (the policy's own is 1.0)
        want = -0.5 - np.log(0.3) - 0.5 * np.log(2 * np.pi)
        assert fixed.log_prob(obs, [mean + 0.3]) == pytest.approx(want, abs=1e-5)
        assert own.log_prob(obs, [mean + 0.3]) == pytest.approx(_logp_sb3(model.policy, obs, [mean + 0.3]), abs=1e-5)
        assert own.log_prob(obs, [mean + 0.3]) != pytest.approx(want, abs=1e-2)
        np.testing.assert_array_equal(fixed.act(obs), own.act(obs))  # acting is unchanged
    with pytest.raises(ConfigError, match=r"^expert.log_prob_std: expected 1 positive numbers"):
        EXPERTS.get("sb3")(env=env, path=str(tmp_path / "ppo.zip"), log_prob_std=[0.1, 0.2])
    with pytest.raises(ConfigError, match=r"^expert.log_prob_std: expected 1 positive numbers"):
        EXPERTS.get("sb3")(env=env, path=str(tmp_path / "ppo.zip"), log_prob_std=[0.0])
    with pytest.raises(ConfigError, match=r"^expert.log_prob_std: applies to a ppo/a2c policy on Box actions"):
        EXPERTS.get("sb3")(env=_cartpole(), path=str(ppo_zip[0]), log_prob_std=[0.3])


@pytest.mark.parametrize("algo,env_fn,kwargs", [
    ("ppo", _pendulum, {"use_sde": True, "policy_kwargs": {"net_arch": [16]}}),
    ("sac", _pendulum, {"use_sde": True, "buffer_size": 10, "policy_kwargs": {"net_arch": [16, 8]}}),
    ("td3", _pendulum, {"buffer_size": 10, "policy_kwargs": {"net_arch": {"pi": [8], "qf": [16]}, "n_critics": 1}}),
    ("dqn", _cartpole, {"buffer_size": 10, "policy_kwargs": {"net_arch": [8], "activation_fn": torch.nn.ELU}}),
    ("a2c", _cartpole, {"policy_kwargs": {"net_arch": {"pi": [8], "vf": []}}}),
])
def test_non_default_architectures_are_read_from_the_weights(tmp_path, algo, env_fn, kwargs):
    env = env_fn()
    cls = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN, "sac": sb3.SAC, "td3": sb3.TD3}[algo]
    model = cls("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    model.save(tmp_path / "m.zip")
    expert = EXPERTS.get("sb3")(env=env, path=str(tmp_path / "m.zip"))
    assert expert.algo == algo
    for obs in _observations(env, 5):
        np.testing.assert_allclose(np.asarray(expert.act(obs)), np.asarray(model.predict(obs, deterministic=True)[0]), atol=1e-6)
    if algo == "sac":
        obs_t, _ = model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            model.actor.reset_noise()
            scaled, logp = model.actor.action_log_prob(obs_t)
        action = model.policy.unscale_action(scaled.numpy())[0]
        assert expert.log_prob(obs, action) == pytest.approx(float(logp) + np.log(2.0 / 4.0), abs=1e-4)
    elif expert.has_log_prob:
        a = env.action_space.sample()
        assert expert.log_prob(obs, a) == pytest.approx(_logp_sb3(model.policy, obs, a), abs=1e-5)


class _ImageEnv:
    """A channel-last uint8 image env (SB3 trains its CNN on channel-first copies)."""

    @staticmethod
    def make():
        import gymnasium as gym

        class ImageEnv(gym.Env):
            observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
            action_space = gym.spaces.Discrete(3)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                return self.observation_space.sample(), {}

            def step(self, action):
                return self.observation_space.sample(), 0.0, False, False, {}

        return ImageEnv()


def test_cnn_zip_and_pre_1_8_layer_names_load(tmp_path):
    env = _ImageEnv.make()
    model = sb3.PPO("CnnPolicy", env, n_steps=8, batch_size=8, seed=0, device="cpu", policy_kwargs={"features_extractor_kwargs": {"features_dim": 16}})
    model.save(tmp_path / "cnn.zip")
    # SB3 < 1.8 wrote a shared extractor once, as features_extractor.*
    old_state = {k: v for k, v in model.policy.state_dict().items() if not k.startswith(("pi_features", "vf_features"))}
    _rewrite_zip(tmp_path / "cnn.zip", tmp_path / "cnn_old.zip", state=old_state)
    env.observation_space.seed(0)
    observations = [env.observation_space.sample() for _ in range(5)]
    for name in ("cnn.zip", "cnn_old.zip"):
        expert = EXPERTS.get("sb3")(env=env, path=str(tmp_path / name))
        assert expert.policy.features_extractor.features_dim == 16
        for obs in observations:
            assert expert.act(obs) == int(model.predict(obs, deterministic=True)[0])
            assert expert.log_prob(obs, 2) == pytest.approx(_logp_sb3(model.policy, obs, 2), abs=1e-5)


def test_code_in_a_zips_data_never_runs_by_default(ppo_zip, tmp_path):
    path, model = ppo_zip
    marker = tmp_path / "pwned"

    def poison(data):
        for key in ("policy_class", "observation_space", "action_space", "lr_schedule", "clip_range", "policy_kwargs"):
            entry = data.get(key)  # keep the readable text next to the pickle, as an attacker would
            entry = entry if isinstance(entry, dict) and ":type:" in entry else {":type:": "<class 'dict'>"}
            data[key] = {**entry, ":serialized:": _payload(marker)[":serialized:"]}
        data["_extra"] = _payload(marker)

    evil = _rewrite_zip(path, tmp_path / "evil.zip", poison)
    env = _cartpole()
    expert = EXPERTS.get("sb3")(env=env, path=str(evil))
    for obs in _observations(env, 5):
        assert expert.act(obs) == int(model.predict(obs, deterministic=True)[0])
    assert not marker.exists()
    # through the CLI: a dry run and an evaluation of the expert
    raw = yaml_recipe(tmp_path, {"id": "sb3", "path": str(evil)})
    res = CliRunner().invoke(main, ["train", str(raw), "--dry-run", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.stderr + res.output
    res = CliRunner().invoke(main, ["eval", str(raw), "--expert", "--episodes", "1"])
    assert res.exit_code == 0, res.stderr + res.output
    assert not marker.exists()


def yaml_recipe(tmp_path, expert):
    import yaml

    raw = yaml.safe_load((ROOT / "recipes/hg_cartpole.yaml").read_text())
    raw["expert"] = expert
    raw["learner"] = {"id": "mlp-bc"}  # the expert is the point; imitation's BC is not installed everywhere
    raw["eval"] = {**raw.get("eval", {}), "expert_reference": False, "in_worker": False}
    out = tmp_path / "recipe.yaml"
    out.write_text(yaml.safe_dump(raw))
    return out


def test_trust_pickle_means_sb3_load_which_runs_the_files_code(ppo_zip, tmp_path):
    path, model = ppo_zip
    marker = tmp_path / "ran"
    evil = _rewrite_zip(path, tmp_path / "evil.zip", lambda data: data.__setitem__("_extra", _payload(marker)))
    env = _cartpole()
    EXPERTS.get("sb3")(env=env, path=str(evil))
    assert not marker.exists()
    expert = build(EXPERTS, Component(id="sb3", kwargs={"path": str(evil), "trust_pickle": True}), "expert", env=env)
    assert marker.exists()  # the opt-in is what it says: SB3's load unpickled the file's data
    obs = _observations(env, 1)[0]
    assert expert.act(obs) == int(model.predict(obs, deterministic=True)[0])


# ---------------------------------------------------------------------------------------------
# zips of SB3 1.x forks


def _fork_zip(tmp_path, policy, *, spaces=True, name="fork.zip"):
    """A zip as an SB3 1.x fork writes it: policy class in the fork's own module, gym 0.19 spaces."""
    import base64
    import zipfile

    def pickled(module, qualname):  # a pickle of a class by reference (GLOBAL); never loaded here
        return base64.b64encode(b"\x80\x02c" + f"{module}\n{qualname}\n".encode() + b"q\x00.").decode()

    data = {
        "policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": pickled("pvp.sb3.common.policies", "ActorCriticPolicy"),
                         "__module__": "pvp.sb3.common.policies",
                         "__init__": "<function ActorCriticPolicy.__init__ at 0x7f3b2c1d0ee0>"},
        "verbose": 1, "policy_kwargs": {"net_arch": [{"pi": [64, 64], "vf": [64, 64]}]}, "num_timesteps": 9_600_000,
        "_total_timesteps": 10_000_000, "seed": 0, "learning_rate": 5e-05, "use_sde": False,
        "lr_schedule": {":type:": "<class 'function'>", ":serialized:": pickled("pvp.sb3.common.utils", "constant_fn")},
        "clip_range": {":type:": "<class 'function'>", ":serialized:": pickled("pvp.sb3.common.utils", "constant_fn")},
        "n_envs": 32, "n_steps": 1024, "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.0, "vf_coef": 0.5,
        "max_grad_norm": 10.0, "batch_size": 256, "n_epochs": 20,
    }
    if spaces:
        obs, act = policy.observation_space, policy.action_space
        data["observation_space"] = {
            ":type:": "<class 'gym.spaces.box.Box'>", ":serialized:": pickled("gym.spaces.box", "Box"),
            "dtype": "float32", "shape": list(obs.shape), "low": str(obs.low), "high": str(obs.high),
            "bounded_below": str(obs.bounded_below), "bounded_above": str(obs.bounded_above), "np_random": "RandomState(MT19937)"}
        data["action_space"] = {
            ":type:": "<class 'gym.spaces.box.Box'>", ":serialized:": pickled("gym.spaces.box", "Box"),
            "dtype": "float32", "shape": list(act.shape), "low": str(act.low), "high": str(act.high),
            "bounded_below": str(act.bounded_below), "bounded_above": str(act.bounded_above), "np_random": "RandomState(MT19937)"}
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data", json.dumps(data, indent=4))
        with zf.open("policy.pth", "w") as f:
            torch.save(policy.state_dict(), f)
        zf.writestr("_stable_baselines3_version", "1.3.1a6")
    return path


def _metadrive_like_policy(env):
    """A PPO policy shaped like the PVP release's MetaDrive expert: pi / vf 64-64 tanh, state-independent std."""
    policy = sb3.PPO("MlpPolicy", env, device="cpu", seed=0).policy
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-1.9915, -0.7803]))
    return policy


def _box_env():
    from gatekit.envs.toy import EchoEnv

    return EchoEnv(dim=2)  # Box actions in [-1, 1]^2, observations (2,)


def test_sb3_1x_fork_zip_loads_with_algo_set(tmp_path):
    env = _box_env()
    policy = _metadrive_like_policy(env)
    path = _fork_zip(tmp_path, policy)
    with pytest.raises(ConfigError) as exc:
        EXPERTS.get("sb3")(env=env, path=str(path))
    msg = str(exc.value)
    assert "\n" not in msg and "pvp.sb3.common.policies" in msg and "set expert.algo" in msg
    assert "ppo or a2c policy" in msg and "'sb3-policy'" in msg
    expert = build(EXPERTS, Component(id="sb3", kwargs={"path": str(path), "algo": "ppo", "deterministic": False}), "expert", env=env)
    assert expert.algo == "ppo" and expert.has_log_prob
    np.testing.assert_allclose(expert.policy.log_std.detach().numpy(), [-1.9915, -0.7803], rtol=1e-6)
    expert.deterministic = True
    for obs in _observations(env, 5):
        np.testing.assert_allclose(expert.act(obs), policy.predict(obs, deterministic=True)[0], atol=1e-6)
        a = env.action_space.sample()
        assert expert.log_prob(obs, a) == pytest.approx(_logp_sb3(policy, obs, a), abs=1e-5)
    # its module does not exist here: SB3's own load cannot read it, and says so in one line
    with pytest.raises(ConfigError) as exc:
        EXPERTS.get("sb3")(env=env, path=str(path), algo="ppo", trust_pickle=True)
    assert "\n" not in str(exc.value) and "ModuleNotFoundError" in str(exc.value) and "'sb3-policy'" in str(exc.value)
    with pytest.raises(ConfigError, match="are those of a ppo or a2c policy"):
        EXPERTS.get("sb3")(env=env, path=str(path), algo="sac")


def test_spaces_are_checked_against_the_recorded_spaces_and_the_tensors(tmp_path):
    import gymnasium as gym

    env = _box_env()
    policy = _metadrive_like_policy(env)
    recorded = _fork_zip(tmp_path, policy)
    bare = _fork_zip(tmp_path, policy, spaces=False, name="bare.zip")
    from gatekit.envs.toy import EchoEnv

    class PadObs(gym.ObservationWrapper):  # one more observation feature, the same actions
        def __init__(self, env):
            super().__init__(env)
            self.observation_space = gym.spaces.Box(-2.0, 2.0, (3,), np.float32)

        def observation(self, obs):
            return np.append(obs, 0.0).astype(np.float32)

    wider = PadObs(_box_env())
    with pytest.raises(SpaceMismatchError, match=r"trained on observation space Box \(2,\), but the env's is Box\(.*\(3,\)"):
        EXPERTS.get("sb3")(env=wider, path=str(recorded), algo="ppo")
    with pytest.raises(SpaceMismatchError) as exc:
        EXPERTS.get("sb3")(env=wider, path=str(bare), algo="ppo")
    msg = str(exc.value)
    assert "\n" not in msg and "mlp_extractor.policy_net.0.weight" in msg and "(64, 2)" in msg and "(64, 3)" in msg
    rescaled = gym.wrappers.RescaleAction(_box_env(), -0.5, 0.5)  # same shapes, other action bounds
    with pytest.raises(SpaceMismatchError, match=r"trained on actions with low \[-1.0, -1.0\]"):
        EXPERTS.get("sb3")(env=rescaled, path=str(recorded), algo="ppo")
    with pytest.raises(SpaceMismatchError, match="trained on action space Box"):
        EXPERTS.get("sb3")(env=EchoEnv(n_actions=2), path=str(recorded), algo="ppo")


def test_sb3_policy_reads_the_architecture_from_the_weights(tmp_path):
    env = _pendulum()
    model = sb3.SAC("MlpPolicy", env, buffer_size=10, seed=0, device="cpu", policy_kwargs={"net_arch": [24, 12]})
    torch.save(model.policy.state_dict(), tmp_path / "policy.pth")
    expert = EXPERTS.get("sb3-policy")(env=env, path=str(tmp_path / "policy.pth"), algo="sac")
    for obs in _observations(env, 5):
        np.testing.assert_allclose(expert.act(obs), model.predict(obs, deterministic=True)[0], atol=1e-6)
    with pytest.raises(ConfigError, match="are those of a sac policy; set expert.algo to sac"):
        EXPERTS.get("sb3-policy")(env=env, path=str(tmp_path / "policy.pth"))
