"""Forecasts of every household's load and PV: what the observations and the MPC benchmark know of the future.

At step t of a day, the steps before t and step t itself are known: step t's load and PV are metered while it is
dispatched (the observation's ``load`` and ``pv`` features). Steps t + 1 .. T - 1 are forecast, issued at step t
by the configured forecaster (``EnvConfig.forecaster``):

* ``persistence`` (the default): the same step of the previous day in the profile set (the previous calendar
  day when the days are consecutive, as in the synthetic year), built from the past only. The first day of
  the set has no previous day; its forecast holds the last observed value.
* ``noisy``: the truth with a seeded, autocorrelated relative error that grows with the lead h = s - t (steps):

      forecast[s] = max(truth[s] * (1 + sigma_h * xi[s]), 0)
      sigma_h = forecast_nrmse_next + (forecast_nrmse - forecast_nrmse_next) * sqrt((h - 1) / (T - 1))

  so ``forecast_nrmse_next`` is the normalised RMSE (RMSE / root mean square of the truth) of the next step's
  forecast and ``forecast_nrmse`` that of a forecast a day ahead (h = T, steps_per_day), the error growing
  like a random walk's in between. ``xi`` is a stationary AR(1) path over the
  day's steps with unit variance and correlation ``forecast_autocorrelation`` between neighbouring steps,
  drawn once per day from ``forecast_seed``: one path per household for load, one per community for PV (a
  cloud misjudged is misjudged on every roof). A later forecast of the same step has the same ``xi`` and a
  smaller ``sigma_h``, so forecasts sharpen as the step approaches. It sees the future through the noise:
  for ablations, not as a realistic default.
* ``oracle``: the true future (ablations, and the value of information).
* ``file``: the values of ``forecast_csv`` (the profile CSV format; the same households and days as
  ``data_csv``), taken as issued before the day: the same whatever the step.

Arrays follow the core's layout (days, steps, [load, PV], households), in kW.
"""

from __future__ import annotations

import math

import numpy as np

from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.profiles import ProfileSet, load_csv_profiles

LOAD, PV = 0, 1  # positions on the (load, PV) axis


class Forecaster:
    """Forecasts of a profile set's days: ``forecast(days, t)`` issued at step t for steps t + 1 .. T - 1."""

    name = ""

    def __init__(self, profiles_kw: np.ndarray):
        self.profiles_kw = profiles_kw  # (D, T, 2, N) the truth

    def forecast(self, days: np.ndarray, t: int, steps: int | None = None) -> np.ndarray:
        """(B, S, 2, N) load and PV forecasts [kW] of steps t + 1 .. t + S of each of ``days``, issued at step t
        (0 <= t < T): S = ``steps``, or all the day's steps after t (T - t - 1), whichever is fewer."""
        days = np.asarray(days, dtype=np.int64)
        end = self.profiles_kw.shape[1] if steps is None else min(t + 1 + steps, self.profiles_kw.shape[1])
        return self._forecast(days, t, end)

    def _forecast(self, days: np.ndarray, t: int, end: int) -> np.ndarray:
        """Forecasts of steps t + 1 .. end - 1, issued at step t."""
        raise NotImplementedError

    def known_day(self, days: np.ndarray, t: int) -> np.ndarray:
        """(B, T, 2, N) each day as known at step t: the truth up to and including t, the forecast after it."""
        days = np.asarray(days, dtype=np.int64)
        return np.concatenate([self.profiles_kw[days, :t + 1], self.forecast(days, t)], axis=1)


class OracleForecaster(Forecaster):
    name = "oracle"

    def _forecast(self, days: np.ndarray, t: int, end: int) -> np.ndarray:
        return self.profiles_kw[days, t + 1:end]


class PersistenceForecaster(Forecaster):
    name = "persistence"

    def _forecast(self, days: np.ndarray, t: int, end: int) -> np.ndarray:
        yesterday = self.profiles_kw[np.maximum(days - 1, 0), t + 1:end]
        steps_left = yesterday.shape[1]
        held = np.broadcast_to(self.profiles_kw[days, t][:, None], (len(days), steps_left, *yesterday.shape[2:]))
        return np.where((days > 0)[:, None, None, None], yesterday, held)


class NoisyForecaster(Forecaster):
    name = "noisy"

    def __init__(self, profiles_kw: np.ndarray, nrmse_next: float, nrmse_day: float, autocorrelation: float,
                 seed: int):
        super().__init__(profiles_kw)
        n_days, steps, _, n_households = profiles_kw.shape
        rng = np.random.default_rng(seed)
        innovations = rng.standard_normal((steps, n_days, n_households + 1))
        path = np.empty_like(innovations)
        path[0] = innovations[0]
        scale = math.sqrt(1.0 - autocorrelation ** 2)
        for s in range(1, steps):
            path[s] = autocorrelation * path[s - 1] + scale * innovations[s]
        # (D, T, 2, N) relative errors at a lead of one day: load per household, PV per community.
        self.xi = np.empty(profiles_kw.shape)
        self.xi[:, :, LOAD] = path[..., :n_households].transpose(1, 0, 2)
        self.xi[:, :, PV] = path[..., n_households].T[..., None]
        lead = np.arange(steps + 1)  # sigma_by_lead[h] for h = 1 .. T; [0] is unused
        self.sigma_by_lead = nrmse_next + (nrmse_day - nrmse_next) * np.sqrt(np.maximum(lead - 1, 0) / (steps - 1))

    def _forecast(self, days: np.ndarray, t: int, end: int) -> np.ndarray:
        sigma = self.sigma_by_lead[1:end - t][:, None, None]
        return np.maximum(self.profiles_kw[days, t + 1:end] * (1.0 + sigma * self.xi[days, t + 1:end]), 0.0)


class FileForecaster(Forecaster):
    name = "file"

    def __init__(self, profiles_kw: np.ndarray, forecast_kw: np.ndarray):
        super().__init__(profiles_kw)
        self.forecast_kw = forecast_kw

    def _forecast(self, days: np.ndarray, t: int, end: int) -> np.ndarray:
        return self.forecast_kw[days, t + 1:end]


def stack_profiles(profiles: ProfileSet) -> np.ndarray:
    """(D, T, 2, N) load and PV side by side, the layout of the core and the forecasters."""
    return np.stack([profiles.load_kw, profiles.pv_kw], axis=2)


def build_forecaster(cfg: EnvConfig, profiles: ProfileSet) -> Forecaster:
    """The forecaster ``cfg.forecaster`` over ``profiles`` (the truth)."""
    truth = stack_profiles(profiles)
    if cfg.forecaster == "oracle":
        return OracleForecaster(truth)
    if cfg.forecaster == "persistence":
        return PersistenceForecaster(truth)
    if cfg.forecaster == "noisy":
        return NoisyForecaster(truth, cfg.forecast_nrmse_next, cfg.forecast_nrmse, cfg.forecast_autocorrelation,
                               cfg.forecast_seed)
    return FileForecaster(truth, stack_profiles(_load_forecast_file(cfg, profiles)))


def _load_forecast_file(cfg: EnvConfig, profiles: ProfileSet) -> ProfileSet:
    forecast = load_csv_profiles(cfg.forecast_csv, cfg.dt_h)
    if forecast.household_ids != profiles.household_ids:
        raise ConfigError(f"forecast_csv {cfg.forecast_csv} holds households {list(forecast.household_ids)}, "
                          f"data_csv {cfg.data_csv} holds {list(profiles.household_ids)}: they must be the same, "
                          "in the same order of first appearance")
    if not np.array_equal(forecast.day_of_year, profiles.day_of_year):
        # The profiles keep each day's day of the year (0 = 1 January), by which the two files are matched.
        if forecast.n_days != profiles.n_days:
            differs = f"holds {forecast.n_days} days, data_csv {cfg.data_csv} {profiles.n_days}"
        else:
            first = int(np.argmax(forecast.day_of_year != profiles.day_of_year))
            differs = (f"and data_csv {cfg.data_csv} differ at their day {first}: day of the year (0 = 1 January) "
                       f"{forecast.day_of_year[first]} against {profiles.day_of_year[first]}")
        raise ConfigError(f"forecast_csv {cfg.forecast_csv} {differs}; both must hold the same dates")
    return forecast


def observation_table(forecaster: Forecaster, horizon_steps: int, episode_steps: int, power_scale_kw: float,
                      bins: int = 0) -> np.ndarray:
    """The observations' forecast features for every day and step, (D, episode_steps + 1, 4 + 2 bins, N):

    [next_load, next_pv]: the household's forecast of step t + 1; [load_ahead, pv_ahead]: its forecast summed
    over steps t + 1 .. t + horizon_steps within the episode, over ``horizon_steps`` (a mean power that falls
    towards 0 as the episode's end cuts the window); then, with ``bins`` > 0, the same window cut into ``bins``
    equal parts, each part's sum over its length: load_bin_1 .. load_bin_bins, pv_bin_1 .. pv_bin_bins (the
    forecast's profile, where load_ahead is its mean). All over ``power_scale_kw``, clipped to [0, 1]; zero
    where no step of the episode is left.
    """
    n_days, _, _, n_households = forecaster.profiles_kw.shape
    table = np.zeros((n_days, episode_steps + 1, 4 + 2 * bins, n_households))
    all_days = np.arange(n_days)
    window = np.zeros((n_days, horizon_steps, 2, n_households)) if bins else None
    for t in range(episode_steps - 1):
        ahead = forecaster.forecast(all_days, t, min(horizon_steps, episode_steps - 1 - t))
        table[:, t, :2] = ahead[:, 0]
        table[:, t, 2:4] = ahead.sum(axis=1) / horizon_steps
        if bins:
            window[:, :ahead.shape[1]] = ahead
            window[:, ahead.shape[1]:] = 0.0  # beyond the episode's end
            # (D, bins, 2, N) -> rows [load_bin_1 .. load_bin_bins, pv_bin_1 .. pv_bin_bins]
            binned = window.reshape(n_days, bins, horizon_steps // bins, 2, n_households).mean(axis=2)
            table[:, t, 4:] = binned.swapaxes(1, 2).reshape(n_days, 2 * bins, n_households)
    return np.clip(table / power_scale_kw, 0.0, 1.0)


def forecast_nrmse(forecaster: Forecaster, days: np.ndarray, episode_steps: int) -> dict[str, float]:
    """Normalised RMSE (RMSE / root mean square of the truth) of the household forecasts on ``days``, over every
    issue step t and every later step of the episode: of ``load``, ``pv`` and ``net`` (load - PV)."""
    days = np.asarray(days, dtype=np.int64)
    squared_error, squared_truth = np.zeros(3), np.zeros(3)
    for t in range(episode_steps - 1):
        forecast = forecaster.forecast(days, t, episode_steps - 1 - t)
        truth = forecaster.profiles_kw[days, t + 1:episode_steps]
        for index, (predicted, actual) in enumerate(((forecast[:, :, LOAD], truth[:, :, LOAD]),
                                                     (forecast[:, :, PV], truth[:, :, PV]),
                                                     (forecast[:, :, LOAD] - forecast[:, :, PV],
                                                      truth[:, :, LOAD] - truth[:, :, PV]))):
            squared_error[index] += ((predicted - actual) ** 2).sum()
            squared_truth[index] += (actual ** 2).sum()
    nrmse = np.sqrt(squared_error / np.maximum(squared_truth, 1e-300))
    return dict(zip(("load", "pv", "net"), nrmse.tolist()))
