"""p2p_marl: peer-to-peer energy trading in a residential community as a multi-agent RL environment.

Importing the package registers ``p2p_marl/Community-v0`` with PettingZoo (parallel and AEC) and
``p2p_marl/CommunityCentral-v0`` with gymnasium (with a vector entry point on the batched core).
"""

import gymnasium
import pettingzoo

from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.envs import (CommunityCentralEnv, CommunityCentralVectorEnv, DiscreteActionWrapper,
                           P2PEnergyParallelEnv, env, parallel_env)
from p2p_marl.sim.community import CommunityCore

PETTINGZOO_ID = "p2p_marl/Community-v0"
GYMNASIUM_ID = "p2p_marl/CommunityCentral-v0"

if PETTINGZOO_ID not in pettingzoo.parallel_registry:
    pettingzoo.register("parallel", PETTINGZOO_ID, entry_point="p2p_marl.envs:parallel_env")
    pettingzoo.register("aec", PETTINGZOO_ID, entry_point="p2p_marl.envs:env")
if GYMNASIUM_ID not in gymnasium.registry:
    gymnasium.register(GYMNASIUM_ID, entry_point="p2p_marl.envs.central:CommunityCentralEnv",
                       vector_entry_point="p2p_marl.envs.central:CommunityCentralVectorEnv",
                       disable_env_checker=False)

__all__ = ["CommunityCore", "EnvConfig", "ConfigError", "P2PEnergyParallelEnv", "DiscreteActionWrapper",
           "CommunityCentralEnv", "CommunityCentralVectorEnv", "parallel_env", "env", "PETTINGZOO_ID",
           "GYMNASIUM_ID"]
