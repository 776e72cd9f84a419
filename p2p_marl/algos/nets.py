"""Parts shared by the deep multi-agent learners (MAPPO and MADDPG): networks, inputs, actions, checks.

Both learners share one actor between all N agents of a community. The actor sees an agent's local
observation (forecasts included: the environment's forecaster, the same for every method), optionally followed
by the agent's one-hot identity, and emits a point ``u`` in the box [-1, 1]^3 that ``env_action`` maps onto the
environment's action: the price share ``(u[1] + 1) / 2`` (of [feed-in, retail]), the curtailment share
``max(u[2], 0)``, and for the battery (``battery_action``) one of

- ``power``: the setpoint share ``u[0]`` of the battery's max kW (> 0 charges);
- ``target_soc``: a target state of charge, ``u[0]`` = -1 asks for soc_min, +1 for soc_max; the setpoint is the
  power that reaches the target within the step, which the core then clips to its power limit. The actor holds
  a level by repeating an action, whatever the battery's state;
- ``net_load``: a deviation from the self-consumption setpoint ``s`` (charge the step's PV surplus, discharge
  to cover its net load; ``baselines.rules.self_consumption_setpoint``): ``u[0]`` = 0 plays ``s``, and the two
  halves of the box stretch linearly from it to full discharge (-1) and full charge (+1). The centre of the box,
  where an actor starts, is then the self-consumption rule's battery, which fixed setpoints only approximate
  (every miss is exported at the feed-in tariff or imported at retail), and every setpoint stays reachable;
- ``feasible``: a share of what the battery can do in this step, ``u[0]`` = +1 charges as much as its power and
  headroom allow, -1 discharges as much as its power and stored energy allow, 0 idles. No point of the box asks
  for more than the battery can do, so nothing is clipped (beyond float rounding): near a full (empty) battery
  the whole upper (lower) half of the box shrinks to what is left, rather than most of it asking for the same
  clipped setpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from p2p_marl.baselines.rules import self_consumption_setpoint
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.battery import feasible_power
from p2p_marl.sim.community import ACTION_DIM, CommunityCore
from p2p_marl.training.validation import check_bools


BATTERY_ACTIONS = ("power", "target_soc", "net_load", "feasible")
# How a learner's training reward carries the network penalty (``penalty_training_reward``).
PENALTY_REWARDS = ("share", "community")
TRADE_REWARDS = ("price", "marginal")
# What a learner's training reward is measured against (``baseline_training_reward``).
REWARD_BASELINES = ("zero", "grid_only")


def check_multi_agent_keys(config: Any, section: str) -> None:
    """The keys MAPPO and MADDPG share beyond ranges and network (``p2p_marl.training.validation``):
    ``actor_agent_id``, ``critic_agent_id``, ``cooperative_weight``, ``battery_action``, ``penalty_reward``,
    ``trade_reward``;
    ``ConfigError`` names ``section.key`` and the allowed values."""
    check_bools(config, ("actor_agent_id", "critic_agent_id"), section)
    if config.battery_action not in BATTERY_ACTIONS:
        raise ConfigError(f"{section}.battery_action must be one of {list(BATTERY_ACTIONS)}, "
                          f"got {config.battery_action!r}")
    w = config.cooperative_weight
    if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0):
        raise ConfigError(f"{section}.cooperative_weight must be null or a number in [0.0, 1.0], got {w!r}")
    if config.trade_reward not in TRADE_REWARDS:
        raise ConfigError(f"{section}.trade_reward must be one of {list(TRADE_REWARDS)}, got {config.trade_reward!r}")
    check_penalty_reward(config, section)


def check_penalty_reward(config: Any, section: str) -> None:
    """``ConfigError`` naming ``section.penalty_reward`` unless it is one of ``PENALTY_REWARDS``."""
    if config.penalty_reward not in PENALTY_REWARDS:
        raise ConfigError(f"{section}.penalty_reward must be one of {list(PENALTY_REWARDS)}, "
                          f"got {config.penalty_reward!r}")


def training_env(env_config: EnvConfig, cooperative_weight: float | None, voltage_margin_pu: float = 0.0,
                 section: str = "algo") -> EnvConfig:
    """The environment a learner trains on: ``env_config``, with its ``cooperative_weight`` replaced when the
    learner sets one (the evaluated community cost is the same whatever the weight), and its voltage band
    narrowed by ``voltage_margin_pu`` on both sides: the training reward's network penalty (and an imitation
    teacher's plans) then keep that margin from the limits the bill is checked against. The observations do not
    depend on the band, so the trained policy plays the real community as it trained. A margin of ``v_max_pu -
    v_slack_pu`` or more puts the idle feeder (every bus at the slack voltage) on or above the narrowed band's top:
    then every kWh exported is penalised in training."""
    changes: dict[str, float] = {}
    if cooperative_weight is not None:
        changes["cooperative_weight"] = float(cooperative_weight)
    if voltage_margin_pu > 0.0:
        if env_config.safety_filter:  # the filter reads the band too: it would keep the margin in training only
            raise ConfigError(f"{section}.voltage_margin_pu={voltage_margin_pu!r} with env.safety_filter=true: the "
                              "filter would keep the narrowed band in training and the real one where the policy is "
                              f"scored; set {section}.voltage_margin_pu=0 or env.safety_filter=false")
        v_min_pu, v_max_pu = env_config.v_min_pu + voltage_margin_pu, env_config.v_max_pu - voltage_margin_pu
        if not v_min_pu < 1.0 < v_max_pu:  # the narrowed band must still hold the nominal voltage inside
            limit_pu = min(1.0 - env_config.v_min_pu, env_config.v_max_pu - 1.0)
            raise ConfigError(f"{section}.voltage_margin_pu={voltage_margin_pu!r} is out of range for the voltage band "
                              f"[{env_config.v_min_pu}, {env_config.v_max_pu}] p.u.; allowed [0, {limit_pu:.4g})")
        changes["v_min_pu"], changes["v_max_pu"] = v_min_pu, v_max_pu
    return env_config.replace(**changes) if changes else env_config


def penalty_training_reward(reward: np.ndarray, penalty: np.ndarray, cooperative_weight: float,
                            penalty_reward: str, penalty_weight: float = 1.0) -> np.ndarray:
    """The training reward (B, N) of a step with the network penalty borne as ``penalty_reward`` says, and
    ``penalty_weight`` times as heavy as billed.

    ``"share"``: the environment's reward, in which each household pays its allocated share of the step's penalty
    (``penalty``, the infos' (B, N)), mixed with the community mean by ``cooperative_weight`` like the rest of
    the bill. ``"community"``: each household bears the community's whole penalty of the step instead, so the
    penalty its own export causes, which the share spreads over all exporters, is its own (a Pigouvian signal
    for the feeder's externality); the rest of the bill is as before. The evaluated cost is the same either way,
    but the training return (``train/episode_return``) is not comparable between the two: with "community" every
    agent's return carries the whole penalty, N times what the community pays per agent.

    ``penalty_weight`` > 1 makes the feeder's limits weigh more in training than on the bill, towards the hard
    limits the optimum keeps (it plans within them); 1 leaves the reward as above, to the last bit.
    """
    if penalty_reward == "share" and penalty_weight == 1.0:
        return reward
    w = cooperative_weight
    billed = (1.0 - w) * penalty + w * penalty.mean(axis=-1, keepdims=True)
    borne = billed if penalty_reward == "share" else penalty.sum(axis=-1, keepdims=True)
    return reward + billed - penalty_weight * borne  # x 1.0 is exact: weight 1 gives the reward above


def check_trade_reward(trade_reward: str, core: CommunityCore, section: str) -> None:
    """``ConfigError`` for ``trade_reward="marginal"`` on a community with a shared battery: the battery's P2P
    trades and grid flows are part of the market, which the households' marginal valuation leaves out."""
    if trade_reward == "marginal" and core.has_shared_battery:
        raise ConfigError(f"{section}.trade_reward='marginal' needs a community without a shared battery "
                          f"(shared_battery_kwh={core.config.shared_battery_kwh!r}); use 'price'")


def trade_training_reward(reward: np.ndarray, infos: dict[str, np.ndarray], cooperative_weight: float,
                          trade_reward: str) -> np.ndarray:
    """The training reward (B, N) of a step with the P2P trades valued as ``trade_reward`` says.

    ``"price"``: as billed, at the clearing price. ``"marginal"``: each household's P2P purchases and sales are
    valued at the community's marginal grid price of the step instead: retail when the community imports more
    than it exports, else the feed-in tariff. That is what one more kWh sold or bought by a household is worth to
    the community: in a step the community exports, a kWh sold to a neighbour displaces a kWh the grid would
    have taken at the feed-in tariff, not a neighbour's retail import, though the clearing price pays the seller
    more (and dilutes the other sellers' share). The P2P payments sum to zero over the households, and so do
    their marginal values, so the sum of the rewards is unchanged. Not for a community with a shared battery,
    which trades in the market too (``check_trade_reward``).
    """
    if trade_reward == "price":
        return reward
    w = cooperative_weight
    community_exports = (infos["grid_export_kwh"].sum(axis=-1, keepdims=True)
                         > infos["grid_import_kwh"].sum(axis=-1, keepdims=True))
    marginal_price = np.where(community_exports, infos["feed_in_price"], infos["retail_price"])
    billed = infos["p2p_payment"] - infos["p2p_revenue"]
    valued = (infos["p2p_buy_kwh"] - infos["p2p_sell_kwh"]) * marginal_price
    mixed = (1.0 - w) * (billed - valued) + w * (billed - valued).mean(axis=-1, keepdims=True)
    return reward + mixed


def baseline_training_reward(reward: np.ndarray, infos: dict[str, np.ndarray], cooperative_weight: float,
                             reward_baseline: str) -> np.ndarray:
    """The training reward (B, N) of a step measured against ``reward_baseline``.

    ``"zero"``: as it is, minus the bill. ``"grid_only"``: plus each household's grid-only bill of the step (its
    load less its PV, bought at retail or sold at the feed-in tariff: ``max(load - pv, 0) * retail - max(pv - load,
    0) * feed_in``, mixed by ``cooperative_weight`` like the bill), so that the reward is the step's saving against
    grid-only. That bill depends on the step's load, PV and prices alone, never on an action, so it moves every
    policy's expected return by the same amount and leaves the best policy where it was; what it takes out is the
    weather's share of the return (a cloudy day's bill is large whatever the batteries do), which otherwise
    reaches every advantage as noise the critic cannot foresee from persistence forecasts (an input-driven
    baseline: Mao et al., "Variance reduction for reinforcement learning in input-driven environments", 2019).
    The training return (``train/episode_return``) is then a saving, not comparable with the bill's.
    """
    if reward_baseline == "zero":
        return reward
    net_kwh = infos["load_kwh"] - infos["pv_kwh"]
    grid_only_bill = (np.maximum(net_kwh, 0.0) * infos["retail_price"]
                      + np.minimum(net_kwh, 0.0) * infos["feed_in_price"])
    w = cooperative_weight
    return reward + (1.0 - w) * grid_only_bill + w * grid_only_bill.mean(axis=-1, keepdims=True)


def infeasible_setpoint_kwh(actions: np.ndarray, infos: dict[str, np.ndarray], core: CommunityCore) -> np.ndarray:
    """(B, N) how far each household's battery setpoint of a step (``actions``, the (B, N, 3) it was given) lay
    outside what its battery could do [kWh at the meter]: the energy asked for minus the energy charged (or
    discharged) once the core had clipped it to power and state-of-charge limits. 0 without a battery."""
    requested_kwh = np.clip(actions[..., 0], -1.0, 1.0) * core.battery.max_kw * core.dt_h
    return np.abs(requested_kwh - (infos["battery_charge_kwh"] - infos["battery_discharge_kwh"]))


def infeasible_training_reward(reward: np.ndarray, actions: np.ndarray, infos: dict[str, np.ndarray],
                               core: CommunityCore, price_per_kwh: float) -> np.ndarray:
    """The training reward (B, N) of a step less ``price_per_kwh`` for each kWh of ``infeasible_setpoint_kwh``
    (each household's own, not mixed by the cooperative weight); the reward itself at price 0."""
    if price_per_kwh == 0.0:
        return reward
    return reward - price_per_kwh * infeasible_setpoint_kwh(actions, infos, core)


class InputScaling(nn.Module):
    """x -> clip((x - mean) / std, -clip, clip) per feature, with fixed statistics (buffers, so they travel with
    the network's state dict and its evaluation copy). The observations' features span very different ranges (a
    household's mean PV forecast over the day is a few hundredths of the power scale, the time of day spans
    [-1, 1]); at unit scale each moves the first layer as much as the others."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, clip: float = 5.0):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-self.clip, self.clip)


def input_statistics(env_config: EnvConfig, seed: int, days: int = 64, min_std: float = 1e-2
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-feature mean and standard deviation (at least ``min_std``) of the observations (``"obs"``,
    (obs_dim,)) and global states (``"state"``, (state_dim,)) met on ``days`` training days under uniformly
    random actions, drawn from ``seed``: the statistics of ``InputScaling``."""
    core = CommunityCore(env_config.replace(split="train"), batch_size=days)
    rng = np.random.default_rng(seed)
    obs = core.reset(seed=int(rng.integers(2 ** 63)))
    observations, states = [], []
    while not core.done:
        observations.append(obs.reshape(-1, core.obs_dim))
        states.append(core.state(obs))
        obs, *_ = core.step(rng.uniform(-1.0, 1.0, size=obs.shape[:2] + (ACTION_DIM,)))
    return {name: (np.concatenate(values).mean(axis=0), np.maximum(np.concatenate(values).std(axis=0), min_std))
            for name, values in (("obs", observations), ("state", states))}


def with_identity_columns(mean: np.ndarray, std: np.ndarray, n_agents: int, enabled: bool
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Statistics extended by the unscaled (mean 0, std 1) one-hot identity columns ``with_agent_id`` appends."""
    if not enabled:
        return mean, std
    return np.concatenate([mean, np.zeros(n_agents)]), np.concatenate([std, np.ones(n_agents)])


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: type[nn.Module],
        out_gain: float) -> nn.Sequential:
    """A fully connected network with orthogonal weights (gain sqrt(2) in hidden layers) and zero biases;
    a small ``out_gain`` starts a policy near the centre of its action box."""
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [_init(nn.Linear(fan_in, fan_out), math.sqrt(2.0)), activation()]
    layers.append(_init(nn.Linear(sizes[-1], out_dim), out_gain))
    return nn.Sequential(*layers)


class WindowConvolution(nn.Module):
    """The forecast window's profile read by a 1-D convolution, for the layers after it: inputs (..., in_dim) whose
    columns ``start`` .. ``start + 2 * bins`` are the household's load bins then its PV bins (``forecast_bins`` of
    ``observation_features``, in lead order) -> (..., in_dim - 2 * bins + channels * bins), the other columns
    followed by two tanh convolutions of ``channels`` filters over the bins (load and PV as two input channels,
    kernel 3 with zero padding, so every bin keeps its place and the window's end, cut at the day's end, reads as
    zeros). The same filter reads every lead: a shape (a surplus two bins wide, say) is recognised wherever it lies
    in the window, which the dense layer alone must learn lead by lead."""

    def __init__(self, start: int, bins: int, channels: int):
        super().__init__()
        self.start, self.bins, self.channels = start, bins, channels
        self.convolution = nn.Sequential(nn.Conv1d(2, channels, 3, padding=1), nn.Tanh(),
                                         nn.Conv1d(channels, channels, 3, padding=1), nn.Tanh())

    def out_dim(self, in_dim: int) -> int:
        return in_dim - 2 * self.bins + self.channels * self.bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = self.start + 2 * self.bins
        window = x[..., self.start:end].reshape(-1, 2, self.bins)
        shapes = self.convolution(window).reshape(*x.shape[:-1], self.channels * self.bins)
        return torch.cat([x[..., :self.start], x[..., end:], shapes], dim=-1)


class RecurrentActor(nn.Module):
    """A shared actor with a memory of the day so far: a tanh layer of ``hidden_sizes[0]`` units, a GRU of as many
    beside it, then the rest of ``hidden_sizes`` and the output layer over both, the layer's output and the GRU's
    (``mlp``'s initialisation, and CleanRL's for the GRU: orthogonal weights, zero biases). Without the GRU's
    columns the head is the feed-forward actor's rest: the memory adds to the step's own view, it does not have to
    carry it.

    Each household's memory starts empty at the day's start and carries what the observations alone do not: how
    the day's load and PV so far compare with the persistence forecasts, which are the previous day's. ``forward``
    reads whole days (T, M, in_dim), one column per agent, from an empty memory; ``step`` one step of every agent
    (..., in_dim) from ``memory`` (None at the day's start), returning the output and the next memory.
    """

    def __init__(self, in_dim: int, hidden_sizes: Sequence[int], out_dim: int, out_gain: float):
        super().__init__()
        width = hidden_sizes[0]
        self.encoder = nn.Sequential(_init(nn.Linear(in_dim, width), math.sqrt(2.0)), nn.Tanh())
        self.gru = nn.GRU(width, width)
        for name, parameter in self.gru.named_parameters():
            if name.startswith("bias"):
                nn.init.zeros_(parameter)
            else:
                nn.init.orthogonal_(parameter, 1.0)
        self.head = mlp(2 * width, hidden_sizes[1:], out_dim, nn.Tanh, out_gain)

    def forward(self, days: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(days)
        memory, _ = self.gru(encoded)
        return self.head(torch.cat([encoded, memory], dim=-1))

    def step(self, x: torch.Tensor, memory: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.encoder(x)
        out, memory = self.gru(encoded.reshape(1, -1, encoded.shape[-1]), memory)
        return self.head(torch.cat([encoded, out[0].reshape(encoded.shape)], dim=-1)), memory


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def actor_input(obs: torch.Tensor, agent_id: bool, all_households: bool = False) -> torch.Tensor:
    """The shared actor's input for observations (..., N, D): each agent's own observation, then with
    ``all_households`` every household's (N * D, the same for the N agents of a community: an ablation of
    centralised execution, not a decentralised policy), then with ``agent_id`` its one-hot identity."""
    if all_households:
        everyone = obs.flatten(-2).unsqueeze(-2).expand(*obs.shape[:-1], obs.shape[-2] * obs.shape[-1])
        obs = torch.cat([obs, everyone], dim=-1)
    return with_agent_id(obs, agent_id)


def with_agent_id(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """Append each agent's one-hot identity to per-agent inputs (..., N, D) -> (..., N, D + N) when enabled."""
    if not enabled:
        return x
    n_agents = x.shape[-2]
    identity = torch.eye(n_agents, dtype=x.dtype, device=x.device).expand(*x.shape[:-1], n_agents)
    return torch.cat([x, identity], dim=-1)


def env_action(u: np.ndarray, core: CommunityCore, obs: np.ndarray, battery_action: str) -> np.ndarray:
    """Map points of the actor's box [-1, 1]^3 (B, N, 3) onto the core's (setpoint share, price share, curtailment
    share) for the core's current state and this step's observations ``obs`` (B, N, obs_dim). Curtailment is the
    positive part of the third coordinate, so the middle of the box, where an actor starts, uses all its PV, and
    the lower half of the box is one action: no curtailment."""
    if battery_action == "power":
        setpoint = u[..., 0]
    elif battery_action == "target_soc":
        setpoint = target_soc_setpoint(u[..., 0], core)
    elif battery_action == "net_load":
        setpoint = net_load_setpoint(u[..., 0], self_consumption_setpoint(core, obs))
    elif battery_action == "feasible":
        setpoint = feasible_setpoint(u[..., 0], core)
    else:
        raise ValueError(f"battery_action must be one of {list(BATTERY_ACTIONS)}, got {battery_action!r}")
    return np.stack([setpoint, 0.5 * (u[..., 1] + 1.0), np.maximum(u[..., 2], 0.0)], axis=-1)


def net_load_setpoint(u: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The setpoint share that the ``net_load`` coordinate ``u`` in [-1, 1] asks for around the self-consumption
    setpoint ``base`` in [-1, 1]: ``base`` at 0, linear from there to -1 and to +1."""
    return base + u * np.where(u > 0.0, 1.0 - base, 1.0 + base)


def net_load_box(setpoint: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The inverse of ``net_load_setpoint``: the coordinate in [-1, 1] that plays ``setpoint`` around ``base``
    (0 where the setpoint is ``base``, also when ``base`` sits at a bound)."""
    gap = setpoint - base
    span = np.where(gap > 0.0, 1.0 - base, 1.0 + base)
    return np.divide(gap, span, out=np.zeros_like(gap), where=span > 0.0)


def feasible_range(core: CommunityCore) -> tuple[np.ndarray, np.ndarray]:
    """(charge, discharge) setpoint shares (B, N) >= 0 the batteries can follow in this step: their power limits
    and what the state of charge allows (0 without a battery)."""
    battery = core.battery
    charge_kw, _ = feasible_power(battery.max_kw, core.energy_kwh, battery, core.dt_h)
    _, discharge_kw = feasible_power(-battery.max_kw, core.energy_kwh, battery, core.dt_h)
    return tuple(np.divide(kw, battery.max_kw, out=np.zeros_like(kw), where=battery.max_kw > 0)
                 for kw in (charge_kw, discharge_kw))


def feasible_setpoint(u: np.ndarray, core: CommunityCore) -> np.ndarray:
    """The setpoint share that the ``feasible`` coordinate ``u`` in [-1, 1] asks for: ``u`` times the share the
    battery can charge (u > 0) or discharge (u < 0) in this step."""
    charge, discharge = feasible_range(core)
    return u * np.where(u > 0.0, charge, discharge)


def feasible_box(setpoint: np.ndarray, core: CommunityCore) -> np.ndarray:
    """The inverse of ``feasible_setpoint`` for a setpoint the battery can follow: the coordinate in [-1, 1] that
    plays it (0 where the battery can do nothing that way)."""
    charge, discharge = feasible_range(core)
    span = np.where(setpoint > 0.0, charge, discharge)
    return np.clip(np.divide(setpoint, span, out=np.zeros_like(setpoint), where=span > 0.0), -1.0, 1.0)


def target_soc_setpoint(u: np.ndarray, core: CommunityCore) -> np.ndarray:
    """The setpoint share (B, N) that moves each battery from its stored energy to the target
    ``soc_min + (u + 1) / 2 * (soc_max - soc_min)`` of its capacity in one step, limited to [-1, 1]; 0 without a
    battery. Charging stores ``charge_efficiency`` of the meter energy, discharging delivers
    ``discharge_efficiency`` of the stored energy (``p2p_marl.sim.battery``)."""
    battery, dt_h = core.battery, core.dt_h
    target_kwh = battery.min_energy_kwh + 0.5 * (u + 1.0) * (battery.max_energy_kwh - battery.min_energy_kwh)
    gap_kwh = target_kwh - core.energy_kwh
    power_kw = np.where(gap_kwh > 0.0, gap_kwh / (battery.charge_efficiency * dt_h),
                        gap_kwh * battery.discharge_efficiency / dt_h)
    share = np.divide(power_kw, battery.max_kw, out=np.zeros_like(power_kw), where=battery.max_kw > 0)
    return np.minimum(np.maximum(share, -1.0), 1.0)


class ActorPolicy:
    """The deterministic evaluation policy of a trained shared actor (see ``p2p_marl.baselines.policy``).

    ``actor`` maps its inputs (``actor_input`` of observations (B, N, obs_dim)) to points of [-1, 1]^3; it is a
    private CPU copy, so the policy stays fixed while training goes on and acts without a GPU.
    """

    def __init__(self, name: str, actor: nn.Module, agent_id: bool, battery_action: str,
                 all_households: bool = False):
        self.name = name
        self.actor = actor.cpu().eval()
        self.agent_id = agent_id
        self.battery_action = battery_action
        self.all_households = all_households

    def reset(self, core: CommunityCore) -> None:
        pass

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        return env_action(self.box_point(obs), core, obs, self.battery_action)

    def box_point(self, obs: np.ndarray) -> np.ndarray:
        """The actor's deterministic output in [-1, 1]^3 for observations (B, N, obs_dim): (B, N, 3)."""
        with torch.no_grad():
            x = actor_input(torch.as_tensor(obs, dtype=torch.float32), self.agent_id, self.all_households)
            return self._box_point(x).numpy().astype(np.float64)

    def _box_point(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(x)


class ActorEnsemble:
    """Several trained shared actors played as one policy: each step the mean of their box points (``box_point``)
    is played as one actor's would be. An ablation, not a learner: the seeds of a learner train apart, and their
    mean costs their training time together; where it plays better than its members, part of their errors is
    each seed's own rather than what their observation cannot tell (README, "One actor from five seeds"). The
    members must observe alike (one ``observation_settings``) and read the box alike (one ``battery_action``)."""

    def __init__(self, name: str, members: list[ActorPolicy]):
        if not members or not all(isinstance(member, ActorPolicy) for member in members):
            raise ValueError(f"an ensemble takes one or more trained actors (ActorPolicy), got {members!r}")
        settings = {repr(getattr(member, "observation_settings", {})) for member in members}
        actions = {member.battery_action for member in members}
        if len(settings) > 1 or len(actions) > 1:
            raise ValueError(f"an ensemble's actors must observe alike and read the box alike; got observation "
                             f"settings {sorted(settings)} and battery actions {sorted(actions)}")
        self.name, self.members = name, list(members)
        self.battery_action = members[0].battery_action
        self.observation_settings = getattr(members[0], "observation_settings", {})

    def reset(self, core: CommunityCore) -> None:
        for member in self.members:
            member.reset(core)

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        box = np.mean([member.box_point(obs) for member in self.members], axis=0)
        return env_action(box, core, obs, self.battery_action)


class RecurrentActorPolicy(ActorPolicy):
    """The deterministic evaluation policy of a ``RecurrentActor`` (``tanh`` of its output): ``reset`` empties
    every household's memory at the day's start, and each ``act`` carries it one step on. Its ``actor`` is the
    ``RecurrentActor`` itself (pre-squash outputs; ``step`` for one step, ``forward`` for whole days)."""

    def __init__(self, name: str, actor: nn.Module, agent_id: bool, battery_action: str,
                 all_households: bool = False):
        super().__init__(name, actor, agent_id, battery_action, all_households)
        self.memory: torch.Tensor | None = None

    def reset(self, core: CommunityCore) -> None:
        self.memory = None

    def _box_point(self, x: torch.Tensor) -> torch.Tensor:
        u, self.memory = self.actor.step(x, self.memory)
        return torch.tanh(u)


# The linear learning-rate schedule's keys (lr_end_fraction, lr_decay_steps) as MAPPO, MADDPG and DQN validate them.
LR_SCHEDULE_INTEGERS = {"lr_decay_steps"}
LR_SCHEDULE_RANGES = (("lr_end_fraction", 0.0, 1.0, True, True), ("lr_decay_steps", 1, 10**13, True, True))


def set_learning_rates(scale: float, *optimizers: tuple[torch.optim.Optimizer, float]) -> None:
    """Each optimiser's step size set to its base rate x ``scale`` (a learning-rate schedule's factor)."""
    for optimizer, base_lr in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = base_lr * scale


def episode_metrics(rewards: np.ndarray, costs: np.ndarray) -> dict[str, float]:
    """``episode_return`` (mean over agents and communities of the summed reward) and ``community_cost``
    (mean over communities of the episode's summed cost) from one episode's (T, B, N) arrays."""
    return {"episode_return": float(rewards.sum(axis=0).mean()),
            "community_cost": float(costs.sum(axis=(0, 2)).mean())}


def rng_state(rng: np.random.Generator, generator: torch.Generator) -> dict[str, Any]:
    return {"numpy": rng.bit_generator.state, "torch": generator.get_state()}


def load_rng_state(rng: np.random.Generator, generator: torch.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    generator.set_state(state["torch"])
