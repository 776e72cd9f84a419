"""Environment views over the batched core, and the entry points that build them from config keywords."""

from __future__ import annotations

from typing import Any

from pettingzoo.utils.conversions import parallel_to_aec

from p2p_marl.config import EnvConfig, make_config
from p2p_marl.envs.central import CommunityCentralEnv, CommunityCentralVectorEnv
from p2p_marl.envs.discrete import DiscreteActionWrapper, discrete_action_table
from p2p_marl.envs.parallel import P2PEnergyParallelEnv


def parallel_env(config: EnvConfig | None = None, render_mode: str | None = None, **kwargs: Any):
    """The PettingZoo parallel environment; keyword arguments are EnvConfig fields.

    With ``action_mode="discrete"`` the env is wrapped in ``DiscreteActionWrapper``.
    """
    cfg = make_config(config, **kwargs)
    env = P2PEnergyParallelEnv(cfg, render_mode=render_mode)
    if cfg.action_mode == "discrete":
        env = DiscreteActionWrapper(env, cfg.n_battery_levels, cfg.n_price_levels, cfg.n_curtail_levels)
    return env


def env(config: EnvConfig | None = None, render_mode: str | None = None, **kwargs: Any):
    """The AEC form of ``parallel_env`` (PettingZoo's ``parallel_to_aec``)."""
    return parallel_to_aec(parallel_env(config, render_mode=render_mode, **kwargs))


__all__ = ["P2PEnergyParallelEnv", "DiscreteActionWrapper", "CommunityCentralEnv", "CommunityCentralVectorEnv",
           "discrete_action_table", "parallel_env", "env"]
