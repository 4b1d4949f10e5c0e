"""Learners by registry name. ``imitation`` and SB3 are imported only when one is built."""

from gatekit.learners.base import EveryKLabels, Learner
from gatekit.registry import Registry

LEARNERS = Registry("learner")
LEARNERS.register("bc", "gatekit.learners.imitation:ImitationBCLearner", "imitation's BC, retrained on all expert-labelled steps every K new ones")
LEARNERS.register("mlp-bc", "gatekit.learners.bc:MLPBCLearner", "gatekit's own MLP behaviour cloning (deterministic actor, MSE / cross-entropy)")
LEARNERS.register("aim", "gatekit.learners.aim:aim_learner", "AIM's novice: mlp-bc with the release's defaults (BC actor retrained every K expert labels)")
LEARNERS.register("aim-dqn", "gatekit.learners.aim_dqn:AIMDQNLearner", "AIM's released MiniGrid novice: a reward-free PVP-style DQN (Discrete)")
LEARNERS.register("dagger", "gatekit.learners.imitation:ImitationDAggerLearner", "imitation's DAgger trainer with gatekit's gate in place of its beta coin")
LEARNERS.register("pvp", "gatekit.learners.sb3.pvp:PVPLearner", "PVP on stock SB3 (TD3 / DQN): reward-free TD with +1/-1 proxy values")
LEARNERS.register("sb3-offpolicy", "gatekit.learners.sb3.offpolicy:SB3OffPolicyLearner", "any SB3 off-policy algorithm trained on executed actions")
LEARNERS.register("sb3-ppo", "gatekit.learners.sb3.ppo:SB3PPOLearner", "SB3 PPO trained on the env reward (to make a neural expert)")

__all__ = ["LEARNERS", "EveryKLabels", "Learner"]
