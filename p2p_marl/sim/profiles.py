"""Household load and PV profiles: a seeded synthetic year, a CSV loader and the train/test day split.

Units and layout
----------------
Every profile value is a power in kW: the mean power over one settlement step of ``dt_h`` hours, so the
energy of a step is ``value * dt_h`` kWh. Arrays are shaped (D days, T steps per day, N households) with
``T = 24 / dt_h``; step ``t`` covers ``[t * dt_h, (t + 1) * dt_h)`` hours after midnight. Load and PV are
both >= 0 (no net quantity here). A household "has PV" iff some PV value is > 0; in the community model
those households also own a battery.

Synthetic model (``synthetic_profiles``)
----------------------------------------
Everything is computed on a fine grid of at most 15 min (``FINE_STEP_MAX_H``; exactly 15 min whenever
``dt_h`` is a multiple of it) and averaged within each step, so coarser steps are true step means and, for
one seed, the dt_h = 1 h profile is the pairwise mean of the dt_h = 0.5 h profile (steps below 15 min cost
proportionally more: a year of 50 households takes ~0.2 s at 30 min, ~5 s at 1 min). Time is local solar time.

* Days: ``n_days <= 365`` days are spread evenly over one year (all seasons appear in any sample);
  longer samples run on day after day, wrapping at day 365.
* Clear-sky PV: solar elevation from the day of year and latitude (Cooper declination, hour angle), the
  Haurwitz clear-sky irradiance ``GHI = 1098 sin(e) exp(-0.057 / sin(e))`` W/m^2, times a system gain that
  lumps panel tilt and the performance ratio (``PV_SYSTEM_GAIN``). Output is capped at 1 kW per kWp.
* Weather: each day is clear, cloudy or overcast, from a Markov chain over consecutive days (weather
  persists), shared by the whole community. The state sets a daily clear-sky index and the strength of
  intra-day cloud flicker, an AR(1) process mostly shared by neighbours (same sky) plus a household part.
  At 51.5 N the mean yield is about 950 kWh per kWp and year.
* Household PV: size uniform in ``pv_kwp_range`` kWp and an orientation skew (east/west-facing arrays
  produce more in the morning/afternoon; sunrise and sunset are unchanged).
* Load: standby base plus morning, midday and evening activity peaks, each household's peaks shifted by up
  to +-1 h; a seasonal factor (winter higher, by latitude hemisphere); a day-level factor; AR(1)
  log-normal noise on the continuous part and Poisson appliance events (kettle, cooking, washing) whose
  rate follows the activity shape. All noise has mean one, and each household is scaled so that its
  expected consumption over a year equals its annual level, log-uniform in ``annual_load_kwh_range``
  (mean about 3800 kWh for the default 2500-5500 kWh).

CSV format (``load_csv_profiles``)
----------------------------------
UTF-8 text with a header naming (at least) the columns ``timestamp,household,load_kw,pv_kw``, in any
order; other columns are ignored. One row per household and step::

    timestamp,household,load_kw,pv_kw
    2023-01-01T00:00:00,house_a,0.41,0.0
    2023-01-01T00:00:00,house_b,0.27,0.0
    2023-01-01T00:30:00,house_a,0.38,0.0

* ``timestamp``: ISO 8601 (``datetime.fromisoformat``), the start of the step, on the ``dt_h`` grid counted
  from midnight. A UTC offset is allowed if every row has the same one (no DST changes).
* ``household``: a non-empty string id; households are ordered by first appearance in the file.
* ``load_kw``, ``pv_kw``: mean power over the step in kW, finite, >= 0 and at most 1,000 (``MAX_HOUSEHOLD_KW``).
* Every day present must be complete: a row for every household at every step. Days need not be
  consecutive; they are sorted by date. Rows may come in any order; blank lines are skipped.

A file must hold at least ``MIN_DAYS`` days (the train/validation/test split needs a day in each). Errors raise
``CsvError`` (a ``ValueError``) naming the file and, where they concern a row, its 1-based line and the column.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

HOURS_PER_DAY = 24.0
DAYS_PER_YEAR = 365
FINE_STEP_MAX_H = 0.25  # synthetic profiles are built on this grid (or finer) and averaged per step

# Solar geometry and PV
SOLAR_DECLINATION_MAX_DEG = 23.44
HAURWITZ_GHI_W_PER_M2 = 1098.0
HAURWITZ_EXTINCTION = 0.057
STANDARD_IRRADIANCE_W_PER_M2 = 1000.0  # irradiance at which a panel gives its kWp rating
PV_SYSTEM_GAIN = 0.92  # tilt gain on the plane of array (~1.1) times performance ratio (~0.85)
PV_AC_LIMIT_KW_PER_KWP = 1.0  # inverter cap
PV_ORIENTATION_SKEW_MAX = 0.3  # relative output change per 6 h from solar noon (east < 0 < west)

# Weather: states clear, cloudy, overcast; a day's state depends on yesterday's
WEATHER_TRANSITION = np.array([[0.60, 0.30, 0.10],
                               [0.25, 0.50, 0.25],
                               [0.15, 0.35, 0.50]])
WEATHER_CLEAR_SKY_INDEX_RANGE = np.array([[0.80, 1.00], [0.40, 0.75], [0.08, 0.30]])  # daily, uniform
WEATHER_FLICKER_STD = np.array([0.03, 0.30, 0.10])  # relative std of intra-day cloud flicker
CLOUD_FLICKER_TIME_H = 0.3  # AR(1) correlation time of the flicker
CLOUD_SHARED_VARIANCE = 0.8  # share of flicker variance common to the community (same clouds)

# Load (relative units, scaled per household to its annual consumption)
LOAD_BASE = 0.35  # standby: fridge, router, ...
LOAD_PEAKS = ((7.5, 1.0, 0.6), (13.0, 2.5, 0.3), (19.0, 2.0, 1.0))  # (centre h, width h, height)
LOAD_SHIFT_MAX_H = 1.0  # household peak times shift uniformly within +-this
LOAD_SEASON_AMPLITUDE = 0.18  # winter/summer = 1.18/0.82
LOAD_SEASON_PEAK_DAY = 15  # day of year of the northern-hemisphere load maximum
LOAD_DAY_STD = 0.15  # log-std of a household's day-level factor
LOAD_NOISE_STD = 0.3  # log-std of the continuous intra-day noise
LOAD_NOISE_TIME_H = 1.0  # its AR(1) correlation time
EVENT_SHARE = 0.35  # share of activity energy drawn in discrete appliance events
EVENT_ENERGY = 0.6  # mean event energy (relative units * h)
EVENT_ENERGY_SHAPE = 2.0  # gamma shape of one event's energy (lighter tail than exponential)
EVENT_RATE_PER_H = EVENT_SHARE / EVENT_ENERGY  # events per hour per unit of activity

CSV_COLUMNS = ("timestamp", "household", "load_kw", "pv_kw")
# A household's mean power above this is a unit slip (W for kW) or a glitch: one such value would also set the
# observations' power scale and squash every other household's features towards 0.
MAX_HOUSEHOLD_KW = 1000.0
MIN_DAYS = 3  # days a profile set needs for the train/validation/test split (at least one day in each)


class CsvError(ValueError):
    """A profile CSV file that cannot be used; the message starts with the file's path."""


@dataclass(frozen=True, eq=False)
class ProfileSet:
    """Per-step mean load and PV power of N households over D days (see the module docstring)."""

    load_kw: np.ndarray  # (D, T, N) >= 0
    pv_kw: np.ndarray  # (D, T, N) >= 0; all zero for households without PV
    has_pv: np.ndarray  # (N,) bool
    day_of_year: np.ndarray  # (D,) int in [0, 366); 0 = 1 January
    dt_h: float
    household_ids: tuple[str, ...] | None = None  # None = "h0", "h1", ...
    # (D, T, N) reactive load of each household where the data has its own (SimBench); None = derived from the
    # active load with the config's load_power_factor (see CommunityCore.reactive_kvar).
    load_kvar: np.ndarray | None = None
    # (D, T, M) net consumption (load - PV) and reactive load of the feeder's passive loads, which are not agents
    # (a SimBench grid's commercial and agricultural loads, at Feeder.passive_bus); None = none.
    passive_kw: np.ndarray | None = None
    passive_kvar: np.ndarray | None = None

    def __post_init__(self) -> None:
        steps_per_day = _steps_per_day(self.dt_h)
        load_kw = np.asarray(self.load_kw, dtype=np.float64)
        pv_kw = np.asarray(self.pv_kw, dtype=np.float64)
        if load_kw.ndim != 3 or load_kw.shape[1] != steps_per_day or 0 in load_kw.shape:
            raise ValueError(f"load_kw must be shaped (days >= 1, {steps_per_day} steps for dt_h={self.dt_h}, "
                             f"households >= 1), got {load_kw.shape}")
        if pv_kw.shape != load_kw.shape:
            raise ValueError(f"pv_kw must have the shape of load_kw {load_kw.shape}, got {pv_kw.shape}")
        for name, values in (("load_kw", load_kw), ("pv_kw", pv_kw)):
            if not np.all(np.isfinite(values)) or values.min() < 0:
                raise ValueError(f"{name} must be finite and >= 0")
        n_days, _, n_households = load_kw.shape
        has_pv = np.asarray(self.has_pv)
        if has_pv.dtype != np.bool_ or has_pv.shape != (n_households,):
            raise ValueError(f"has_pv must be a bool array shaped ({n_households},), got {has_pv.dtype} {has_pv.shape}")
        if np.any(pv_kw[:, :, ~has_pv] > 0):
            raise ValueError("pv_kw must be zero for households with has_pv=False")
        day_of_year = np.asarray(self.day_of_year)
        if (day_of_year.shape != (n_days,) or not np.issubdtype(day_of_year.dtype, np.integer)
                or day_of_year.min() < 0 or day_of_year.max() >= 366):
            raise ValueError(f"day_of_year must be integers in [0, 366) shaped ({n_days},), "
                             f"got {day_of_year.dtype} {day_of_year.shape}")
        household_ids = (tuple(f"h{i}" for i in range(n_households)) if self.household_ids is None
                         else tuple(self.household_ids))
        if len(household_ids) != n_households or len(set(household_ids)) != n_households:
            raise ValueError(f"household_ids must be {n_households} distinct ids, got {len(household_ids)}")
        if self.load_kvar is not None:
            load_kvar = np.asarray(self.load_kvar, dtype=np.float64)
            if load_kvar.shape != load_kw.shape or not np.all(np.isfinite(load_kvar)):
                raise ValueError(f"load_kvar must be finite and shaped like load_kw {load_kw.shape}, got "
                                 f"{load_kvar.shape}")
            object.__setattr__(self, "load_kvar", load_kvar)
        if (self.passive_kw is None) != (self.passive_kvar is None):
            raise ValueError("passive_kw and passive_kvar go together: give both or neither")
        if self.passive_kw is not None:
            passive = [np.asarray(values, dtype=np.float64) for values in (self.passive_kw, self.passive_kvar)]
            for name, values in zip(("passive_kw", "passive_kvar"), passive):
                if (values.ndim != 3 or values.shape[:2] != load_kw.shape[:2] or values.shape != passive[0].shape
                        or not np.all(np.isfinite(values))):
                    raise ValueError(f"{name} must be finite and shaped ({n_days}, {steps_per_day}, passive loads), "
                                     f"both alike, got {values.shape}")
                object.__setattr__(self, name, values)
        object.__setattr__(self, "load_kw", load_kw)
        object.__setattr__(self, "pv_kw", pv_kw)
        object.__setattr__(self, "has_pv", has_pv)
        object.__setattr__(self, "day_of_year", day_of_year.astype(np.int64))
        object.__setattr__(self, "dt_h", float(self.dt_h))
        object.__setattr__(self, "household_ids", household_ids)

    @property
    def n_days(self) -> int:
        return self.load_kw.shape[0]

    @property
    def steps_per_day(self) -> int:
        return self.load_kw.shape[1]

    @property
    def n_households(self) -> int:
        return self.load_kw.shape[2]

    @property
    def n_passive(self) -> int:
        return 0 if self.passive_kw is None else self.passive_kw.shape[2]

    def select_days(self, day_idx: np.ndarray) -> ProfileSet:
        """The profiles of the given day indices (e.g. the train, validation or test days of ``split_days``)."""
        day_idx = np.asarray(day_idx, dtype=np.int64)
        return ProfileSet(self.load_kw[day_idx], self.pv_kw[day_idx], self.has_pv, self.day_of_year[day_idx],
                          self.dt_h, self.household_ids,
                          *(None if values is None else values[day_idx]
                            for values in (self.load_kvar, self.passive_kw, self.passive_kvar)))


# ---------------------------------------------------------------------------------------------------------
# Synthetic profiles
# ---------------------------------------------------------------------------------------------------------

def synthetic_profiles(n_households: int, dt_h: float, n_days: int = 365, prosumer_share: float = 0.6,
                       seed: int = 0, pv_kwp_range: tuple[float, float] = (2.0, 6.0),
                       annual_load_kwh_range: tuple[float, float] = (2500.0, 5500.0),
                       latitude_deg: float = 51.5) -> ProfileSet:
    """A seeded synthetic community; the same arguments give bit-identical arrays."""
    _check_int("n_households", n_households, 1)
    _check_int("n_days", n_days, 1)
    steps_per_day = _steps_per_day(dt_h)
    if not 0.0 <= prosumer_share <= 1.0:
        raise ValueError(f"prosumer_share must lie in [0, 1], got {prosumer_share}")
    _check_positive_range("pv_kwp_range", pv_kwp_range)
    _check_positive_range("annual_load_kwh_range", annual_load_kwh_range)
    if not -90.0 <= latitude_deg <= 90.0:
        raise ValueError(f"latitude_deg must lie in [-90, 90], got {latitude_deg}")

    substeps = math.ceil(dt_h / FINE_STEP_MAX_H - 1e-9)
    fine_dt_h = dt_h / substeps
    hour = (np.arange(steps_per_day * substeps) + 0.5) * fine_dt_h  # fine-step midpoints
    day_of_year = _spread_days(n_days)

    # Draw order is fixed and independent of dt_h (for dt_h a multiple of the fine step).
    rng = np.random.default_rng(seed)
    has_pv = _choose_prosumers(rng, n_households, prosumer_share)
    pv_kwp = np.where(has_pv, rng.uniform(*pv_kwp_range, size=n_households), 0.0)
    log_lo, log_hi = np.log(annual_load_kwh_range)
    annual_load_kwh = np.exp(rng.uniform(log_lo, log_hi, size=n_households))
    load_shift_h = rng.uniform(-LOAD_SHIFT_MAX_H, LOAD_SHIFT_MAX_H, size=n_households)
    orientation_skew = rng.uniform(-PV_ORIENTATION_SKEW_MAX, PV_ORIENTATION_SKEW_MAX, size=n_households)

    pv_kw = _pv_kw(rng, day_of_year, hour, fine_dt_h, latitude_deg, pv_kwp, orientation_skew)
    load_kw = _load_kw(rng, day_of_year, hour, fine_dt_h, latitude_deg, annual_load_kwh, load_shift_h)
    return ProfileSet(_step_mean(load_kw, substeps), _step_mean(pv_kw, substeps), has_pv, day_of_year, dt_h)


def _spread_days(n_days: int) -> np.ndarray:
    if n_days <= DAYS_PER_YEAR:
        return np.arange(n_days) * DAYS_PER_YEAR // n_days
    return np.arange(n_days) % DAYS_PER_YEAR


def _choose_prosumers(rng: np.random.Generator, n_households: int, prosumer_share: float) -> np.ndarray:
    n_pv = 0 if prosumer_share == 0 else max(1, math.floor(prosumer_share * n_households + 0.5))
    has_pv = np.zeros(n_households, dtype=bool)
    has_pv[rng.permutation(n_households)[:n_pv]] = True
    return has_pv


def _clear_sky_kw_per_kwp(day_of_year: np.ndarray, hour: np.ndarray, latitude_deg: float) -> np.ndarray:
    """(D, F) clear-sky PV output per kWp from the solar elevation (Haurwitz irradiance)."""
    declination = np.radians(SOLAR_DECLINATION_MAX_DEG) * np.sin(2 * np.pi * (284 + day_of_year + 1) / 365)
    latitude = np.radians(latitude_deg)
    hour_angle = np.radians(15.0) * (hour - 12.0)
    sin_elevation = (np.sin(latitude) * np.sin(declination)[:, None]
                     + np.cos(latitude) * np.cos(declination)[:, None] * np.cos(hour_angle)[None, :])
    sin_elevation = np.maximum(sin_elevation, 1e-9)  # night: exp(-0.057/1e-9) underflows to exactly 0
    ghi_w_per_m2 = HAURWITZ_GHI_W_PER_M2 * sin_elevation * np.exp(-HAURWITZ_EXTINCTION / sin_elevation)
    return ghi_w_per_m2 / STANDARD_IRRADIANCE_W_PER_M2 * PV_SYSTEM_GAIN


def _weather_states(rng: np.random.Generator, n_days: int) -> np.ndarray:
    """(D,) weather state per day from the Markov chain, started in its stationary distribution."""
    eigenvalues, eigenvectors = np.linalg.eig(WEATHER_TRANSITION.T)
    stationary = np.real(eigenvectors[:, np.argmax(np.real(eigenvalues))])
    stationary = stationary / stationary.sum()
    uniforms = rng.random(n_days)
    states = np.empty(n_days, dtype=np.int64)
    state = int(np.searchsorted(np.cumsum(stationary), uniforms[0]))
    for day in range(n_days):
        if day > 0:
            state = int(np.searchsorted(np.cumsum(WEATHER_TRANSITION[state]), uniforms[day]))
        states[day] = min(state, len(WEATHER_TRANSITION) - 1)  # guards a cumsum that ends at 1 - eps
    return states


def _pv_kw(rng: np.random.Generator, day_of_year: np.ndarray, hour: np.ndarray, fine_dt_h: float,
           latitude_deg: float, pv_kwp: np.ndarray, orientation_skew: np.ndarray) -> np.ndarray:
    """(D, F, N) PV power on the fine grid."""
    n_days, n_fine, n_households = len(day_of_year), len(hour), len(pv_kwp)
    clear_kw_per_kwp = _clear_sky_kw_per_kwp(day_of_year, hour, latitude_deg)
    state = _weather_states(rng, n_days)
    index_lo, index_hi = WEATHER_CLEAR_SKY_INDEX_RANGE[state].T
    clear_sky_index = rng.uniform(index_lo, index_hi)
    phi = math.exp(-fine_dt_h / CLOUD_FLICKER_TIME_H)
    shared = _ar1_standard_normal(rng, (n_days, n_fine), phi)[:, :, None]
    own = _ar1_standard_normal(rng, (n_days, n_fine, n_households), phi)
    z = math.sqrt(CLOUD_SHARED_VARIANCE) * shared + math.sqrt(1 - CLOUD_SHARED_VARIANCE) * own
    flicker = np.maximum(1.0 + WEATHER_FLICKER_STD[state][:, None, None] * z, 0.0)
    orientation = np.maximum(1.0 + orientation_skew[None, :] * (hour[:, None] - 12.0) / 6.0, 0.0)  # (F, N)
    kw_per_kwp = (clear_kw_per_kwp * clear_sky_index[:, None])[:, :, None] * flicker * orientation
    return np.minimum(kw_per_kwp, PV_AC_LIMIT_KW_PER_KWP) * pv_kwp


def _activity(hour: np.ndarray) -> np.ndarray:
    """Relative occupant activity: a sum of daily-periodic Gaussian peaks."""
    total = np.zeros_like(hour)
    for centre_h, width_h, height in LOAD_PEAKS:
        gap_h = (hour - centre_h + 12.0) % HOURS_PER_DAY - 12.0
        total += height * np.exp(-0.5 * (gap_h / width_h) ** 2)
    return total


def _load_season(day_of_year: np.ndarray, latitude_deg: float) -> np.ndarray:
    # Winter (by hemisphere) needs more lighting and appliances in use; no seasonality at the equator.
    phase = 2 * np.pi * (day_of_year - LOAD_SEASON_PEAK_DAY) / DAYS_PER_YEAR
    return 1.0 + LOAD_SEASON_AMPLITUDE * np.sign(latitude_deg) * np.cos(phase)


def _load_kw(rng: np.random.Generator, day_of_year: np.ndarray, hour: np.ndarray, fine_dt_h: float,
             latitude_deg: float, annual_load_kwh: np.ndarray, load_shift_h: np.ndarray) -> np.ndarray:
    """(D, F, N) household load on the fine grid."""
    n_days, n_fine, n_households = len(day_of_year), len(hour), len(annual_load_kwh)
    activity = _activity(hour[:, None] - load_shift_h[None, :])  # (F, N)
    # Every noise term has mean one, so the expected relative power is season * (base + activity).
    year_season = _load_season(np.arange(DAYS_PER_YEAR), latitude_deg).sum()
    expected_annual_relative = year_season * (LOAD_BASE + activity).sum(axis=0) * fine_dt_h
    kw_per_relative = annual_load_kwh / expected_annual_relative  # (N,)

    day_factor = _mean_one_lognormal(rng.standard_normal((n_days, 1, n_households)), LOAD_DAY_STD)
    phi = math.exp(-fine_dt_h / LOAD_NOISE_TIME_H)
    noise = _mean_one_lognormal(_ar1_standard_normal(rng, (n_days, n_fine, n_households), phi), LOAD_NOISE_STD)
    n_events = rng.poisson(EVENT_RATE_PER_H * activity * fine_dt_h, size=(n_days, n_fine, n_households))
    # The sum of n gamma(k, E/k) event energies is gamma(n k, E/k).
    event_power = rng.gamma(n_events * EVENT_ENERGY_SHAPE, EVENT_ENERGY / EVENT_ENERGY_SHAPE) / fine_dt_h
    relative = day_factor * (LOAD_BASE + (1 - EVENT_SHARE) * activity * noise + event_power)
    return _load_season(day_of_year, latitude_deg)[:, None, None] * kw_per_relative * relative


def _ar1_standard_normal(rng: np.random.Generator, shape: tuple[int, ...], phi: float) -> np.ndarray:
    """Stationary AR(1) along axis 1 with N(0, 1) marginals; each day (axis 0) starts afresh."""
    z = rng.standard_normal(shape)
    innovation = math.sqrt(1 - phi ** 2)
    for f in range(1, shape[1]):
        z[:, f] = phi * z[:, f - 1] + innovation * z[:, f]
    return z


def _mean_one_lognormal(z: np.ndarray, log_std: float) -> np.ndarray:
    return np.exp(log_std * z - 0.5 * log_std ** 2)


def _step_mean(fine: np.ndarray, substeps: int) -> np.ndarray:
    n_days, n_fine, n_households = fine.shape
    return fine.reshape(n_days, n_fine // substeps, substeps, n_households).mean(axis=2)


# ---------------------------------------------------------------------------------------------------------
# CSV profiles
# ---------------------------------------------------------------------------------------------------------

def load_csv_profiles(path: str | os.PathLike, dt_h: float) -> ProfileSet:
    """Profiles from a CSV file in the format of the module docstring."""
    steps_per_day = _steps_per_day(dt_h)
    step_us = round(dt_h * 3600e6)
    file = os.fspath(path)
    days, steps, households, load_kw, pv_kw, lines = [], [], [], [], [], []
    household_index: dict[str, int] = {}
    stamp_cache: dict[str, tuple[int, int, timedelta | None]] = {}
    first_offset: tuple[timedelta | None, int] | None = None  # (UTC offset, line) of the first row
    try:
        handle = open(file, newline="", encoding="utf-8-sig")
    except OSError as error:
        raise CsvError(f"{file}: cannot open the profile CSV file: {error.strerror}") from None
    try:
        with handle:
            reader = csv.reader(handle)
            column = _csv_columns(next(reader, None), file)
            n_fields = max(column.values()) + 1
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if len(row) < n_fields:
                    missing = next(name for name in CSV_COLUMNS if column[name] >= len(row))
                    raise CsvError(f"{file}: line {line}, column {missing}: missing field "
                                   f"(the row has {len(row)} fields, the header {n_fields} or more)")
                text = row[column["timestamp"]]
                if text not in stamp_cache:
                    stamp_cache[text] = _parse_timestamp(text, step_us, dt_h, file, line)
                day, step, offset = stamp_cache[text]
                first_offset = first_offset or (offset, line)
                if offset != first_offset[0]:
                    raise CsvError(f"{file}: line {line}, column timestamp: UTC offset {offset} of {text!r} differs "
                                   f"from {first_offset[0]} at line {first_offset[1]}; use one fixed offset "
                                   "(no DST changes)")
                household = row[column["household"]].strip()
                if not household:
                    raise CsvError(f"{file}: line {line}, column household: empty household id")
                days.append(day)
                steps.append(step)
                households.append(household_index.setdefault(household, len(household_index)))
                load_kw.append(_parse_kw(row[column["load_kw"]], file, line, "load_kw"))
                pv_kw.append(_parse_kw(row[column["pv_kw"]], file, line, "pv_kw"))
                lines.append(line)
    except UnicodeDecodeError as error:  # a binary file given as the CSV
        raise CsvError(f"{file}: is not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not lines:
        raise CsvError(f"{file}: no data rows after the header")

    ids = tuple(household_index)
    day_ordinals = np.unique(days)
    day = np.searchsorted(day_ordinals, days)
    step = np.asarray(steps)
    line_of = np.asarray(lines)
    shape = (len(day_ordinals), steps_per_day, len(ids))
    flat = np.ravel_multi_index((day, step, np.asarray(households)), shape)
    _check_unique(flat, line_of, shape, day_ordinals, ids, dt_h, file)
    _check_complete(flat, day, line_of, shape, day_ordinals, ids, dt_h, file)
    if len(day_ordinals) < MIN_DAYS:
        raise CsvError(f"{file}: holds {len(day_ordinals)} day(s); at least {MIN_DAYS} are needed (days are split "
                       "into training, validation and test days)")

    load = np.empty(np.prod(shape))
    pv = np.empty(np.prod(shape))
    load[flat] = load_kw
    pv[flat] = pv_kw
    load, pv = load.reshape(shape), pv.reshape(shape)
    day_of_year = np.array([date.fromordinal(int(o)).timetuple().tm_yday - 1 for o in day_ordinals])
    return ProfileSet(load, pv, pv.max(axis=(0, 1)) > 0, day_of_year, dt_h, ids)


def _csv_columns(header: list[str] | None, file: str) -> dict[str, int]:
    expected = ",".join(CSV_COLUMNS)
    if header is None:
        raise CsvError(f"{file}: line 1: the file is empty; expected the header {expected}")
    names = [name.strip() for name in header]
    column = {}
    for name in CSV_COLUMNS:
        if name not in names:
            raise CsvError(f"{file}: line 1, column {name}: missing from the header {header}; expected {expected}")
        if names.count(name) > 1:
            raise CsvError(f"{file}: line 1, column {name}: appears {names.count(name)} times in the header")
        column[name] = names.index(name)
    return column


def _parse_timestamp(text: str, step_us: int, dt_h: float, file: str,
                     line: int) -> tuple[int, int, timedelta | None]:
    """(day ordinal, step of the day, UTC offset) of an interval-start timestamp."""
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CsvError(f"{file}: line {line}, column timestamp: cannot parse {text!r} as an ISO 8601 "
                       "timestamp such as 2023-01-01T00:30:00") from None
    since_midnight_us = (((stamp.hour * 60) + stamp.minute) * 60 + stamp.second) * 1_000_000 + stamp.microsecond
    if since_midnight_us % step_us:
        raise CsvError(f"{file}: line {line}, column timestamp: {text!r} is not on the dt_h={dt_h} h grid; "
                       f"a step must start a multiple of {dt_h} h after midnight")
    return stamp.date().toordinal(), since_midnight_us // step_us, stamp.utcoffset()


def _parse_kw(text: str, file: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CsvError(f"{file}: line {line}, column {column}: cannot parse {text!r} as a number") from None
    if not math.isfinite(value) or value < 0:
        raise CsvError(f"{file}: line {line}, column {column}: {text!r} is out of range; "
                       "values must be finite and >= 0 kW")
    if value > MAX_HOUSEHOLD_KW:
        raise CsvError(f"{file}: line {line}, column {column}: {text!r} kW is more than a household draws or makes "
                       f"(at most {MAX_HOUSEHOLD_KW:g} kW is accepted): is the file in W instead of kW?")
    return value


def _stamp_text(day_ordinal: int, step: int, dt_h: float) -> str:
    midnight = datetime.combine(date.fromordinal(int(day_ordinal)), datetime.min.time())
    return (midnight + timedelta(hours=step * dt_h)).isoformat()


def _check_unique(flat: np.ndarray, line_of: np.ndarray, shape: tuple[int, int, int], day_ordinals: np.ndarray,
                  ids: tuple[str, ...], dt_h: float, file: str) -> None:
    order = np.argsort(flat, kind="stable")  # stable: within a key, rows stay in file order
    repeated = np.flatnonzero(flat[order][1:] == flat[order][:-1])
    if repeated.size == 0:
        return
    first = repeated[np.argmin(line_of[order[repeated + 1]])]  # the duplicate met first in the file
    day, step, household = np.unravel_index(flat[order[first]], shape)
    raise CsvError(f"{file}: line {line_of[order[first + 1]]}, columns timestamp/household: duplicate row for "
                   f"household {ids[household]!r} at {_stamp_text(day_ordinals[day], step, dt_h)} "
                   f"(first given at line {line_of[order[first]]})")


def _check_complete(flat: np.ndarray, day: np.ndarray, line_of: np.ndarray, shape: tuple[int, int, int],
                    day_ordinals: np.ndarray, ids: tuple[str, ...], dt_h: float, file: str) -> None:
    n_days, steps_per_day, n_households = shape
    present = np.zeros(np.prod(shape), dtype=bool)
    present[flat] = True
    present = present.reshape(shape)
    step_present = present.any(axis=2)
    first_line = np.full(n_days, np.iinfo(np.int64).max)
    np.minimum.at(first_line, day, line_of)
    incomplete = np.flatnonzero(~step_present.all(axis=1))
    if incomplete.size:
        d = incomplete[0]
        missing = np.flatnonzero(~step_present[d])
        day_text = date.fromordinal(int(day_ordinals[d])).isoformat()
        raise CsvError(f"{file}: line {first_line[d]}, column timestamp: day {day_text} "
                       f"(first row at this line) is incomplete: {missing.size} of {steps_per_day} steps of "
                       f"{dt_h} h have no rows, first {_stamp_text(day_ordinals[d], missing[0], dt_h)}; "
                       "the file must hold whole days")
    if not present.all():
        d, step, household = np.unravel_index(np.argmin(present), shape)
        raise CsvError(f"{file}: line {first_line[d]}, column household: no row for household {ids[household]!r} "
                       f"at {_stamp_text(day_ordinals[d], step, dt_h)} (its day starts at this line); every "
                       "household needs a row at every step")


# ---------------------------------------------------------------------------------------------------------
# Train/test split and validation helpers
# ---------------------------------------------------------------------------------------------------------

def split_days(n_days: int, test_share: float, seed: int, validation_share: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train_idx, validation_idx, test_idx): sorted, disjoint, covering range(n_days), all non-empty.

    Test days (reported results) are a seeded random sample of round(test_share * n_days) days; validation days
    (model selection, tuning) are then drawn from the rest, round(validation_share * n_days) of them; each set
    holds at least 1 day and leaves at least 1 training day. The test sample is drawn first from the same
    generator, so adding the validation split left the test days as they were.
    """
    _check_int("n_days", n_days, MIN_DAYS)
    for name, share in (("test_share", test_share), ("validation_share", validation_share)):
        if not 0.0 < share < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {share}")
    rng = np.random.default_rng(seed)
    n_test = min(max(math.floor(test_share * n_days + 0.5), 1), n_days - 2)
    test_idx = np.sort(rng.choice(n_days, size=n_test, replace=False)).astype(np.int64)
    rest = np.setdiff1d(np.arange(n_days, dtype=np.int64), test_idx)
    n_validation = min(max(math.floor(validation_share * n_days + 0.5), 1), rest.size - 1)
    validation_idx = np.sort(rng.choice(rest, size=n_validation, replace=False)).astype(np.int64)
    train_idx = np.setdiff1d(rest, validation_idx)
    return train_idx, validation_idx, test_idx


def _steps_per_day(dt_h: float) -> int:
    if not (isinstance(dt_h, (int, float, np.floating, np.integer)) and math.isfinite(dt_h)
            and 0 < dt_h <= HOURS_PER_DAY):
        raise ValueError(f"dt_h must be a number of hours in (0, 24] that divides 24, got {dt_h!r}")
    steps = round(HOURS_PER_DAY / dt_h)
    if abs(steps * dt_h - HOURS_PER_DAY) > 1e-9:
        raise ValueError(f"dt_h must divide 24 h into whole steps (e.g. 0.25, 0.5, 1.0), got {dt_h}")
    return steps


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive_range(name: str, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high, finite; got {bounds!r}")
