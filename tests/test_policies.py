import gymnasium as gym
import numpy as np
import pytest
import torch

from gatekit.errors import SpaceMismatchError
from gatekit.policies import CallablePolicy, SB3Policy, TorchModulePolicy, as_policy

BOX_OBS = gym.spaces.Box(-1, 1, (3,), np.float32)
BOX_ACT = gym.spaces.Box(-1, 1, (2,), np.float32)
DISC = gym.spaces.Discrete(4)


def test_callable_is_cast_to_the_space():
    p = as_policy(lambda o: [0.5, -0.5], BOX_OBS, BOX_ACT)
    assert isinstance(p, CallablePolicy)
    a = p(np.zeros(3, np.float32))
    assert a.dtype == np.float32 and a.shape == (2,)
    d = as_policy(lambda o: np.array([2]), BOX_OBS, DISC)
    assert d(np.zeros(3)) == 2 and isinstance(d(np.zeros(3)), int)


def test_wrong_action_shape_names_both_shapes():
    p = as_policy(lambda o: [1.0, 2.0, 3.0], BOX_OBS, BOX_ACT)
    with pytest.raises(SpaceMismatchError, match=r"expected an action of shape \(2,\).*got shape \(3,\)"):
        p(np.zeros(3))


def test_torch_module_box_and_discrete():
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    p = as_policy(m, BOX_OBS, BOX_ACT)
    assert isinstance(p, TorchModulePolicy) and p(np.zeros(3)).shape == (2,)
    logits = torch.nn.Linear(3, 4)
    with torch.no_grad():
        logits.weight.zero_()
        logits.bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))
    assert as_policy(logits, BOX_OBS, DISC)(np.zeros(3)) == 2


def test_sb3_model_and_imitation_policy():
    from stable_baselines3 import PPO

    env = gym.make("CartPole-v1")
    model = PPO("MlpPolicy", env, n_steps=64, seed=0, device="cpu")
    p = as_policy(model, env.observation_space, env.action_space)
    assert isinstance(p, SB3Policy) and p(env.reset(seed=0)[0]) in (0, 1)
    p2 = as_policy(model.policy, env.observation_space, env.action_space)  # imitation's policies are SB3 policies
    assert p2(env.reset(seed=0)[0]) in (0, 1)
    with pytest.raises(SpaceMismatchError, match="action space Discrete\\(2\\) does not match the env's Discrete\\(4\\)"):
        as_policy(model, env.observation_space, DISC)


def test_unusable_object_is_a_type_error():
    with pytest.raises(TypeError, match="cannot use int as a policy"):
        as_policy(3, BOX_OBS, BOX_ACT)
