"""imitation's behaviour cloning as an interactive learner.

Every ``update_every`` new expert-labelled steps, the BC trainer of ``imitation`` is given all
the expert-labelled steps so far and trains ``batches_per_update`` minibatches, warm-starting
from the current policy (HG-DAgger's learner; with ``budget.warmup_steps`` only, plain BC).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

from gatekit.learners.base import EveryKLabels, Learner
from gatekit.policies import Policy, SB3Policy

if TYPE_CHECKING:
    from gatekit.data import RecordStore


class ImitationBCLearner(Learner):
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
                 l2_weight: float = 0.0, labels: Literal["intervened", "queried"] = "intervened") -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        from imitation.algorithms import bc
        from imitation.util import logger as imit_logger
        from stable_baselines3.common.policies import ActorCriticPolicy

        if batches_per_update < 1 or batch_size < 1:
            raise ValueError("batches_per_update and batch_size must be >= 1")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if labels not in ("intervened", "queried"):
            raise ValueError(f"labels must be 'intervened' or 'queried', got {labels!r}")
        self.schedule = EveryKLabels(k=update_every)
        self.batches_per_update = batches_per_update
        self.batch_size = batch_size
        self.labels = labels
        arch = list(net_arch) if net_arch is not None else [64, 64]
        policy = ActorCriticPolicy(observation_space, action_space, lr_schedule=lambda _: lr, net_arch=arch)
        self.trainer = bc.BC(
            observation_space=observation_space, action_space=action_space,
            rng=np.random.default_rng(seed), policy=policy, batch_size=batch_size,
            optimizer_kwargs={"lr": lr}, ent_weight=ent_weight, l2_weight=l2_weight, device="cpu",
            # gatekit logs the run itself; imitation's own logger would print tables to stdout
            custom_logger=imit_logger.configure(format_strs=[]),
        )
        self._act = SB3Policy(self.trainer.policy, observation_space, action_space, deterministic=True)

    def _n_labels(self, store: RecordStore) -> int:
        col = store.column("intervened" if self.labels == "intervened" else "expert_queried")
        return int(col.sum())

    def act(self, obs: Any) -> Any:
        return self._act(obs)

    def policy(self) -> Policy:
        from gatekit.learners.sb3 import clone_policy

        # rebuilt from its weights: torch refuses to deepcopy a policy right after training
        return SB3Policy(clone_policy(self.trainer.policy), self.observation_space, self.action_space)

    def wants_update(self, store: RecordStore) -> bool:
        # imitation's data loader needs at least one full batch of demonstrations
        n = self._n_labels(store)
        return n >= self.batch_size and self.schedule.due(n)

    def update(self, store: RecordStore) -> dict[str, float]:
        from gatekit.data import to_transitions

        mask = store.column("intervened" if self.labels == "intervened" else "expert_queried").astype(bool)
        n = int(mask.sum())
        if n < self.batch_size:
            return {}  # not a full batch yet: the schedule stays due and retries later
        self.schedule.mark(self._n_labels(store))
        self.trainer.set_demonstrations(to_transitions(store, mask, actions="expert"))
        with warnings.catch_warnings():
            # imitation 1.0.1 logs a grad-carrying tensor with float(); harmless, and not ours to fix
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
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
