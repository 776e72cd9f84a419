"""TorchRL: the PettingZoo parallel environment under ``torchrl.envs.PettingZooWrapper``.

    from p2p_marl.integrations.torchrl import make_torchrl_env

    env = make_torchrl_env(n_agents=10, seed=0)
    td = env.rollout(48)  # one day: td["next", "prosumer", "reward"] is (48, 10, 1)

All households form one agent group, ``prosumer``: observations ``("prosumer", "observation")`` (N, obs_dim),
actions ``("prosumer", "action")`` (N, 3) continuous or (N,) categorical with ``action_mode="discrete"``,
rewards ``("prosumer", "reward")`` (N, 1), the global state ``"state"`` for centralised critics, and the
per-step quantities of ``p2p_marl.sim.INFO_KEYS`` plus the day under ``("prosumer", "info")``.
``env.reset(seed=s)`` reseeds the day sampler like ``P2PEnergyParallelEnv.reset(seed=s)``.
"""

from __future__ import annotations

from typing import Any

from pettingzoo.utils.wrappers import BaseParallelWrapper
from torchrl.envs import PettingZooWrapper

from p2p_marl.config import EnvConfig
from p2p_marl.envs import parallel_env
from p2p_marl.sim.community import INFO_KEYS

GROUP = "prosumer"


class StepInfoKeysAtReset(BaseParallelWrapper):
    """Gives reset and step the same per-agent info keys: the day and every ``INFO_KEYS`` quantity.

    TorchRL's PettingZooWrapper sizes its info spec from the reset infos and then writes every step-info key
    into it, so a key first seen at a step fails. At reset nothing has been settled yet, so the per-step
    quantities are 0.0, which is also the value TorchRL gives any info entry an agent did not report.
    """

    def reset(self, seed: int | None = None, options: dict | None = None):
        observations, infos = self.env.reset(seed=seed, options=options)
        return observations, {agent: {"day": info["day"], **dict.fromkeys(INFO_KEYS, 0.0)}
                              for agent, info in infos.items()}

    def step(self, actions):
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        day = int(self.unwrapped.core.days[0])
        return observations, rewards, terminations, truncations, {agent: {"day": day, **info}
                                                                  for agent, info in infos.items()}


def make_torchrl_env(config: EnvConfig | None = None, *, seed: int | None = None, device: str = "cpu",
                     **kwargs: Any) -> PettingZooWrapper:
    """A TorchRL environment of one community; keyword arguments are EnvConfig fields.

    ``seed`` seeds the day sampler at construction (TorchRL resets once to build its specs).
    """
    env = StepInfoKeysAtReset(parallel_env(config, **kwargs))
    return PettingZooWrapper(env, return_state=True, group_map={GROUP: list(env.possible_agents)},
                             categorical_actions=True, seed=seed, device=device)
