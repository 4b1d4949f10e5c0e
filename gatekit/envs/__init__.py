"""Env factories by registry name. Simulator imports happen only when a factory is called."""

from gatekit.envs.base import METRICS_KEY, SINGLE_INSTANCE_KEY, Split
from gatekit.registry import Registry

ENVS = Registry("env")
ENVS.register("echo", "gatekit.envs.toy:make_echo_env", "tiny env whose observation echoes the last action (tests)")
ENVS.register("pendulum", "gatekit.envs.classic:make_pendulum_env", "gymnasium Pendulum-v1 (Box action)")
ENVS.register("cartpole", "gatekit.envs.classic:make_cartpole_env", "gymnasium CartPole-v1 (Discrete action)")
ENVS.register("metadrive", "gatekit.envs.metadrive:make_metadrive_env", "SafeMetaDriveEnv, the AIM paper's setting: 50 train maps from seed 100, 50 test maps from seed 1000")
ENVS.register("metadrive-toy", "gatekit.envs.metadrive:make_metadrive_toy_env", "one MetaDrive map 'COT', no traffic")
ENVS.register("minigrid-multiroom", "gatekit.envs.minigrid:make_multiroom_env", "MiniGrid MultiRoom, 6 rooms of size <= 6, 7x7x3 view, 4-frame stack")
ENVS.register("minigrid-fourrooms", "gatekit.envs.minigrid:make_fourrooms_env", "MiniGrid FourRooms, 7x7x3 view, 4-frame stack")
ENVS.register_prefix("gym", "gatekit.envs.classic:make_gym_env", "any registered gymnasium id, e.g. gym:LunarLander-v3 (keys go to gym.make)")
ENVS.register("minigrid-doorkey", "gatekit.envs.minigrid:make_doorkey_env", "MiniGrid DoorKey, 7x7x3 view, 4-frame stack")

__all__ = ["ENVS", "METRICS_KEY", "SINGLE_INSTANCE_KEY", "Split"]
