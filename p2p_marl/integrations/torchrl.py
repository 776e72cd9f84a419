"""TorchRL: a native, batched TorchRL environment over ``CommunityCore``.

    from p2p_marl.integrations.torchrl import make_torchrl_env

    env = make_torchrl_env(n_agents=10, batch_size=256, seed=0)  # 256 communities stepped at once
    td = env.rollout(48)  # one day: td["next", "prosumer", "reward"] is (256, 48, 10, 1)

``P2PTorchRLEnv`` is a ``torchrl.envs.EnvBase`` with ``batch_size=[B]``: one ``CommunityCore(config, batch_size=B)``
steps all B communities with numpy, and each step crosses into torch once (no per-agent or per-community Python
loop). All households form one agent group, ``prosumer``, in TorchRL's multi-agent layout:

- ``("prosumer", "observation")`` (B, N, obs_dim) float32 within ``core.obs_low``/``core.obs_high``;
- ``("prosumer", "action")`` (B, N, 3) float32 in the box ``ACTION_LOW``/``ACTION_HIGH`` (out-of-box values are
  clipped by the core, NaN or infinite ones raise ``ValueError`` naming the agent), or with
  ``action_mode="discrete"`` (B, N) int64 indices into ``discrete_action_table``;
- ``("prosumer", "reward")`` (B, N, 1) float32;
- ``"state"`` (B, state_dim) float32, ``CommunityCore.state()``, for centralised critics;
- ``"done"``/``"terminated"``/``"truncated"`` (B, 1) and the same under ``"prosumer"`` (B, N, 1);
- ``("prosumer", "info", key)`` (B, N) float32 for every key the core reports (``CommunityCore.info_keys``: the
  ``INFO_KEYS``, and those of a shared battery, loss charges or the safety filter where the environment has them;
  0 after a reset, when nothing has been settled yet) and ``("prosumer", "info", "day")`` (B, N) int64, the day
  being played.

The B communities share one clock: they start their days together and end them together after
``steps_per_episode`` steps, so a reset always resets every community (a partial ``"_reset"`` raises). The day's
end is *terminal* (``terminated`` and ``done`` true, ``truncated`` false): the end-of-day settlement is in the last
reward and nothing is earned after it, as the project's own MAPPO, MADDPG and DQN treat it.

Seeding: ``make_torchrl_env(seed=s)``, ``env.set_seed(s)`` or ``env.reset(seed=s)`` seed the day sampler (and the
training start SoC) of the next reset, like ``CommunityCore.reset(seed=s)``: the same seed gives the same days and,
under the same actions, the same rollout. ``env.rollout(policy=None)`` draws its random actions from torch's
global generator (``torch.manual_seed``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from p2p_marl.config import EnvConfig, check_households_only, make_config
from p2p_marl.envs.discrete import discrete_action_table
from p2p_marl.sim.community import ACTION_DIM, ACTION_HIGH, ACTION_LOW, CommunityCore

GROUP = "prosumer"
DONE_KEYS = ("done", "terminated", "truncated")


class P2PTorchRLEnv(EnvBase):
    """B communities of ``config``'s N households as one batched TorchRL environment (see the module docstring).

    ``config`` and keyword arguments are EnvConfig fields (``make_config``); ``batch_size`` is B; ``seed`` seeds the
    first reset; ``info=False`` leaves the per-step info entries out (a little faster).
    """

    def __init__(self, config: EnvConfig | None = None, *, batch_size: int = 1, seed: int | None = None,
                 device: Any = "cpu", info: bool = True, **kwargs: Any):
        cfg = make_config(config, **kwargs)
        check_households_only(cfg, "the TorchRL environment")
        self.core = CommunityCore(cfg, batch_size=batch_size)  # validates batch_size
        super().__init__(device=device, batch_size=torch.Size([batch_size]))
        self.config = cfg
        self.n_agents = cfg.n_agents
        self.group_map = {GROUP: [f"prosumer_{i}" for i in range(cfg.n_agents)]}
        self.include_info = info
        self.action_table = (discrete_action_table(cfg.n_battery_levels, cfg.n_price_levels, cfg.n_curtail_levels)
                             if cfg.action_mode == "discrete" else None)
        self._pending_seed: int | None = None
        self._make_specs()
        if seed is not None:
            self.set_seed(seed)

    # ------------------------------------------------------------------ specs
    def _make_specs(self) -> None:
        core, b, n, device = self.core, self.batch_size[0], self.n_agents, self.device
        group_shape = torch.Size([b, n])

        def box(low: np.ndarray, high: np.ndarray, shape: tuple[int, ...]) -> Bounded:
            return Bounded(low=torch.as_tensor(low, dtype=torch.float32).expand(shape).clone(),
                           high=torch.as_tensor(high, dtype=torch.float32).expand(shape).clone(),
                           shape=shape, dtype=torch.float32, device=device)

        if self.action_table is None:
            action = box(ACTION_LOW, ACTION_HIGH, (b, n, ACTION_DIM))
        else:
            action = Categorical(n=len(self.action_table), shape=group_shape, dtype=torch.int64, device=device)
        self.full_action_spec = Composite(
            {GROUP: Composite({"action": action}, shape=group_shape, device=device)},
            shape=self.batch_size, device=device)
        self.full_reward_spec = Composite(
            {GROUP: Composite({"reward": Unbounded(shape=(b, n, 1), device=device)}, shape=group_shape,
                              device=device)},
            shape=self.batch_size, device=device)

        def flags(shape: tuple[int, ...]) -> dict[str, Categorical]:
            return {key: Categorical(n=2, shape=shape, dtype=torch.bool, device=device) for key in DONE_KEYS}

        self.full_done_spec = Composite(
            {**flags((b, 1)), GROUP: Composite(flags((b, n, 1)), shape=group_shape, device=device)},
            shape=self.batch_size, device=device)

        group_obs: dict[str, Any] = {"observation": box(core.obs_low, core.obs_high, (b, n, core.obs_dim))}
        if self.include_info:
            info = {key: Unbounded(shape=group_shape, device=device) for key in core.info_keys}
            info["day"] = Bounded(low=0, high=core.profiles.n_days - 1, shape=group_shape, dtype=torch.int64,
                                  device=device)
            group_obs["info"] = Composite(info, shape=group_shape, device=device)
        self.full_observation_spec = Composite(
            {GROUP: Composite(group_obs, shape=group_shape, device=device),
             "state": box(core.state_low, core.state_high, (b, core.state_dim))},
            shape=self.batch_size, device=device)

    # ------------------------------------------------------------------ seeding and reset
    def _set_seed(self, seed: int | None) -> None:
        """Seed the day sampler of the next reset (``CommunityCore.reset(seed=seed)``)."""
        self._pending_seed = seed

    def _reset(self, tensordict: TensorDictBase | None = None, seed: int | None = None,
               **kwargs: Any) -> TensorDictBase:
        if kwargs:
            raise TypeError(f"unexpected reset argument(s) {sorted(kwargs)}; P2PTorchRLEnv.reset takes seed=")
        mask = self._reset_mask(tensordict)
        if mask is not None and not mask.all():
            if not mask.any():  # nothing to reset: the current step, which TorchRL keeps anyway
                return self._output(self.core.observe(), None, None, done=False)
            raise RuntimeError(
                f"partial reset of communities {torch.nonzero(mask).flatten().tolist()} of {self.batch_size[0]}: "
                "the communities of a P2PTorchRLEnv share one clock (they start and end their days together), "
                "so reset all of them or none")
        seed = seed if seed is not None else self._pending_seed
        self._pending_seed = None  # a seed given to set_seed applies to the next reset only
        obs = self.core.reset(seed=seed)
        return self._output(obs, None, None, done=False)

    def _reset_mask(self, tensordict: TensorDictBase | None) -> torch.Tensor | None:
        """The (B,) communities a ``"_reset"`` entry asks to reset, None when there is none (reset all)."""
        if tensordict is None:
            return None
        root = tensordict.get("_reset", None)
        if root is not None:
            return root.reshape(self.batch_size[0], -1).any(-1)
        group = tensordict.get((GROUP, "_reset"), None)
        if group is not None:
            return group.reshape(self.batch_size[0], -1).any(-1)
        return None

    # ------------------------------------------------------------------ step
    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get((GROUP, "action")).detach().cpu().numpy()
        if self.action_table is not None:
            action = self._discrete_to_continuous(action)
        obs, rewards, done, infos = self.core.step(action)
        return self._output(obs, rewards, infos, done=done)

    def _discrete_to_continuous(self, index: np.ndarray) -> np.ndarray:
        n = len(self.action_table)
        if not np.issubdtype(index.dtype, np.integer):  # a float or bool index would fail deep in numpy's indexing
            raise ValueError(f"discrete actions must be integers in [0, {n - 1}], got dtype {index.dtype}")
        bad = (index < 0) | (index >= n)
        if bad.any():
            community, agent = np.argwhere(bad)[0]
            raise ValueError(f"discrete action of agent {agent} (community {community}) must be an integer in "
                             f"[0, {n - 1}], got {index[community, agent]!r}")
        return self.action_table[index]

    def _output(self, obs: np.ndarray, rewards: np.ndarray | None, infos: dict[str, np.ndarray] | None,
                done: bool) -> TensorDictBase:
        """The tensordict of a reset (``rewards`` None) or a step: every entry of the specs but the action."""
        device, core = self.device, self.core
        b, n = self.batch_size[0], self.n_agents
        # Fresh tensors for every output (TorchRL may write into what it is given, e.g. during partial resets).
        group: dict[str, Any] = {"observation": _float32(obs, device),
                                 "done": torch.full((b, n, 1), done, device=device),
                                 "terminated": torch.full((b, n, 1), done, device=device),
                                 "truncated": torch.zeros((b, n, 1), dtype=torch.bool, device=device)}
        if rewards is not None:
            group["reward"] = _float32(rewards, device).unsqueeze(-1)
        if self.include_info:
            if infos is None:  # after a reset: nothing settled yet
                info = {key: torch.zeros((b, n), device=device) for key in core.info_keys}
            else:
                info = {key: _float32(infos[key], device) for key in core.info_keys}
            info["day"] = torch.from_numpy(np.repeat(core.days[:, None], n, axis=1)).to(device)
            group["info"] = TensorDict(info, batch_size=(b, n), device=device)
        return TensorDict({GROUP: TensorDict(group, batch_size=(b, n), device=device),
                           "state": _float32(core.state(obs), device),
                           "done": torch.full((b, 1), done, device=device),
                           "terminated": torch.full((b, 1), done, device=device),
                           "truncated": torch.zeros((b, 1), dtype=torch.bool, device=device)},
                          batch_size=self.batch_size, device=device)


def _float32(values: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(values.astype(np.float32)).to(device)


def make_torchrl_env(config: EnvConfig | None = None, *, batch_size: int | None = None, num_envs: int | None = None,
                     seed: int | None = None, device: Any = "cpu", info: bool = True,
                     **kwargs: Any) -> P2PTorchRLEnv:
    """A ``P2PTorchRLEnv`` of ``batch_size`` (alias ``num_envs``, as in VMAS and BenchMARL) communities, 1 by
    default; keyword arguments are EnvConfig fields. ``seed`` seeds the first reset's day draw."""
    if batch_size is not None and num_envs is not None and batch_size != num_envs:
        raise ValueError(f"batch_size={batch_size} and num_envs={num_envs} disagree; give one of them")
    size = batch_size if batch_size is not None else num_envs if num_envs is not None else 1
    return P2PTorchRLEnv(config, batch_size=size, seed=seed, device=device, info=info, **kwargs)
