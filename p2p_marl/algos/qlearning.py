"""Tabular Q-learning with one table shared by every household (parameter sharing).

State: a household's local observation discretised into four parts, index
``((time_bin * n_soc + soc_bin) * n_net + net_bin) * 2 + has_battery``:

- ``time_bin``: the time of day of the step about to be settled (read from the observation's ``time_sin``,
  ``time_cos``) in ``n_time_bins`` equal bins; the time-of-use tariff is a function of it.
- ``soc_bin``: the battery's state of charge (fraction of capacity) against ``soc_edges``
  (``len(soc_edges) + 1`` bins); households without a battery observe 0, the first bin.
- ``net_bin``: this step's net load ``load_kw - pv_kw`` in kW (before the battery; > 0 needs energy,
  < 0 has surplus) against ``net_load_edges_kw``: whether the household is a buyer or a seller, and how much.
- ``has_battery`` (0 or 1): without one, the battery part of the action has no effect.

Actions: the ``discrete_action_table`` of the learner's own grid (see ``p2p_marl.training.value_based``).

Update: after every step, the TD errors ``r + gamma * max_a' Q(s', a') - Q(s, a)`` (no bootstrap at the end of
the day) of all B x N households are averaged per table entry (s, a) and each visited entry moves by
``learning_rate`` times its mean error. Averaging, rather than applying the households' updates one after
another, keeps a step of an entry that many households visit at once (the no-battery households at night) at
``learning_rate`` and makes the update independent of the households' order. The step is
``max(learning_rate, count / visits)`` (``count`` of this step's transitions, ``visits`` with them): the first
visits average their targets, so an entry tried once holds its target rather than a tenth of it. With the
plain ``learning_rate`` every entry starts at a tenth of the way from 0, and since most values are negative
(costs) a barely tried action looked better than a well-known one and became greedy. The reported ``td_loss`` is the
mean squared TD error of the step's transitions.

Untried actions: the table counts visits, and an action never tried in a state is neither greedy nor part of
``max_a'`` (its entry holds no information; a constant initial value would be either optimistic, drawing the
greedy policy to rarely visited states, or pessimistic, making them look worse than they are). A state where
nothing has been tried yet bootstraps with ``unvisited_value``; a greedy policy there takes action 0.

Defaults: ``gamma = 1`` because an episode is one day of fixed length and the evaluated quantity is the day's
undiscounted cost (energy stored at noon pays off in the 17-21 h evening peak, whose middle is 7 hours = 14
steps later, which a discount of 0.98 would devalue by a quarter: 0.98^14 = 0.75). Measured on community_10
(see ``configs/experiment/value_based``): the greedy policy's share of the optimal saving keeps moving by +-0.1
between evaluations, so judge it over seeds and evaluations, not from one number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import OBS_FEATURES, CommunityCore
from p2p_marl.training.validation import check_ranges
from p2p_marl.training.value_based import ValueBasedLearner, check_action_grid

_TIME_SIN, _TIME_COS, _LOAD, _PV, _SOC, _HAS_BATTERY = (
    OBS_FEATURES.index(f) for f in ("time_sin", "time_cos", "load", "pv", "soc", "has_battery"))


@dataclass
class QLearningConfig:
    """Q-learning hyperparameters; mirrored 1:1 by ``configs/algo/qlearning.yaml``."""

    name: str = "qlearning"
    # Communities simulated in lockstep; one iteration = one day of each. Few: the table is updated once per
    # core step, so a small batch gives more (smaller-batch) updates per community-step.
    num_envs: int = 4
    learning_rate: float = 0.1  # step size of the table update
    gamma: float = 1.0  # discount per step; 1 = the day's undiscounted cost, the quantity evaluated
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 300_000  # community-steps of linear epsilon decay
    unvisited_value: float = 0.0  # bootstrap value of a state where no action has been tried yet
    n_time_bins: int = 24
    soc_edges: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])
    net_load_edges_kw: list[float] = field(default_factory=lambda: [-2.0, -0.5, -0.1, 0.1, 0.5, 2.0])
    # The action grid (p2p_marl.training.value_based.ActionGrid): 5 battery setpoints and one that follows the
    # net load, bid at the middle of [feed-in, retail], never curtail. On the 30 actions of 3 price and 2
    # curtailment levels the table's entries got too few visits and Q-learning ended below idle batteries; the
    # net-load action added 0.14 on validation days over 5 seeds (README, what was tried).
    n_battery_levels: int = 5  # evenly spaced setpoints in [-1, 1]
    n_price_levels: int = 1  # evenly spaced price shares in [0, 1] (1 level: 0.5)
    n_curtail_levels: int = 1  # evenly spaced PV curtailment shares in [0, 1] (1 level: none)
    follow_net_load_action: bool = True  # one more battery level: charge the PV surplus, cover the net load
    infeasible_penalty_per_kwh: float = 0.01  # the training reward pays this per kWh of battery setpoint beyond
    # what the battery could do (nets.infeasible_setpoint_kwh); 0: the bill alone

    def __post_init__(self) -> None:
        if self.name != "qlearning":
            raise ConfigError(f"qlearning.name must be 'qlearning', got {self.name!r}")
        check_ranges(self, _RANGES, _INTEGERS, "qlearning")
        check_action_grid(self, "qlearning")
        if self.epsilon_end > self.epsilon_start:
            raise ConfigError(f"qlearning.epsilon_end={self.epsilon_end} must not exceed "
                              f"epsilon_start={self.epsilon_start}")
        _check_edges("soc_edges", self.soc_edges, 0.0, 1.0)
        _check_edges("net_load_edges_kw", self.net_load_edges_kw, -math.inf, math.inf)


_INTEGERS = {"num_envs", "epsilon_decay_steps", "n_time_bins"}
_RANGES = (
    ("num_envs", 1, 100_000, True, True),
    ("infeasible_penalty_per_kwh", 0.0, 10.0, True, True),
    ("learning_rate", 0.0, 1.0, False, True),
    ("gamma", 0.0, 1.0, True, True),
    ("epsilon_start", 0.0, 1.0, True, True),
    ("epsilon_end", 0.0, 1.0, True, True),
    ("epsilon_decay_steps", 1, 10**12, True, True),
    ("unvisited_value", -1e6, 1e6, True, True),
    ("n_time_bins", 1, 1440, True, True),
)


def _check_edges(key: str, edges: Any, low: float, high: float) -> None:
    values = list(edges) if isinstance(edges, (list, tuple)) else None
    if (values is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                  and low <= v <= high for v in values)
            or any(b <= a for a, b in zip(values, values[1:]))):
        raise ConfigError(f"qlearning.{key} must be a list of strictly increasing finite numbers in "
                          f"[{low}, {high}], got {edges!r}")


class QTable:
    """The shared table, its visit counts and the discretisation of local observations (module docstring)."""

    def __init__(self, config: QLearningConfig, n_actions: int):
        self.n_time_bins = config.n_time_bins
        self.soc_edges = np.asarray(config.soc_edges, dtype=np.float64)
        self.net_load_edges_kw = np.asarray(config.net_load_edges_kw, dtype=np.float64)
        n_states = self.n_time_bins * (len(self.soc_edges) + 1) * (len(self.net_load_edges_kw) + 1) * 2
        self.values = np.zeros((n_states, n_actions))
        self.visits = np.zeros((n_states, n_actions), dtype=np.int64)

    def encode(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        """State index (B, N) of each household's observation (B, N, obs_dim)."""
        day_fraction = np.mod(np.arctan2(obs[..., _TIME_SIN], obs[..., _TIME_COS]) / (2.0 * math.pi), 1.0)
        # The small offset puts a step that starts exactly on a bin edge into the bin it starts, whatever
        # the rounding of sin/cos.
        time_bin = np.floor(day_fraction * self.n_time_bins + 1e-6).astype(np.int64) % self.n_time_bins
        soc_bin = np.digitize(obs[..., _SOC], self.soc_edges)
        net_load_kw = (obs[..., _LOAD] - obs[..., _PV]) * core.power_scale_kw
        net_bin = np.digitize(net_load_kw, self.net_load_edges_kw)
        has_battery = (obs[..., _HAS_BATTERY] > 0.5).astype(np.int64)
        n_soc, n_net = len(self.soc_edges) + 1, len(self.net_load_edges_kw) + 1
        return ((time_bin * n_soc + soc_bin) * n_net + net_bin) * 2 + has_battery

    def q_values(self, states: np.ndarray) -> np.ndarray:
        """Action values (..., n_actions); -inf for actions never tried in that state."""
        return np.where(self.visits[states] > 0, self.values[states], -np.inf)


class QLearning(ValueBasedLearner):
    name = "qlearning"

    def __init__(self, env_config: EnvConfig, config: QLearningConfig, seed: int, threads: int = 1):
        super().__init__(env_config, config, seed, threads)
        self.q = QTable(config, self.n_actions)

    def learn(self, x: np.ndarray, actions: np.ndarray, reward: np.ndarray, next_x: np.ndarray, terminal: bool
              ) -> dict[str, float]:
        c, q = self.config, self.q
        if terminal:
            bootstrap = 0.0
        else:
            next_value = q.q_values(next_x).max(axis=-1)
            bootstrap = c.gamma * np.where(np.isfinite(next_value), next_value, c.unvisited_value)
        td_error = reward + bootstrap - q.values[x, actions]
        entry = (x * self.n_actions + actions).ravel()
        error_sum = np.bincount(entry, weights=td_error.ravel(), minlength=q.values.size)
        count = np.bincount(entry, minlength=q.values.size)
        hit = np.flatnonzero(count)
        visits = q.visits.reshape(-1)[hit] + count[hit]
        step_size = np.maximum(c.learning_rate, count[hit] / visits)
        q.values.reshape(-1)[hit] += step_size * error_sum[hit] / count[hit]
        q.visits.reshape(-1)[hit] = visits
        return {"td_loss": float(np.mean(td_error ** 2))}

    def state_dict(self) -> dict[str, Any]:
        # A tensor, so that checkpoints load with torch.load(weights_only=True).
        return {"q_table": torch.from_numpy(self.q.values.copy()), "visits": torch.from_numpy(self.q.visits.copy()),
                **self.collector_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        table = state["q_table"].numpy()
        if table.shape != self.q.values.shape:
            raise ValueError(f"q_table has shape {tuple(table.shape)}, but this configuration needs "
                             f"{self.q.values.shape} (states x actions)")
        self.q.values[...] = table
        self.q.visits[...] = state["visits"].numpy()
        self.load_collector_state(state)
