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
                               "criterion": "action-gap", "learner": "bc", "budget": {"total_steps": 10}})
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
    # net_arch None is SB3's default for PPO ([64, 64]): the same weights load
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
    with pytest.raises(ConfigError, match="has no layer"):
        EXPERTS.get("sb3-policy")(env=env, path=str(pth), algo="dqn")
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
