"""Centralised single-agent views: one controller sees every household and acts for all of them.

Observation: the N local observations concatenated, shaped (N * obs_dim,). Action: the N three-dimensional
actions concatenated, (N * 3,), laid out [setpoint_0, price_0, curtail_0, setpoint_1, ...]. Reward: the sum of
the agents' rewards, i.e. the negative community cost of the step. An episode is one day (truncated at its end).
``CommunityCentralVectorEnv`` runs ``num_envs`` communities on the batched core in lockstep with
next-step autoreset: the step after an episode ends resets every community and returns reward 0.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from p2p_marl.config import EnvConfig, check_households_only, make_config
from p2p_marl.envs.options import days_option
from p2p_marl.sim.community import ACTION_DIM, ACTION_HIGH, ACTION_LOW, CommunityCore, real_array


def _central_spaces(core: CommunityCore) -> tuple[spaces.Box, spaces.Box]:
    n_agents = core.n_agents
    observation = spaces.Box(np.tile(core.obs_low, n_agents).astype(np.float32),
                             np.tile(core.obs_high, n_agents).astype(np.float32), dtype=np.float32)
    action = spaces.Box(np.tile(ACTION_LOW, n_agents).astype(np.float32),
                        np.tile(ACTION_HIGH, n_agents).astype(np.float32), dtype=np.float32)
    return observation, action


def _checked_shape(action: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The flat action(s) of ``shape`` (..., N * 3) as (..., N, 3); ``ValueError`` naming the layout otherwise (a
    reshape alone would take a (3, N) array, or any other of that size, and scramble it; an (N, 3) one is outside
    the space too)."""
    values = real_array(action, "action")
    if values.shape != shape:
        raise ValueError(f"action must have shape {shape}: the households' (setpoint, price, curtailment) shares "
                         f"one after another, [setpoint_0, price_0, curtail_0, setpoint_1, ...]; got {values.shape}")
    return values.reshape(shape[:-1] + (-1, ACTION_DIM))


class CommunityCentralEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig | None = None, render_mode: str | None = None, **kwargs: Any):
        if render_mode is not None:
            # A TypeError, like an unexpected keyword, so that callers such as SB3's make_vec_env retry without it.
            raise TypeError(f"CommunityCentralEnv has no render modes; got render_mode={render_mode!r}")
        self.config = make_config(config, **kwargs)
        check_households_only(self.config, "the centralised view")
        self.core = CommunityCore(self.config, batch_size=1)
        self.observation_space, self.action_space = _central_spaces(self.core)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = self.core.reset(seed=seed, days=days_option(options, "day"))
        return obs.reshape(-1).astype(np.float32), {"day": int(self.core.days[0])}

    def step(self, action):
        obs, rewards, done, infos = self.core.step(_checked_shape(action, self.action_space.shape)[None])
        info = {key: infos[key][0].copy() for key in self.core.info_keys}
        return obs.reshape(-1).astype(np.float32), float(rewards.sum()), False, done, info


class CommunityCentralVectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, config: EnvConfig | None = None, **kwargs: Any):
        self.config = make_config(config, **kwargs)
        check_households_only(self.config, "the centralised view")
        self.num_envs = num_envs
        self.core = CommunityCore(self.config, batch_size=num_envs)
        self.single_observation_space, self.single_action_space = _central_spaces(self.core)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        obs = self.core.reset(seed=seed, days=days_option(options, "days"))
        self._needs_reset = False
        return self._flat(obs), {"day": self.core.days.copy()}

    def step(self, actions):
        n = self.num_envs
        if self._needs_reset:
            obs = self.core.reset()
            self._needs_reset = False
            zeros = np.zeros(n, dtype=bool)
            return self._flat(obs), np.zeros(n), zeros, zeros.copy(), {"day": self.core.days.copy()}
        obs, rewards, done, infos = self.core.step(_checked_shape(actions, self.action_space.shape))
        self._needs_reset = done
        info = {key: infos[key].copy() for key in self.core.info_keys}
        return (self._flat(obs), rewards.sum(axis=1), np.zeros(n, dtype=bool), np.full(n, done), info)

    def _flat(self, obs: np.ndarray) -> np.ndarray:
        return obs.reshape(self.num_envs, -1).astype(np.float32)
