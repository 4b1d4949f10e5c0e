"""The PVP learner against PVP's public release: the critic loss, the take-over-start TD mask,
the balanced-batch rule and the random start actions (tiny spaces, no env, seconds)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from gatekit.learners.sb3.pvp import PVPLearner, PVPSamples
from gatekit.types import Transition

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def box_learner(**kwargs):
    return PVPLearner(observation_space=OBS, action_space=BOX, net_arch=[8], seed=0, **kwargs)


def record(i, *, intervened, switched=False, novice=(-0.5, 0.5), executed=(0.5, 0.5)):
    rng = np.random.default_rng(i)
    o = rng.uniform(-1, 1, 3).astype(np.float32)
    return Transition(step=i, episode=0, obs=o, novice_action=np.array(novice, np.float32),
                      expert_action=np.array(executed, np.float32) if intervened else None,
                      executed_action=np.array(executed if intervened else novice, np.float32),
                      intervened=intervened, expert_queried=intervened, switched=switched, reward=0.0,
                      next_obs=-o, terminated=False, truncated=False)


def fill(learner, n_expert, n_novice):
    """Put steps straight into the buffers (no training: observe would train)."""
    for i in range(n_expert):
        r = record(i, intervened=True, switched=i == 0)
        learner._add(obs=r.obs, next_obs=r.next_obs, executed=r.executed_action, novice=r.novice_action, reward=0.0,
                     terminated=False, intervened=True, switched=r.switched)
    for i in range(n_novice):
        r = record(1000 + i, intervened=False)
        learner._add(obs=r.obs, next_obs=r.next_obs, executed=r.executed_action, novice=r.novice_action, reward=0.0,
                     terminated=False, intervened=False)


def batch(n, *, interventions, starts):
    g = torch.Generator().manual_seed(0)
    return PVPSamples(observations=torch.rand(n, 3, generator=g), actions=torch.rand(n, 2, generator=g) * 2 - 1,
                      next_observations=torch.rand(n, 3, generator=g), dones=torch.zeros(n, 1),
                      rewards=torch.zeros(n, 1), novice_actions=torch.rand(n, 2, generator=g) * 2 - 1,
                      interventions=torch.as_tensor(interventions, dtype=torch.float32).reshape(-1, 1),
                      starts=torch.as_tensor(starts, dtype=torch.float32).reshape(-1, 1))


def test_release_proxy_loss_is_the_batch_mean_scaled_by_the_intervention_fraction():
    model = box_learner().model
    data = batch(4, interventions=[1, 0, 0, 0], starts=[0, 0, 0, 0])
    qb, qn, y = torch.tensor([[0.2], [0.4], [-0.1], [0.0]]), torch.tensor([[0.3], [0.4], [-0.1], [0.5]]), torch.zeros(4, 1)
    stop = torch.ones(4, 1)
    got = model._critic_loss(qb, qn, y, stop, data)
    # the release: every sample is pulled to +1 at its executed action and to -1 at its novice
    # action, weighted by the fraction of intervened samples in the batch (here 1/4)
    want = 0.5 * F.mse_loss(qb, y) + 0.25 * (((qb - 1) ** 2).mean() + ((qn + 1) ** 2).mean())
    assert torch.isclose(got, want)
    # the paper's per-sample form: only the intervened sample (whose actions differ) gets proxy values
    model.proxy_loss = "per-sample"
    per_sample = 0.5 * F.mse_loss(qb, y) + 0.5 * ((qb[0] - 1) ** 2 + (qn[0] + 1) ** 2).sum() / 4
    assert torch.isclose(model._critic_loss(qb, qn, y, stop, data), per_sample)


def test_stop_td_masks_the_td_term_on_takeover_starts_only():
    learner = box_learner()
    fill(learner, 20, 0)
    model = learner.model
    data = batch(4, interventions=[1, 1, 0, 0], starts=[1, 0, 0, 0])
    qb, qn, y = torch.full((4, 1), 0.5), torch.full((4, 1), -0.2), torch.tensor([[0.9], [0.1], [0.1], [0.1]])
    proxy = 0.5 * (((qb - 1) ** 2).mean() + ((qn + 1) ** 2).mean())
    stop = 1 - data.starts
    got = model._critic_loss(qb, qn, y, stop, data)
    want = 0.5 * (0 + 3 * 0.4 ** 2) / 4 + proxy  # the start's TD error (0.4) is masked, yet counted in the mean
    assert torch.isclose(got, want)
    # the buffers carry the start flag from the records (the step control switched to the expert)
    starts = model.human_buffer.starts[:model.human_buffer.size_(), 0]
    assert starts[0] == 1.0 and starts[1:].sum() == 0.0


def test_release_sampling_waits_for_full_batches_then_balances():
    learner = box_learner(batch_size=8)  # the full batch is 16: 8 + 8
    model = learner.model
    fill(learner, 16, 40)  # the expert buffer holds exactly a full batch: not more than it
    data = model.balanced_batch(8)
    assert data is not None and data.interventions.sum() == 0 and len(data.interventions) == 16  # novice only
    fill(learner, 1, 0)  # now both hold more than 16
    data = model.balanced_batch(8)
    assert data is not None and len(data.interventions) == 16 and data.interventions.sum() == 8  # 8 + 8
    empty = box_learner(batch_size=8)
    fill(empty, 16, 16)
    assert empty.model.balanced_batch(8) is None  # neither holds more than a full batch: no training
    anyrule = box_learner(batch_size=8, sampling="any")
    fill(anyrule, 1, 0)
    data = anyrule.model.balanced_batch(8)
    assert data is not None and len(data.interventions) == 8  # the one expert step, eight times


def test_learning_starts_acts_uniformly_at_random_then_greedily():
    learner = box_learner(learning_starts=50)
    obs = np.zeros(3, np.float32)
    first = np.array([learner.act(obs) for _ in range(50)])
    assert first.std(axis=0).min() > 0.3 and np.abs(first).max() <= 1.0  # uniform over [-1, 1]^2
    for i in range(50):
        learner.observe(record(i, intervened=False), None)  # type: ignore[arg-type]  # no training yet
    assert learner.model._n_updates == 0
    greedy = [learner.act(obs) for _ in range(3)]
    assert all(np.array_equal(greedy[0], g) for g in greedy)  # the deterministic actor from here on
    same = box_learner(learning_starts=50)
    assert np.array_equal(np.array([same.act(obs) for _ in range(50)]), first)  # seeded


def test_bad_pvp_options_raise_one_line_errors():
    for kwargs, field in (({"proxy_loss": "mean"}, "proxy_loss"), ({"sampling": "all"}, "sampling"),
                          ({"stop_td": "yes"}, "stop_td")):
        with pytest.raises(ValueError, match=f"^{field} must"):
            box_learner(**kwargs)


def test_taking_a_policy_for_evaluation_leaves_training_unchanged():
    # the run loop clones the novice for every evaluation; the clone's weight initialisation
    # drew from torch's global RNG, which TD3's target noise also uses, so the evaluation
    # schedule changed the training run
    def run(clone_midway):
        torch.manual_seed(0)
        learner = box_learner(batch_size=4)
        fill(learner, 20, 20)
        learner.model.train(gradient_steps=3, batch_size=4)
        if clone_midway:
            learner.policy()
        learner.model.train(gradient_steps=3, batch_size=4)
        return [p.detach().clone() for p in learner.model.critic.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(False), run(True), strict=True))
