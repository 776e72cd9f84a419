"""Hand-written benchmark policies: grid-only, battery self-consumption, time-of-use aware, zero-intelligence,
and the floor: idle batteries trading at the mid price, and uniformly random actions.

None of the rules curtails PV. Bidding: a household that will buy bids its outside option, the retail price
(share 1), one that will sell asks the feed-in tariff (share 0). Under the uniform k-double auction every
crossing trade then clears at ``k * retail + (1 - k) * feed_in``, which both sides prefer to the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from p2p_marl.baselines.policy import PolicyWrapper
from p2p_marl.sim.community import ACTION_DIM, ACTION_HIGH, ACTION_LOW, OBS_FEATURES, CommunityCore

_LOAD, _PV = OBS_FEATURES.index("load"), OBS_FEATURES.index("pv")


def metered_load_pv_kw(core: CommunityCore, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(load_kw, pv_kw) of the step, read back from the normalised observation."""
    return obs[..., _LOAD] * core.power_scale_kw, obs[..., _PV] * core.power_scale_kw


def truthful_price_share(load_kw: np.ndarray, pv_kw: np.ndarray, battery_kw: np.ndarray,
                         curtail_share: np.ndarray | float = 0.0) -> np.ndarray:
    """The truthful bid (B, N): retail (share 1) for a household whose net power at the meter after its battery
    (``battery_kw`` > 0 charging) and curtailment is positive (it will buy), the feed-in tariff (share 0)
    otherwise."""
    net_kw = load_kw - pv_kw * (1.0 - curtail_share) + battery_kw
    return (net_kw > 0).astype(np.float64)


def _action(setpoint_share: np.ndarray, price_share: np.ndarray) -> np.ndarray:
    """(B, N, 3) actions from setpoint and price shares, with all PV used (no curtailment)."""
    return np.stack([setpoint_share, price_share, np.zeros_like(setpoint_share)], axis=-1)


def battery_share(core: CommunityCore, power_kw: np.ndarray) -> np.ndarray:
    """The setpoint share (B, N) in [-1, 1] of battery power ``power_kw`` (> 0 charging); 0 without a battery."""
    max_kw = core.battery.max_kw
    return np.divide(power_kw, max_kw, out=np.zeros_like(power_kw), where=max_kw > 0).clip(-1.0, 1.0)


def self_consumption_setpoint(core: CommunityCore, obs: np.ndarray) -> np.ndarray:
    """The battery setpoint share (B, N) that charges the step's PV surplus and discharges to cover its net load,
    within the battery's power (0 without a battery)."""
    load_kw, pv_kw = metered_load_pv_kw(core, obs)
    return battery_share(core, pv_kw - load_kw)


class GridOnly:
    """Batteries idle and no P2P trade: buyers bid the feed-in tariff, sellers ask retail, so nothing crosses."""

    name = "grid_only"

    def reset(self, core: CommunityCore) -> None:
        pass

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        load_kw, pv_kw = metered_load_pv_kw(core, obs)
        price = (load_kw - pv_kw <= 0).astype(np.float64)
        return _action(np.zeros_like(price), price)


class SelfConsumption:
    """Charge the battery from PV surplus, discharge it to cover load; truthful bids."""

    name = "rule_self_consumption"

    def reset(self, core: CommunityCore) -> None:
        pass

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        load_kw, pv_kw = metered_load_pv_kw(core, obs)
        setpoint = self_consumption_setpoint(core, obs)
        return _action(setpoint, truthful_price_share(load_kw, pv_kw, setpoint * core.battery.max_kw))


class TimeOfUse:
    """Self-consumption that respects the tariff and the end-of-day settlement: in the cheapest hours before the
    evening peak it never discharges and tops the battery up from the grid towards ``target_soc``; in the
    cheapest hours after the peak it refills the battery from the grid to its start energy, so that the
    settlement (charged at the highest retail price) costs nothing; otherwise it follows self-consumption."""

    name = "rule_time_of_use"

    def __init__(self, target_soc: float = 0.5):
        self.target_soc = target_soc

    def reset(self, core: CommunityCore) -> None:
        pass

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        load_kw, pv_kw = metered_load_pv_kw(core, obs)
        t = min(core.t, core.config.steps_per_day - 1)
        cheapest = core.retail_per_kwh[t] <= core.retail_per_kwh.min()
        before_peak = t * core.dt_h < core.config.peak_start_h
        power_kw = pv_kw - load_kw
        if cheapest:
            target_kwh = self.target_soc * core.battery.capacity_kwh if before_peak else core.start_energy_kwh
            missing_kwh = np.maximum(target_kwh - core.energy_kwh, 0.0)
            grid_charge_kw = missing_kwh / (core.battery.charge_efficiency * core.dt_h)
            power_kw = np.maximum(power_kw, 0.0) + grid_charge_kw
        setpoint = battery_share(core, power_kw)
        return _action(setpoint, truthful_price_share(load_kw, pv_kw, setpoint * core.battery.max_kw))


@dataclass
class _Seeded:
    """A policy that draws random numbers from its own generator, seeded at construction."""

    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def reset(self, core: CommunityCore) -> None:
        pass


@dataclass
class ZeroIntelligence(_Seeded):
    """Self-consumption battery with random limit prices (Gode & Sunder's zero-intelligence traders)."""

    name: str = "zero_intelligence"

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        setpoint = self_consumption_setpoint(core, obs)
        return _action(setpoint, self._rng.uniform(0.0, 1.0, size=setpoint.shape))


class IdleMidPrice:
    """The floor without a battery schedule: batteries idle, every household bids and asks the step's mid price,
    so every crossing trade clears peer-to-peer at that price."""

    name = "idle_mid_price"

    def reset(self, core: CommunityCore) -> None:
        pass

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        shape = obs.shape[:2]
        return _action(np.zeros(shape), np.full(shape, 0.5))


@dataclass
class RandomActions(_Seeded):
    """The floor of doing anything at all: every action drawn uniformly from the action box, curtailment too."""

    name: str = "random"

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        return self._rng.uniform(ACTION_LOW, ACTION_HIGH, size=(*obs.shape[:2], ACTION_DIM))


class TruthfulBid(PolicyWrapper):
    """A policy's battery setpoint and curtailment with the truthful bid (``truthful_price_share``) in place of its
    own price: a diagnostic of how much of a learner's play its bids decide (``evaluate.py truthful_bid=true``).
    The bid reads the battery power the core will apply (the setpoint within the battery's limits, as the step
    clips it), not the setpoint asked for. It observes as the policy does (``PolicyWrapper``)."""

    def __init__(self, policy):
        super().__init__(policy, f"{policy.name}+truthful_bid")

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        action = np.array(self.policy.act(core, obs), dtype=np.float64)
        load_kw, pv_kw = metered_load_pv_kw(core, obs)
        charge_kw, discharge_kw = core.battery_power_kw(action)
        curtail_share = np.clip(action[..., 2], 0.0, 1.0)
        action[..., 1] = truthful_price_share(load_kw, pv_kw, charge_kw - discharge_kw, curtail_share)
        return action
