"""Discrete actions over the same environment, for tabular Q-learning and DQN.

Action ``a`` in ``Discrete(n_battery_levels * n_price_levels * n_curtail_levels)`` is a point of the grid
``battery_levels x price_levels x curtail_levels`` (row-major: the curtailment level varies fastest) with
``battery_levels = linspace(-1, 1, n_battery_levels)`` (share of max power, > 0 charges),
``price_levels = linspace(0, 1, n_price_levels)`` (share of [feed-in, retail]; 0.5 when there is one level) and
``curtail_levels = linspace(0, 1, n_curtail_levels)`` (share of PV spilled; 0 when there is one level).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.wrappers import BaseParallelWrapper


def discrete_action_table(n_battery_levels: int, n_price_levels: int, n_curtail_levels: int) -> np.ndarray:
    """The continuous action of every discrete action, shaped (n_battery_levels * n_price_levels *
    n_curtail_levels, 3)."""
    battery = np.linspace(-1.0, 1.0, n_battery_levels)
    price = np.linspace(0.0, 1.0, n_price_levels) if n_price_levels > 1 else np.array([0.5])
    curtail = np.linspace(0.0, 1.0, n_curtail_levels)
    return np.stack(np.meshgrid(battery, price, curtail, indexing="ij"), axis=-1).reshape(-1, 3)


class DiscreteActionWrapper(BaseParallelWrapper):
    """Maps each agent's discrete action through ``discrete_action_table``; invalid indices raise ValueError."""

    def __init__(self, env, n_battery_levels: int, n_price_levels: int, n_curtail_levels: int):
        super().__init__(env)
        self.action_table = discrete_action_table(n_battery_levels, n_price_levels, n_curtail_levels)
        self.action_spaces = {a: spaces.Discrete(len(self.action_table)) for a in env.possible_agents}

    def action_space(self, agent: str) -> spaces.Discrete:
        return self.action_spaces[agent]

    def step(self, actions):
        if not isinstance(actions, Mapping):
            raise ValueError(f"actions must be a dict of agent -> discrete action, got {type(actions).__name__}")
        n = len(self.action_table)
        continuous = {}
        for agent, action in actions.items():
            index = np.asarray(action)
            if index.shape != () or not np.issubdtype(index.dtype, np.integer) or not 0 <= int(index) < n:
                raise ValueError(f"discrete action of {agent} must be an integer in [0, {n - 1}], got {action!r}")
            continuous[agent] = self.action_table[int(index)]
        return self.env.step(continuous)
