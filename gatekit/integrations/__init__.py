"""gatekit inside other libraries' training loops (``sb3``: stable-baselines3's ``learn()``).

Each module imports its library at the top: import the one you use, e.g.
``from gatekit.integrations.sb3 import ExecutedActionReplayBuffer, GatekitCallback``.
"""
