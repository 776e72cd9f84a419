"""The episode loop shared by the discrete-action value-based learners (tabular Q-learning and DQN).

Both learn one action-value function Q(local observation, discrete action) shared by every household of the
community (parameter sharing) on the batched core:

- Actions: index ``a`` of the learner's ``ActionGrid`` (its config's levels, not the env's):
  ``p2p_marl.envs.discrete_action_table(n_battery_levels, n_price_levels, n_curtail_levels)`` (battery setpoint
  share x price share x curtailment share, the table the ``DiscreteActionWrapper`` uses), and with
  ``follow_net_load_action`` one more battery level whose setpoint follows the household's own net load.
- One ``iterate()`` plays one whole day on each of the ``num_envs`` communities (days drawn by the core from
  the training split) and calls the learner's ``learn`` after every step with the transitions of all B x N
  households. Episodes never straddle ``iterate()`` calls, so a checkpoint between them resumes exactly.
- Exploration: epsilon-greedy per household and step; epsilon decays linearly from ``epsilon_start`` to
  ``epsilon_end`` over the first ``epsilon_decay_steps`` community-steps (``env_steps``), then stays.
- The end of the day is terminal: the core ends every episode at a fixed, observed time of day (midnight, or
  ``max_cycles``) and starts the next one from a fresh state, so nothing is earned after the last step and
  its target is the reward alone (no bootstrap from the next day's first observation).
- Random numbers: the core's day draws and the exploration come from two generators spawned from ``seed``;
  both are part of ``state_dict()`` (DQN's demonstrations, drawn at its first iteration, reseed the core's from
  the exploration generator).

A learner supplies a ``QFunction`` (``encode`` observations once per step, ``q_values`` of encoded inputs)
and ``learn``; evaluation uses ``GreedyPolicy`` over a frozen copy of that Q-function.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections import defaultdict
from typing import Any, Protocol

import numpy as np

from p2p_marl.algos.base import Learner
from p2p_marl.algos.nets import episode_metrics, infeasible_training_reward
from p2p_marl.baselines.rules import self_consumption_setpoint
from p2p_marl.config import DISCRETE_GRID_RANGES, DISCRETE_VIEW_KEYS, EnvConfig, check_ranges
from p2p_marl.envs import discrete_action_table
from p2p_marl.sim.battery import feasible_power
from p2p_marl.sim.community import ACTION_HIGH, ACTION_LOW, CommunityCore
from p2p_marl.training.validation import check_bools


def linear_schedule(start: float, end: float, duration_steps: int, step: int) -> float:
    """``start`` moving linearly to ``end`` over ``duration_steps``, then ``end``."""
    return start + min(step / duration_steps, 1.0) * (end - start)


class QFunction(Protocol):
    def encode(self, core: CommunityCore, obs: np.ndarray) -> Any:
        """The learner's input for local observations (B, N, obs_dim) of ``core``."""

    def q_values(self, x: Any) -> np.ndarray:
        """Action values (B, N, n_actions) of encoded inputs."""


def check_action_grid(config: Any, section: str) -> None:
    """A value-based learner's grid keys (``ActionGrid``): the levels' ranges and ``follow_net_load_action``;
    ``ConfigError`` names ``section.key``."""
    check_ranges(config, DISCRETE_GRID_RANGES, DISCRETE_VIEW_KEYS, section)
    check_bools(config, ("follow_net_load_action",), section)


class ActionGrid:
    """A value-based learner's discrete actions as the environment's continuous actions (B, N, 3).

    The rows of ``discrete_action_table(n_battery_levels, n_price_levels, n_curtail_levels)``, then, with
    ``follow_net_load``, one more battery level for every price and curtailment level: its setpoint charges the
    step's PV surplus and discharges to cover the net load, as the self-consumption rule does. Fixed setpoints
    only approximate that, and the gap costs twice: a surplus the battery does not take is exported at the
    feed-in tariff, a discharge beyond the load is exported too.
    """

    def __init__(self, n_battery_levels: int, n_price_levels: int, n_curtail_levels: int, follow_net_load: bool):
        fixed = discrete_action_table(n_battery_levels, n_price_levels, n_curtail_levels)
        # The table is battery-major: its first rows are every price and curtailment level of one battery level.
        follow = fixed[:n_price_levels * n_curtail_levels].copy() if follow_net_load else fixed[:0]
        self.table = np.concatenate([fixed, follow])
        self.follows_net_load = np.arange(len(self.table)) >= len(fixed)

    def __len__(self) -> int:
        return len(self.table)

    def actions(self, core: CommunityCore, obs: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """The continuous actions (B, N, 3) of action ``indices`` (B, N) taken on local observations ``obs``."""
        actions = self.table[indices]
        follows = self.follows_net_load[indices]
        if follows.any():
            actions[..., 0] = np.where(follows, self_consumption_setpoint(core, obs), actions[..., 0])
        return actions

    def nearest(self, core: CommunityCore, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The index (B, N) of the grid action closest to continuous ``actions`` (B, N, 3) on ``obs``, component
        by component (the grid is every battery level with every price and curtailment level): the battery level
        whose setpoint the battery can follow nearest to how it can follow the action's (in kW at the meter), and
        among equals the one nearest the setpoint it can follow (a household without a battery, or a full one
        asked to charge, gets the idle level); the nearest price and curtailment shares. Ties go to the lowest
        index."""
        every_index = np.broadcast_to(np.arange(len(self))[:, None, None], (len(self),) + obs.shape[:-1])
        rows = self.actions(core, obs, every_index)  # (L, B, N, 3): every grid action of every household
        wanted = np.clip(actions, ACTION_LOW, ACTION_HIGH)
        battery = core.battery

        def meter_kw(share: np.ndarray) -> np.ndarray:
            charge_kw, discharge_kw = feasible_power(share * battery.max_kw, core.energy_kwh, battery, core.dt_h)
            return charge_kw - discharge_kw

        wanted_kw = meter_kw(wanted[..., 0])
        power_gap_kw = np.abs(meter_kw(rows[..., 0]) - wanted_kw)
        # Among the levels of least power gap, the setpoint nearest the one the battery can follow: a full battery
        # asked to charge gets the idle level, not a setpoint the core would clip (nor its infeasible price).
        feasible_share = np.divide(wanted_kw, battery.max_kw, out=np.zeros_like(wanted_kw), where=battery.max_kw > 0)
        battery_gap = np.where(power_gap_kw <= power_gap_kw.min(axis=0) + 1e-12,
                               np.abs(rows[..., 0] - feasible_share), np.inf)
        # Over the product grid, the least sum of the components' gaps is each component's least gap.
        return (battery_gap + np.abs(rows[..., 1:] - wanted[..., 1:]).sum(axis=-1)).argmin(axis=0)


class GreedyPolicy:
    """The deterministic evaluation policy: every household takes the action of highest Q (lowest index on
    ties). Holds its own copy of the Q-function, so it stays fixed while training goes on."""

    def __init__(self, name: str, q_function: QFunction, action_grid: ActionGrid):
        self.name = name
        self.q_function = q_function
        self.action_grid = action_grid

    def reset(self, core: CommunityCore) -> None:
        pass

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        return self.action_grid.actions(core, obs, self.indices(core, obs))

    def indices(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        """The grid actions (B, N) that ``act`` plays."""
        return self.q_function.q_values(self.q_function.encode(core, obs)).argmax(axis=-1)


class ValueBasedLearner(Learner):
    """Epsilon-greedy data collection on the batched core; subclasses set ``self.q`` and implement ``learn``.

    ``config`` needs ``num_envs``, ``epsilon_start``, ``epsilon_end``, ``epsilon_decay_steps``, the action
    grid's ``n_battery_levels``, ``n_price_levels``, ``n_curtail_levels`` and ``follow_net_load_action``, and
    ``infeasible_penalty_per_kwh``: the training reward pays that per kWh of battery setpoint beyond what the
    battery could do (``nets.infeasible_setpoint_kwh``; the net-load action asks a full battery to charge its
    PV surplus too).
    """

    q: QFunction

    def __init__(self, env_config: EnvConfig, config: Any, seed: int, threads: int = 1,
                 trained_on: EnvConfig | None = None):
        super().__init__(env_config, config, seed, threads)
        # trained_on: the community the learner trains on when it differs from the one it plays (nets.training_env)
        self.core = CommunityCore(env_config if trained_on is None else trained_on, batch_size=config.num_envs)
        self.action_grid = ActionGrid(config.n_battery_levels, config.n_price_levels, config.n_curtail_levels,
                                      config.follow_net_load_action)
        core_seed, exploration_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
        self.core.reset(seed=core_seed)
        self.rng = np.random.default_rng(exploration_seed)

    @property
    def n_actions(self) -> int:
        return len(self.action_grid)

    def exploration_rate(self) -> float:
        """Epsilon after ``env_steps`` community-steps: linear decay, then constant."""
        c = self.config
        return linear_schedule(c.epsilon_start, c.epsilon_end, c.epsilon_decay_steps, self.env_steps)

    @abstractmethod
    def learn(self, x: Any, actions: np.ndarray, reward: np.ndarray, next_x: Any, terminal: bool
              ) -> dict[str, float]:
        """Learn from one step of every household: encoded inputs, actions (B, N), rewards (B, N), the next
        encoded inputs and whether the step ended the day. Returns loss metrics (empty if nothing was learned)."""

    def iterate(self) -> dict[str, float]:
        core = self.core
        obs = core.reset()
        x = self.q.encode(core, obs)
        rewards, costs = [], []
        losses: dict[str, list[float]] = defaultdict(list)
        done = False
        while not done:
            epsilon = self.exploration_rate()
            actions = self.q.q_values(x).argmax(axis=-1)
            explore = self.rng.random(actions.shape) < epsilon
            actions = np.where(explore, self.rng.integers(self.n_actions, size=actions.shape), actions)
            env_actions = self.action_grid.actions(core, obs, actions)
            obs, reward, done, infos = core.step(env_actions)
            reward = self.training_reward(reward, env_actions, infos)
            self.env_steps += core.batch_size
            next_x = self.q.encode(core, obs)
            for key, value in self.learn(x, actions, reward, next_x, done).items():
                losses[key].append(value)
            rewards.append(reward)
            costs.append(infos["cost"])
            x = next_x
        return {**episode_metrics(np.stack(rewards), np.stack(costs)),
                **{key: float(np.mean(values)) for key, values in losses.items()},
                "exploration": epsilon}

    def training_reward(self, reward: np.ndarray, env_actions: np.ndarray, infos: dict[str, np.ndarray]
                        ) -> np.ndarray:
        """The reward (B, N) the learner trains on for a step of ``env_actions`` that earned ``reward``: the bill
        less ``infeasible_penalty_per_kwh`` per kWh of infeasible setpoint."""
        return infeasible_training_reward(reward, env_actions, infos, self.core, self.config.infeasible_penalty_per_kwh)

    def policy(self) -> GreedyPolicy:
        return GreedyPolicy(self.name, copy.deepcopy(self.q), self.action_grid)

    def collector_state(self) -> dict[str, Any]:
        """The state of the data collection (counters and generators) for ``state_dict``."""
        return {"env_steps": self.env_steps, "rng": self.rng.bit_generator.state,
                "core_rng": self.core._rng.bit_generator.state}

    def load_collector_state(self, state: dict[str, Any]) -> None:
        self.env_steps = state["env_steps"]
        self.rng.bit_generator.state = state["rng"]
        self.core._rng.bit_generator.state = state["core_rng"]
