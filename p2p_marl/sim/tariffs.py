"""Grid tariffs per step of the day: a time-of-use retail price and a flat feed-in tariff (money per kWh)."""

from __future__ import annotations

import numpy as np

from p2p_marl.config import EnvConfig


def time_of_use_prices(cfg: EnvConfig) -> tuple[np.ndarray, np.ndarray]:
    """(retail, feed_in) per step of a day, each shaped (steps_per_day,).

    A step is classified by its midpoint hour: off-peak from ``offpeak_start_h`` over midnight to
    ``offpeak_end_h``, peak in [``peak_start_h``, ``peak_end_h``), shoulder otherwise.
    """
    midpoint_h = (np.arange(cfg.steps_per_day) + 0.5) * cfg.dt_h
    offpeak = (midpoint_h >= cfg.offpeak_start_h) | (midpoint_h < cfg.offpeak_end_h)
    peak = (midpoint_h >= cfg.peak_start_h) & (midpoint_h < cfg.peak_end_h)
    retail = np.where(offpeak, cfg.retail_offpeak_per_kwh,
                      np.where(peak, cfg.retail_peak_per_kwh, cfg.retail_shoulder_per_kwh))
    return retail.astype(np.float64), np.full(cfg.steps_per_day, cfg.feed_in_per_kwh, dtype=np.float64)


def end_settlement_prices(cfg: EnvConfig, retail_per_kwh: np.ndarray, feed_in_per_kwh: np.ndarray
                          ) -> tuple[float, float]:
    """(refill, surplus) prices per kWh at the meter of the end-of-episode settlement of stored energy.

    Defaults: the day's highest retail price to refill a shortfall (so no schedule gains by ending below its
    start energy) and the lowest feed-in tariff for a surplus (so energy left over is worth no more than
    exporting it)."""
    refill = cfg.end_refill_price_per_kwh
    surplus = cfg.end_surplus_price_per_kwh
    return (float(retail_per_kwh.max()) if refill is None else float(refill),
            float(feed_in_per_kwh.min()) if surplus is None else float(surplus))
