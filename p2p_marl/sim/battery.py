"""Home battery: power limits, efficiencies and state-of-charge bounds, batched over (B, N).

Power is measured at the household's meter (kW). Over one step of ``dt_h`` hours:

    stored energy gained = charge_efficiency * charge_kw * dt_h
    stored energy lost   = discharge_kw * dt_h / discharge_efficiency

A setpoint that would leave [soc_min, soc_max] * capacity, or exceed the power limit, is clipped to the
nearest feasible value, so a battery never creates or destroys energy beyond its losses.
A household without a battery has ``capacity_kwh = 0`` and ``max_kw = 0``.

At the end of an episode the change of stored energy is settled (``end_settlement``): a shortfall below the
start is bought back at ``refill_price / charge_efficiency`` per stored kWh (the meter energy that refilling
takes), a surplus sold at ``surplus_price * discharge_efficiency`` (the meter energy that emptying it gives).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class BatteryParams:
    capacity_kwh: np.ndarray  # (N,)
    max_kw: np.ndarray  # (N,) charge and discharge limit at the meter
    charge_efficiency: float
    discharge_efficiency: float
    soc_min: float  # fraction of capacity
    soc_max: float

    # The SoC band in kWh, computed once: the simulator asks for it twice every step.
    @cached_property
    def min_energy_kwh(self) -> np.ndarray:
        return self.soc_min * self.capacity_kwh

    @cached_property
    def max_energy_kwh(self) -> np.ndarray:
        return self.soc_max * self.capacity_kwh


def feasible_power(setpoint_kw: np.ndarray, energy_kwh: np.ndarray, battery: BatteryParams, dt_h: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Clip a signed setpoint (kW, > 0 charges) to power and SoC limits; returns (charge_kw, discharge_kw) >= 0."""
    headroom_kwh = np.maximum(battery.max_energy_kwh - energy_kwh, 0.0)
    available_kwh = np.maximum(energy_kwh - battery.min_energy_kwh, 0.0)
    max_charge_kw = np.minimum(battery.max_kw, headroom_kwh / (battery.charge_efficiency * dt_h))
    max_discharge_kw = np.minimum(battery.max_kw, available_kwh * battery.discharge_efficiency / dt_h)
    # np.minimum(np.maximum(...)) is np.clip without its Python-level overhead, which dominates on the small
    # arrays of a single community; the numbers are the same.
    charge_kw = np.minimum(np.maximum(setpoint_kw, 0.0), max_charge_kw)
    discharge_kw = np.minimum(np.maximum(-setpoint_kw, 0.0), max_discharge_kw)
    return charge_kw, discharge_kw


def next_energy(energy_kwh: np.ndarray, charge_kw: np.ndarray, discharge_kw: np.ndarray, battery: BatteryParams,
                dt_h: float) -> np.ndarray:
    """Stored energy after one step; clipped to the SoC band only to absorb floating-point round-off."""
    energy = energy_kwh + (battery.charge_efficiency * charge_kw - discharge_kw / battery.discharge_efficiency) * dt_h
    return np.minimum(np.maximum(energy, battery.min_energy_kwh), battery.max_energy_kwh)


def end_settlement(start_kwh: np.ndarray, end_kwh: np.ndarray, battery: BatteryParams, refill_price_per_kwh: float,
                   surplus_price_per_kwh: float) -> np.ndarray:
    """Money each battery owes (> 0) or is owed (< 0) for ending the episode below or above its start energy."""
    shortfall_kwh = np.maximum(start_kwh - end_kwh, 0.0)
    surplus_kwh = np.maximum(end_kwh - start_kwh, 0.0)
    return (refill_price_per_kwh / battery.charge_efficiency * shortfall_kwh
            - surplus_price_per_kwh * battery.discharge_efficiency * surplus_kwh)
