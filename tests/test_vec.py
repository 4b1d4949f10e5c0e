"""The vectorised twin decides exactly as the single-env wrapper does."""

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from gatekit.criteria.simple import ActionGapCriterion
from gatekit.envs.toy import EchoEnv
from gatekit.experts.classic import EchoExpert
from gatekit.wrappers import InterventionVecWrapper, InterventionWrapper


class Batched(ActionGapCriterion):
    batches: list = []

    def decide_batch(self, ctxs):
        type(self).batches.append(len(ctxs))
        return super().decide_batch(ctxs)


def _actions(n, steps, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (steps, n, 1)).astype(np.float32)


def test_vec_twin_agrees_with_single_env_wrappers():
    n, steps, horizon = 3, 25, 10
    acts = _actions(n, steps, 5)
    venv = DummyVecEnv([lambda: EchoEnv(horizon=horizon) for _ in range(n)])
    stores = [[] for _ in range(n)]
    Batched.batches = []
    vw = InterventionVecWrapper(venv, experts=[EchoExpert(env=e, action=[0.2]) for e in venv.envs],
                                criterion=Batched(threshold=0.1), stores=stores)
    vw.seed(100)
    vobs = [vw.reset()]
    vinfos = []
    for t in range(steps):
        o, r, d, infos = vw.step(acts[t])
        vobs.append(o)
        vinfos.append(infos)
    assert Batched.batches == [n] * steps  # one batched decision per step

    for i in range(n):
        env = EchoEnv(horizon=horizon)
        w = InterventionWrapper(env, expert=EchoExpert(env=env, action=[0.2]), criterion=ActionGapCriterion(threshold=0.1))
        obs, _ = w.reset(seed=100 + i)  # DummyVecEnv seeds env i with seed + i
        np.testing.assert_array_equal(obs, vobs[0][i])
        for t in range(steps):
            obs, r, term, trunc, info = w.step(acts[t][i])
            g, vg = info["gatekit"], vinfos[t][i]["gatekit"]
            for key in ("intervened", "switched", "handed_back", "expert_queried", "episode_step"):
                assert g[key] == vg[key], (i, t, key)
            np.testing.assert_array_equal(g["executed_action"], vg["executed_action"])
            if term or trunc:
                assert g["episode"] == vg["episode"]
                np.testing.assert_array_equal(stores[i][t].next_obs, obs)
                obs, _ = w.reset()
            else:
                np.testing.assert_array_equal(obs, vobs[t + 1][i])
        assert [s.intervened for s in stores[i]] == [bool(v[i]["gatekit"]["intervened"]) for v in vinfos]
        assert {s.env for s in stores[i]} == {i}  # records carry their env index
    assert vw.totals.steps == n * steps
