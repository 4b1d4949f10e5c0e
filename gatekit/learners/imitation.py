"""``imitation``'s behaviour cloning and DAgger as gatekit learners.

Both adapters train imitation's ``BC`` on every expert-labelled step so far, warm-starting from
the current policy (an SB3 ``ActorCriticPolicy``); they share how that trainer is built, how its
labels are read from gatekit's record store and the rule that imitation needs one full batch
of demonstrations before it can train (:class:`_ImitationBC`).

* :class:`ImitationBCLearner` (``bc``): every ``update_every`` new expert labels, BC trains
  ``batches_per_update`` minibatches (HG-DAgger's learner; with ``budget.warmup_steps`` only,
  plain BC).
* :class:`ImitationDAggerLearner` (``dagger``): imitation's ``DAggerTrainer`` rounds.
  ``DAggerTrainer`` alternates *rounds*: collect demonstrations with its
  ``InteractiveTrajectoryCollector`` (which flips a beta coin per step between the expert's and
  the policy's action and saves the expert's labels as ``.npz`` files), then
  ``extend_and_update`` loads every round's labels and fine-tunes its ``BC`` trainer. Here
  gatekit's loop does the collecting, so two things change and nothing else: *who acts* is the
  gate's decision, not imitation's coin (the ``dagger`` criterion supplies the beta mixing with
  imitation's schedules, one round per ``update_every`` labels: give it the same
  ``update_every``), and *where labels come from*: the round's demos are read from gatekit's
  record store (every expert-labelled step so far, as imitation Transitions) instead of the
  collector's files. Its ``extend_and_update`` (BC training and the round counter) is
  imitation's own. Keep ``budget.warmup_steps`` at least ``batch_size`` so that the update at
  the end of the warm-up trains.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from gatekit.learners.base import Learner
from gatekit.policies import Policy, SB3Policy
from gatekit.schedules import EveryKLabels
from gatekit.types import Labels
from gatekit.validate import layer_sizes, one_of, positive

if TYPE_CHECKING:
    from gatekit.data import RecordStore


@contextlib.contextmanager
def _quiet_imitation() -> Iterator[None]:
    with warnings.catch_warnings():
        # imitation 1.0.1 logs a grad-carrying tensor with float(); harmless, and not ours to fix
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
        yield


class _ImitationBC:
    """imitation's ``BC`` trainer on an SB3 ``ActorCriticPolicy``, fed from the record store."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, *, rng: np.random.Generator,
                 net_arch: list[int], batch_size: int, lr: float, ent_weight: float, l2_weight: float,
                 labels: Labels, logger: Any) -> None:
        from imitation.algorithms import bc
        from stable_baselines3.common.policies import ActorCriticPolicy

        positive("batch_size", batch_size)
        positive("lr", lr)
        net_arch = layer_sizes("net_arch", net_arch)
        self.labels: Labels = one_of("labels", labels, ("intervened", "queried"))
        policy = ActorCriticPolicy(observation_space, action_space, lr_schedule=lambda _: lr, net_arch=list(net_arch))
        # gatekit logs the run itself; imitation's own logger would print tables to stdout
        self.trainer = bc.BC(observation_space=observation_space, action_space=action_space, rng=rng, policy=policy,
                             batch_size=batch_size, optimizer_kwargs={"lr": lr}, ent_weight=ent_weight,
                             l2_weight=l2_weight, device="cpu", custom_logger=logger)
        self.batch_size = int(batch_size)

    def labels_in(self, store: RecordStore) -> int:
        return store.count(self.labels)

    def can_train(self, store: RecordStore) -> bool:
        """imitation's data loader needs at least one full batch of demonstrations."""
        return self.labels_in(store) >= self.batch_size

    def demonstrations(self, store: RecordStore) -> Any:
        """Every expert-labelled step so far as imitation ``Transitions`` (the expert's actions)."""
        from gatekit.export import to_transitions

        return to_transitions(store, np.asarray(store.label_mask(self.labels), dtype=bool), actions="expert")


class _ImitationLearner(Learner):
    """What both adapters do with their BC policy: act, predict, snapshot, and wait for one full
    batch of labels before an update (imitation cannot train on less)."""

    bc: _ImitationBC
    schedule: EveryKLabels

    def _bind_policy(self) -> None:
        self._act = SB3Policy(self.bc.trainer.policy, self.observation_space, self.action_space, deterministic=True)

    def act(self, obs: Any) -> Any:
        return self._act(obs)

    def predict_batch(self, obs: Any) -> np.ndarray:
        from gatekit.learners.sb3.common import predict_batch

        return predict_batch(self.bc.trainer.policy, obs)

    def policy(self) -> Policy:
        from gatekit.learners.sb3.common import clone_policy

        # rebuilt from its weights: torch refuses to deepcopy a policy right after training
        return SB3Policy(clone_policy(self.bc.trainer.policy), self.observation_space, self.action_space)

    def wants_update(self, store: RecordStore) -> bool:
        return self.bc.can_train(store) and self.schedule.due_in(store)


class ImitationBCLearner(_ImitationLearner):
    """Adapter around ``imitation.algorithms.bc.BC``.

    Args:
        update_every: retrain after this many new expert-labelled steps.
        batches_per_update: minibatches of each retraining.
        batch_size: minibatch size.
        lr: Adam learning rate.
        net_arch: hidden layer sizes of the policy (an SB3 ``ActorCriticPolicy``).
        ent_weight: imitation's entropy bonus weight.
        l2_weight: imitation's L2 weight.
        labels: ``intervened`` trains on the steps the expert acted on (HG-DAgger, AIM);
            ``queried`` on every step the expert labelled (DAgger, Ensemble-DAgger).
    """

    name = "bc"

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0,
                 update_every: int = 25, batches_per_update: int = 200, batch_size: int = 64,
                 lr: float = 1e-3, net_arch: list[int] | None = None, ent_weight: float = 1e-3,
                 l2_weight: float = 0.0, labels: Labels = "intervened") -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        from imitation.util import logger as imit_logger

        positive("batches_per_update", batches_per_update)
        self.bc = _ImitationBC(observation_space, action_space, rng=np.random.default_rng(seed),
                               net_arch=net_arch if net_arch is not None else [64, 64], batch_size=batch_size, lr=lr,
                               ent_weight=ent_weight, l2_weight=l2_weight, labels=labels,
                               logger=imit_logger.configure(format_strs=[]))
        self.trainer = self.bc.trainer
        self.schedule = EveryKLabels(k=update_every, labels=labels)
        self.batches_per_update = int(batches_per_update)
        self.labels = labels
        self._bind_policy()

    def update(self, store: RecordStore) -> dict[str, float]:
        n = self.bc.labels_in(store)
        if not self.bc.can_train(store):
            return {}  # not a full batch yet: the schedule stays due and retries later
        self.schedule.mark(n)
        self.trainer.set_demonstrations(self.bc.demonstrations(store))
        with _quiet_imitation():
            self.trainer.train(n_batches=self.batches_per_update, progress_bar=False, log_interval=10**9)
        self.updates += 1
        return {"bc/labels": float(n)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "policy": self.trainer.policy.state_dict(),
                "optimizer": self.trainer.optimizer.state_dict(), "schedule_last": self.schedule.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.trainer.policy.load_state_dict(state["policy"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.schedule.last = int(state.get("schedule_last", 0))


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
        place of reading the round's ``.npz`` files. (It overrides a private method of
        imitation 1.0.1, which the ``imitation`` extra pins.)
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


class ImitationDAggerLearner(_ImitationLearner):
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
        >>> learner = ImitationDAggerLearner(observation_space=gym.spaces.Box(-1, 1, (3,)),
        ...                                  action_space=gym.spaces.Discrete(2), net_arch=[8])
        >>> learner.trainer.round_num, learner.act(gym.spaces.Box(-1, 1, (3,)).sample()) in (0, 1)
        (0, True)
    """

    name = "dagger"

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0,
                 update_every: int = 200, epochs_per_update: int = 4, batches_per_update: int | None = None,
                 batch_size: int = 64, lr: float = 1e-3, net_arch: list[int] | None = None,
                 ent_weight: float = 1e-3, l2_weight: float = 0.0, labels: Labels = "queried") -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        from imitation.util import logger as imit_logger
        from stable_baselines3.common.vec_env import DummyVecEnv

        positive("epochs_per_update", epochs_per_update)
        if batches_per_update is not None:
            positive("batches_per_update", batches_per_update)
        self.schedule = EveryKLabels(k=update_every, labels=labels)
        self.labels = labels
        self.train_kwargs: dict[str, Any] = (
            {"n_batches": int(batches_per_update)} if batches_per_update is not None else {"n_epochs": int(epochs_per_update)}
        )
        rng = np.random.default_rng(seed)
        # imitation logs to stdout by default; gatekit reports the round's figures itself
        quiet = imit_logger.configure(folder=Path(tempfile.gettempdir()) / "gatekit-dagger-log", format_strs=[])
        self.bc = _ImitationBC(observation_space, action_space, rng=rng,
                               net_arch=net_arch if net_arch is not None else [64, 64], batch_size=batch_size, lr=lr,
                               ent_weight=ent_weight, l2_weight=l2_weight, labels=labels, logger=quiet)
        venv = DummyVecEnv([lambda: _SpacesEnv(observation_space, action_space)])
        # The scratch dir is where imitation's collector and save_trainer would write; neither is
        # used (labels come from the record store), so nothing is written there.
        scratch = Path(tempfile.gettempdir()) / "gatekit-dagger-unused"
        self.trainer = _store_trainer_class()(venv=venv, scratch_dir=scratch, rng=rng, bc_trainer=self.bc.trainer,
                                                custom_logger=quiet)
        self._bind_policy()

    def update(self, store: RecordStore) -> dict[str, float]:
        n = self.bc.labels_in(store)
        if not self.bc.can_train(store):
            return {"dagger/labels": float(n)}  # not one batch yet: retry at the next label
        self.schedule.mark(n)
        self.trainer.feed(self.bc.demonstrations(store))
        with _quiet_imitation():
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
