"""RLlib (Ray): the PettingZoo parallel environment under RLlib's ``ParallelPettingZooEnv`` wrapper.

    from ray.rllib.algorithms.ppo import PPOConfig
    from p2p_marl.integrations import rllib as p2p_rllib

    p2p_rllib.register()  # registers "p2p_marl" with ray.tune.registry.register_env
    config = p2p_rllib.share_one_policy(PPOConfig().environment("p2p_marl", env_config={"n_agents": 10}))
    algo = config.build_algo()

``env_config`` keys are ``EnvConfig`` fields (unknown keys raise ``ConfigError``). Agents are ``prosumer_<i>``;
an episode is one day, ended by truncation of every agent. RLlib ships the registered creator to its remote
env runners, so ``register()`` is needed once in the driver process only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
from ray.tune.registry import register_env

from p2p_marl.envs import parallel_env

ENV_NAME = "p2p_marl"
SHARED_POLICY = "shared"


def make_env(env_config: Mapping[str, Any] | None = None) -> ParallelPettingZooEnv:
    """RLlib's multi-agent env over ``p2p_marl.parallel_env(**env_config)``.

    ``env_config`` may be RLlib's ``EnvContext`` (a dict that also carries the worker index, which the
    environment does not need: RLlib seeds each env runner's environments through ``reset(seed=...)``).
    """
    return ParallelPettingZooEnv(parallel_env(**dict(env_config or {})))


def register(name: str = ENV_NAME) -> str:
    """Register ``make_env`` with Ray Tune's env registry under ``name`` and return the name."""
    register_env(name, make_env)
    return name


def share_one_policy(config: AlgorithmConfig, policy_id: str = SHARED_POLICY) -> AlgorithmConfig:
    """Map every agent to one policy (parameter sharing: the households are interchangeable learners)."""
    return config.multi_agent(policies={policy_id}, policy_mapping_fn=lambda agent_id, *args, **kwargs: policy_id)
