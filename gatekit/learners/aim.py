"""AIM's novice (Cai, Peng, Zhou, ICML 2025), as in the authors' public release.

``aim`` is behaviour cloning on the expert-labelled (intervened) steps only, retrained every
K = 25 new ones with warm start: 25 iterations x 5 Adam steps, batch 1024, lr 1e-4, each
iteration on a bootstrap resample; 200 iterations at the end of the warm-up. Box actions use a
deterministic MLP actor [256, 256], ReLU, ``tanh`` output (MSE); Discrete ones the same network
with logits (cross-entropy), over the MiniGrid CNN for image observations. That is
:class:`~gatekit.learners.bc.MLPBCLearner` (``mlp-bc``) with these defaults, so :func:`aim_learner`
builds one.

The release's MiniGrid novice, a reward-free PVP-style DQN, is its own learner, ``aim-dqn``
(:mod:`gatekit.learners.aim_dqn`). ``aim`` with ``novice: dqn`` still builds it (with
``dqn_``-prefixed arguments, as in gatekit 0.1) and warns that this spelling is deprecated.
"""

from __future__ import annotations

import warnings
from typing import Literal

import gymnasium as gym

from gatekit.learners.aim_dqn import AIMDQNLearner
from gatekit.learners.base import Learner
from gatekit.learners.bc import MLPBCLearner
from gatekit.validate import one_of


def aim_learner(*, observation_space: gym.Space, action_space: gym.Space, seed: int = 0,
                novice: Literal["bc", "dqn"] = "bc", hidden: list[int] | None = None, update_every: int = 25,
                iterations: int = 25, first_iterations: int = 200, steps_per_iteration: int = 5,
                batch_size: int = 1024, lr: float = 1e-4, bootstrap: bool = True,
                dqn_hidden: list[int] | None = None, dqn_batch_size: int = 200, dqn_lr: float = 1e-4,
                gamma: float = 0.99, tau: float = 0.005, dqn_steps_per_env_step: int = 32,
                dqn_first_steps: int = 0, dqn_update_steps: int = 0) -> Learner:
    """AIM's novice: a BC actor with the release's schedule (see the module docstring).

    Args:
        observation_space: the env's observation space (vector, or a ``(C, H, W)`` image stack).
        action_space: Box or Discrete.
        seed: seeds initial weights, resamples and minibatches.
        novice: ``bc`` (behaviour cloning, the paper); ``dqn`` is deprecated: use the
            ``aim-dqn`` learner.
        hidden: hidden layers of the BC actor (default ``[256, 256]``).
        update_every: K, new expert-labelled steps between updates.
        iterations: bootstrap iterations of each BC retraining.
        first_iterations: BC iterations at the end of the warm-up.
        steps_per_iteration: Adam steps per BC iteration.
        batch_size: BC minibatch size.
        lr: BC learning rate.
        bootstrap: resample the BC data each iteration.
        dqn_hidden: deprecated spelling of ``aim-dqn``'s ``hidden``.
        dqn_batch_size: deprecated spelling of ``aim-dqn``'s ``batch_size``.
        dqn_lr: deprecated spelling of ``aim-dqn``'s ``lr``.
        gamma: ``aim-dqn``'s discount (``novice: dqn`` only).
        tau: ``aim-dqn``'s target soft-update factor (``novice: dqn`` only).
        dqn_steps_per_env_step: deprecated spelling of ``aim-dqn``'s ``steps_per_env_step``.
        dqn_first_steps: deprecated spelling of ``aim-dqn``'s ``first_steps``.
        dqn_update_steps: deprecated spelling of ``aim-dqn``'s ``update_steps``.

    Example:
        >>> learner = aim_learner(observation_space=gym.spaces.Box(-1, 1, (3,)),
        ...                       action_space=gym.spaces.Box(-1, 1, (2,)))
        >>> type(learner).__name__, learner.hidden, learner.schedule.k
        ('MLPBCLearner', [256, 256], 25)
    """
    if one_of("novice", novice, ("bc", "dqn")) == "dqn":
        warnings.warn("learner 'aim' with novice: dqn is deprecated; use learner id 'aim-dqn' (its arguments "
                      "drop the dqn_ prefix)", DeprecationWarning, stacklevel=2)
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"novice 'dqn' needs a Discrete action space, got {action_space}; use novice: bc")
        return AIMDQNLearner(observation_space=observation_space, action_space=action_space, seed=seed,
                             hidden=dqn_hidden, batch_size=dqn_batch_size, lr=dqn_lr, gamma=gamma, tau=tau,
                             steps_per_env_step=dqn_steps_per_env_step, first_steps=dqn_first_steps,
                             update_steps=dqn_update_steps, update_every=update_every)
    return MLPBCLearner(observation_space=observation_space, action_space=action_space, seed=seed, hidden=hidden,
                        update_every=update_every, iterations=iterations, first_iterations=first_iterations,
                        steps_per_iteration=steps_per_iteration, batch_size=batch_size, lr=lr, bootstrap=bootstrap,
                        labels="intervened")
