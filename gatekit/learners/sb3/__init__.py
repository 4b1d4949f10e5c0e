"""Stable-baselines3 algorithms as gatekit learners: off-policy RL, PPO and PVP.

One module per algorithm family (:mod:`~gatekit.learners.sb3.offpolicy`,
:mod:`~gatekit.learners.sb3.ppo`, :mod:`~gatekit.learners.sb3.pvp`), and what they share in
:mod:`~gatekit.learners.sb3.common`. SB3 is imported only when one of them is built.
"""
