"""imitation's DAgger as a gatekit learner: its ``DAggerTrainer`` rounds and BC, gatekit's gate.

``imitation.algorithms.dagger.DAggerTrainer`` alternates *rounds*: collect demonstrations with
its ``InteractiveTrajectoryCollector`` (which flips a beta coin per step between the expert's and
the policy's action and saves the expert's labels as ``.npz`` files), then ``extend_and_update``
loads every round's labels and fine-tunes its ``BC`` trainer (warm start). Here gatekit's loop
does the collecting, so two things change and nothing else:

* **Who acts** is the gate's decision, not imitation's coin. The ``dagger`` criterion
  (:class:`~gatekit.criteria.dagger.DAggerCriterion`) supplies the beta mixing, with imitation's
  linear/exponential schedules, and advances its round on each update, in step with this
  learner's rounds; any other gate (e.g. ``ensemble``) works too.
* **Where labels come from**: :class:`StoreDAggerTrainer` is a ``DAggerTrainer`` whose demos of
  a round are read from gatekit's record store (every expert-labelled step so far, as imitation
  Transitions) instead of the collector's files on disk. Its ``extend_and_update`` (BC training
  and the round counter) is imitation's own.

A round ends every ``update_every`` new expert-labelled steps (DAgger labels every step it
visits with ``labels: queried``). A round with fewer labels than one BC batch is skipped until
enough arrive (imitation would raise); keep ``budget.warmup_steps`` at least ``batch_size`` so
that the update at the end of the warm-up trains and the gate's rounds stay in step.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

from gatekit.learners.base import EveryKLabels, Learner
from gatekit.policies import Policy, SB3Policy

if TYPE_CHECKING:
    from gatekit.data import RecordStore


class _SpacesEnv(gym.Env):
    """An env with spaces and nothing else: ``DAggerTrainer`` wants a VecEnv for its space
    checks and its collector, and gatekit never lets it step one."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        raise RuntimeError("gatekit steps the env itself; DAggerTrainer's collector is not used")

    def step(self, action: Any) -> Any:
        raise RuntimeError("gatekit steps the env itself; DAggerTrainer's collector is not used")


def _store_trainer_class() -> type:
    from imitation.algorithms.dagger import DAggerTrainer, NeedsDemosException

    class StoreDAggerTrainer(DAggerTrainer):
        """``DAggerTrainer`` whose demonstrations come from gatekit's record store.

        :meth:`feed` hands it all expert-labelled steps so far (imitation Transitions); its
        ``_try_load_demos`` (called by ``extend_and_update``) gives them to the BC trainer in
        place of reading the round's ``.npz`` files.
        """

        _fed: Any = None

        def feed(self, transitions: Any) -> None:
            self._fed = transitions

        def _try_load_demos(self) -> None:
            if self._fed is None or len(self._fed) == 0:
                raise NeedsDemosException(f"no expert-labelled steps for round {self.round_num}")
            self.bc_trainer.set_demonstrations(self._fed)
            self._last_loaded_round = self.round_num
            self._fed = None

    return StoreDAggerTrainer


class ImitationDAggerLearner(Learner):
    """imitation's ``DAggerTrainer`` (BC on all labels so far, per round) fed by gatekit's gate.

    Args:
        observation_space: the env's observation space.
        action_space: the env's action space.
        seed: seeds imitation's RNG (minibatch order).
        update_every: a round ends after this many new expert-labelled steps.
        epochs_per_update: BC epochs over all labels each round (imitation's default: 4);
            ignored when ``batches_per_update`` is set.
        batches_per_update: BC minibatches each round instead of epochs (None: use epochs).
        batch_size: BC minibatch size.
        lr: Adam learning rate.
        net_arch: hidden layers of the SB3 ``ActorCriticPolicy`` (default ``[64, 64]``).
        ent_weight: imitation's entropy bonus weight.
        l2_weight: imitation's L2 weight.
        labels: ``queried`` (DAgger: every visited state is labelled) or ``intervened``.

    Example:
        >>> import gymnasium as gym
        >>> learner = ImitationDAggerLearner(observation_space=gym.spaces.Box(-1, 1, (3,)),
        ...                                  action_space=gym.spaces.Discrete(2), net_arch=[8])
        >>> learner.trainer.round_num, learner.act(gym.spaces.Box(-1, 1, (3,)).sample()) in (0, 1)
        (0, True)
    """

    name = "dagger"

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0,
                 update_every: int = 200, epochs_per_update: int = 4, batches_per_update: int | None = None,
                 batch_size: int = 64, lr: float = 1e-3, net_arch: list[int] | None = None,
                 ent_weight: float = 1e-3, l2_weight: float = 0.0,
                 labels: Literal["queried", "intervened"] = "queried") -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        from imitation.algorithms import bc
        from imitation.util import logger as imit_logger
        from stable_baselines3.common.policies import ActorCriticPolicy
        from stable_baselines3.common.vec_env import DummyVecEnv

        if epochs_per_update < 1:
            raise ValueError(f"epochs_per_update must be >= 1, got {epochs_per_update}")
        if batches_per_update is not None and batches_per_update < 1:
            raise ValueError(f"batches_per_update must be >= 1 or null, got {batches_per_update}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if labels not in ("queried", "intervened"):
            raise ValueError(f"labels must be 'queried' or 'intervened', got {labels!r}")
        self.schedule = EveryKLabels(k=update_every)
        self.labels = labels
        self.train_kwargs: dict[str, Any] = (
            {"n_batches": int(batches_per_update)} if batches_per_update is not None else {"n_epochs": int(epochs_per_update)}
        )
        arch = list(net_arch) if net_arch is not None else [64, 64]
        policy = ActorCriticPolicy(observation_space, action_space, lr_schedule=lambda _: lr, net_arch=arch)
        rng = np.random.default_rng(seed)
        # imitation logs to stdout by default; gatekit reports the round's figures itself
        quiet = imit_logger.configure(folder=Path(tempfile.gettempdir()) / "gatekit-dagger-log", format_strs=[])
        bc_trainer = bc.BC(observation_space=observation_space, action_space=action_space, rng=rng, policy=policy,
                           batch_size=batch_size, optimizer_kwargs={"lr": lr}, ent_weight=ent_weight,
                           l2_weight=l2_weight, device="cpu", custom_logger=quiet)
        venv = DummyVecEnv([lambda: _SpacesEnv(observation_space, action_space)])
        # The scratch dir is where imitation's collector and save_trainer would write; neither is
        # used (labels come from the record store), so nothing is written there.
        scratch = Path(tempfile.gettempdir()) / "gatekit-dagger-unused"
        self.trainer = _store_trainer_class()(venv=venv, scratch_dir=scratch, rng=rng, bc_trainer=bc_trainer,
                                                custom_logger=quiet)
        self._act = SB3Policy(self.trainer.policy, observation_space, action_space, deterministic=True)

    def _mask(self, store: RecordStore) -> np.ndarray:
        return np.asarray(store.column("intervened" if self.labels == "intervened" else "expert_queried"), dtype=bool)

    def act(self, obs: Any) -> Any:
        return self._act(obs)

    def policy(self) -> Policy:
        from gatekit.learners.sb3 import clone_policy

        return SB3Policy(clone_policy(self.trainer.policy), self.observation_space, self.action_space)

    def wants_update(self, store: RecordStore) -> bool:
        n = int(self._mask(store).sum())
        # imitation cannot train on less than one batch: wait for it rather than end empty rounds
        return n >= self.trainer.batch_size and self.schedule.due(n)

    def update(self, store: RecordStore) -> dict[str, float]:
        from gatekit.data import to_transitions

        mask = self._mask(store)
        n = int(mask.sum())
        if n < self.trainer.batch_size:
            return {"dagger/labels": float(n)}  # not one batch yet: retry at the next label
        self.schedule.mark(n)
        self.trainer.feed(to_transitions(store, mask, actions="expert"))
        with warnings.catch_warnings():
            # imitation 1.0.1 logs a grad-carrying tensor with float(); harmless, and not ours to fix
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
            rounds = self.trainer.extend_and_update({**self.train_kwargs, "log_rollouts_venv": None,
                                                      "log_interval": 10**9, "progress_bar": False})
        self.updates += 1
        return {"dagger/labels": float(n), "dagger/round": float(rounds)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "policy": self.trainer.policy.state_dict(),
                "optimizer": self.trainer.bc_trainer.optimizer.state_dict(), "round": self.trainer.round_num,
                "schedule_last": self.schedule.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.trainer.policy.load_state_dict(state["policy"])
        self.trainer.bc_trainer.optimizer.load_state_dict(state["optimizer"])
        self.trainer.round_num = int(state.get("round", 0))
        self.trainer._last_loaded_round = self.trainer.round_num - 1
        self.schedule.last = int(state.get("schedule_last", 0))
