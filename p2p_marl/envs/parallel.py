"""PettingZoo ParallelEnv: a dict-shaped view of one community (B = 1) of the batched core."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from p2p_marl.config import EnvConfig, make_config
from p2p_marl.envs.options import days_option
from p2p_marl.sim.community import (ACTION_DIM, ACTION_HIGH, ACTION_LOW, OPERATOR_ACTION_HIGH,
                                    OPERATOR_ACTION_LOW, SHARED_BATTERY_INFO_KEYS, CommunityCore, real_array)

OPERATOR = "community_operator"


class P2PEnergyParallelEnv(ParallelEnv):
    """Households trade energy every settlement period through a double auction; one episode is one day.

    Action per agent: ``Box([-1, 0, 0], [1, 1, 1])`` = (battery setpoint as a share of max power, > 0 charges;
    limit price as a share of the step's [feed-in, retail] range; share of the step's PV curtailed).
    Out-of-range values are clipped; NaN or infinite values, strings and complex numbers raise ``ValueError``.
    Rewards are negative bills (see ``p2p_marl.sim.community``).
    ``reset(options={"day": d})`` plays day ``d`` of the profile set.

    With ``shared_battery_control="operator"`` (and a shared battery) one more agent, ``community_operator``, acts
    for the shared battery: action ``Box([-1, 0], [1, 1])`` = (its setpoint as a share of
    ``shared_battery_kw``, its limit price share), observation the global state followed by the shared
    battery's SoC now and at the episode's start, reward minus the community's bill for the step (the sum of the
    households' costs, the battery's bill included), infos its ``SHARED_BATTERY_INFO_KEYS`` and
    ``community_cost``. Otherwise the battery's rule runs and the agents are the households alone.
    """

    metadata = {"name": "p2p_energy_v0", "render_modes": ["human"], "is_parallelizable": True}

    def __init__(self, config: EnvConfig | None = None, render_mode: str | None = None, **kwargs: Any):
        self.config = make_config(config, **kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported; choose one of "
                             f"{self.metadata['render_modes']} or None")
        self.render_mode = render_mode
        self.core = CommunityCore(self.config, batch_size=1)
        self.households = [f"prosumer_{i}" for i in range(self.config.n_agents)]
        self.has_operator = self.core.has_shared_battery and self.config.shared_battery_control == "operator"
        self.possible_agents = self.households + ([OPERATOR] if self.has_operator else [])
        self.agents: list[str] = []
        self._live_agents: set[str] = set()
        # One space object per agent, built once: parallel_api_test checks identity and seeds each one.
        self.observation_spaces = {a: spaces.Box(self.core.obs_low.astype(np.float32),
                                                 self.core.obs_high.astype(np.float32),
                                                 dtype=np.float32) for a in self.households}
        self.action_spaces = {a: spaces.Box(ACTION_LOW.astype(np.float32), ACTION_HIGH.astype(np.float32),
                                               dtype=np.float32) for a in self.households}
        if self.has_operator:
            self.observation_spaces[OPERATOR] = spaces.Box(self.core.operator_observation_low.astype(np.float32),
                                                           self.core.operator_observation_high.astype(np.float32),
                                                           dtype=np.float32)
            self.action_spaces[OPERATOR] = spaces.Box(OPERATOR_ACTION_LOW.astype(np.float32),
                                                      OPERATOR_ACTION_HIGH.astype(np.float32), dtype=np.float32)
        self.state_space = spaces.Box(self.core.state_low.astype(np.float32),
                                      self.core.state_high.astype(np.float32), dtype=np.float32)
        self._last_infos: dict[str, np.ndarray] = {}

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs = self.core.reset(seed=seed, days=days_option(options, "day"))
        self.agents = list(self.possible_agents)
        self._live_agents = set(self.agents)
        self._last_infos = {}
        return self._obs_dict(obs[0]), {a: {"day": int(self.core.days[0])} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("the episode is over (no live agents); call reset() first")
        agents = self.agents
        household_actions, operator_action = self._action_array(actions)
        try:  # the core checks the actions before it changes anything
            obs, rewards, done, infos = self.core.step(household_actions[None], operator_action)
        except ValueError:
            self._name_non_finite_action(actions, household_actions, operator_action)
            raise
        self._last_infos = infos
        observations = self._obs_dict(obs[0])
        reward_dict = dict(zip(agents, rewards[0].tolist()))
        terminations = dict.fromkeys(agents, False)
        truncations = dict.fromkeys(agents, done)
        # One tolist() per key gives Python floats for all agents at once; zip(*) turns key columns into agent rows.
        keys = self.core.info_keys
        columns = [infos[key][0].tolist() for key in keys]
        info_dict = {a: dict(zip(keys, row)) for a, row in zip(agents, zip(*columns))}
        if self.has_operator:
            community_cost = float(infos["cost"][0].sum())
            reward_dict[OPERATOR] = -community_cost
            info_dict[OPERATOR] = {**{key: float(infos[key][0, 0]) for key in SHARED_BATTERY_INFO_KEYS},
                                   "community_cost": community_cost}
        if done:
            self.agents = []
            self._live_agents = set()
        if self.render_mode == "human":
            self.render()
        return observations, reward_dict, terminations, truncations, info_dict

    def _name_non_finite_action(self, actions: dict[str, Any], household_actions: np.ndarray,
                                operator_action: np.ndarray | None) -> None:
        """``ValueError`` naming the first agent whose action is not finite, if any: the core, which refused it,
        names an index and a community instead of the agent."""
        bad_rows = ~np.isfinite(household_actions).all(axis=1)
        if bad_rows.any():
            agent = self.households[int(np.argmax(bad_rows))]
        elif operator_action is not None and not np.isfinite(operator_action).all():
            agent = OPERATOR
        else:
            return
        raise ValueError(f"action of {agent} is not finite: {actions[agent]!r}; actions must be finite "
                         "numbers") from None

    def _action_array(self, actions: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """The households' actions as one (N, ACTION_DIM) array and the operator's as a (1, 2) one (None without an
        operator); ``ValueError`` naming the agent whose action is missing or of the wrong size, and naming any key
        that is not a live agent (a typo would otherwise leave that household's action silently out)."""
        if not isinstance(actions, Mapping):
            raise ValueError(f"actions must be a dict of agent -> action, got {type(actions).__name__}")
        if actions.keys() != self._live_agents:
            unknown = [agent for agent in actions if agent not in self._live_agents]
            if unknown:
                raise ValueError(f"actions given for unknown agents {unknown}; the live agents are "
                                 f"{self.agents[0]} ... {self.agents[-1]}")
            raise ValueError(f"missing actions for agents {[a for a in self.agents if a not in actions]}")
        try:  # one conversion for all households; the agent-by-agent path below names a malformed action
            household_actions = real_array([actions[agent] for agent in self.households], "actions")
            operator_action = real_array(actions[OPERATOR], "action")[None] if self.has_operator else None
        except ValueError:
            household_actions = operator_action = None
        if (household_actions is not None and household_actions.shape == (len(self.households), ACTION_DIM)
                and (operator_action is None or operator_action.shape == (1, 2))):
            return household_actions, operator_action
        rows = []
        for agent in self.agents:
            row = real_array(actions[agent], f"action of {agent}")
            size, layout = ((2, "shared battery setpoint share, price share") if agent == OPERATOR else
                            (ACTION_DIM, "battery setpoint share, price share, curtailment share"))
            if row.shape != (size,):
                raise ValueError(f"action of {agent} must hold {size} numbers ({layout}), got shape {row.shape}: "
                                 f"{actions[agent]!r}")
            rows.append(row)
        if self.has_operator:
            return np.stack(rows[:-1]), rows[-1][None]
        return np.stack(rows), None

    def state(self) -> np.ndarray:
        return self.core.state()[0].astype(np.float32)

    def render(self) -> None:
        if self.render_mode is None or not self._last_infos:
            return
        info = {key: value[0] for key, value in self._last_infos.items()}  # the env's one community
        print(f"t={self.core.t:3d}  clearing={info['clearing_price'][0]:.3f}/kWh  "
              f"p2p={info['p2p_buy_kwh'].sum():6.2f} kWh  import={info['grid_import_kwh'].sum():6.2f} kWh  "
              f"export={info['grid_export_kwh'].sum():6.2f} kWh  cost={info['cost'].sum():+.3f}  "
              f"v_min={info['voltage_pu'].min():.3f} p.u.")

    def close(self) -> None:
        pass

    def _obs_dict(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """The live agents' observations from the households' (N, obs_dim)."""
        observations = dict(zip(self.agents, obs.astype(np.float32)))
        if self.has_operator and self.agents:
            observations[OPERATOR] = self.core.operator_observation(obs[None])[0].astype(np.float32)
        return observations
