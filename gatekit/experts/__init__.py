"""Experts by registry name. Simulator and SB3 imports happen only when an expert is built.

An expert factory is ``factory(*, env, **kwargs) -> Expert``; ``env`` is the env it advises on
(its spaces and privileged state).
"""

from gatekit.experts.base import Expert
from gatekit.registry import Registry

EXPERTS = Registry("expert")
EXPERTS.register("pendulum-pd", "gatekit.experts.classic:PendulumExpert", "energy-shaping swing-up + PD balance for Pendulum-v1")
EXPERTS.register("cartpole-pd", "gatekit.experts.classic:CartPoleExpert", "PD controller on pole angle and velocity for CartPole-v1")
EXPERTS.register("echo", "gatekit.experts.classic:EchoExpert", "returns a fixed action (tests)")
EXPERTS.register("keyboard", "gatekit.experts.keyboard:KeyboardExpert", "a person at the keyboard: a window shows the env, keys are actions (pygame)")
EXPERTS.register("metadrive-ppo", "gatekit.experts.metadrive:MetaDrivePPOExpert", "the PPO driving expert shipped in the metadrive wheel")
EXPERTS.register("metadrive-idm", "gatekit.experts.metadrive_idm:MetaDriveIDMExpert", "MetaDrive's rule-based IDM driver (privileged; fixed-Gaussian likelihood)")
EXPERTS.register("minigrid-planner", "gatekit.experts.minigrid:MiniGridPlannerExpert", "shortest path over the true grid, opens doors")
EXPERTS.register("sb3", "gatekit.experts.sb3:sb3_zip", "any stable-baselines3 model zip (2.x, 1.x, forks), loaded without unpickling")
EXPERTS.register("sb3-policy", "gatekit.experts.sb3:sb3_state_dict", "a bare SB3 policy.pth state dict (architecture read from its shapes)")

__all__ = ["EXPERTS", "Expert"]
