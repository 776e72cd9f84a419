"""Tests of p2p_marl.sim.profiles: synthetic generator, CSV loader, train/test split."""

import re
from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import write_profile_csv
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.profiles import CsvError, ProfileSet, load_csv_profiles, split_days, synthetic_profiles

LATITUDE_DEG = 51.5


@pytest.fixture(scope="module")
def year() -> ProfileSet:
    return synthetic_profiles(20, 0.5, seed=3)


def _season_masks(day_of_year):
    summer = (day_of_year >= 152) & (day_of_year < 244)  # June-August
    winter = (day_of_year < 59) | (day_of_year >= 335)  # December-February
    return summer, winter


# ---------------------------------------------------------------------------------------------------------
# Synthetic profiles
# ---------------------------------------------------------------------------------------------------------

def test_same_arguments_give_identical_arrays():
    a = synthetic_profiles(7, 0.5, n_days=20, seed=11)
    b = synthetic_profiles(7, 0.5, n_days=20, seed=11)
    for name in ("load_kw", "pv_kw", "has_pv", "day_of_year"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    c = synthetic_profiles(7, 0.5, n_days=20, seed=12)
    assert not np.array_equal(a.load_kw, c.load_kw)


@settings(max_examples=30, deadline=None)
@given(n_households=st.integers(1, 12), dt_h=st.sampled_from([0.1, 0.25, 0.5, 1.0, 3.0, 24.0]),
       n_days=st.integers(1, 8), prosumer_share=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1),
       latitude_deg=st.floats(-70.0, 70.0))
def test_synthetic_shapes_and_physical_ranges(n_households, dt_h, n_days, prosumer_share, seed, latitude_deg):
    profiles = synthetic_profiles(n_households, dt_h, n_days=n_days, prosumer_share=prosumer_share, seed=seed,
                                  pv_kwp_range=(1.0, 6.0), latitude_deg=latitude_deg)
    steps = round(24 / dt_h)
    assert profiles.load_kw.shape == profiles.pv_kw.shape == (n_days, steps, n_households)
    assert (profiles.n_days, profiles.steps_per_day, profiles.n_households) == (n_days, steps, n_households)
    assert profiles.load_kw.dtype == profiles.pv_kw.dtype == np.float64
    assert np.all(np.isfinite(profiles.load_kw)) and np.all(np.isfinite(profiles.pv_kw))
    assert profiles.load_kw.min() > 0  # the standby base never switches off
    assert profiles.pv_kw.min() >= 0
    assert profiles.pv_kw.max() <= 6.0  # at most 1 kW per kWp
    assert np.all(profiles.pv_kw[:, :, ~profiles.has_pv] == 0)
    assert profiles.has_pv.dtype == bool and profiles.has_pv.shape == (n_households,)
    assert np.all((profiles.day_of_year >= 0) & (profiles.day_of_year < 365))
    assert len(profiles.household_ids) == n_households


@pytest.mark.parametrize("fine, coarse", [(0.25, 0.5), (0.5, 1.0), (0.25, 2.0)])
def test_coarse_steps_are_means_of_fine_steps(fine, coarse):
    a = synthetic_profiles(5, fine, n_days=6, seed=4)
    b = synthetic_profiles(5, coarse, n_days=6, seed=4)
    k = round(coarse / fine)
    for name in ("load_kw", "pv_kw"):
        fine_kw = getattr(a, name)
        pooled = fine_kw.reshape(6, fine_kw.shape[1] // k, k, 5).mean(axis=2)
        np.testing.assert_allclose(getattr(b, name), pooled, rtol=1e-12, atol=1e-12)


def test_pv_is_zero_at_night_and_higher_in_summer(year):
    hour = np.arange(year.steps_per_day) * year.dt_h
    night = (hour < 2.5) | (hour >= 21.5)  # solar time: the sun is down at 51.5 N even at midsummer
    assert np.all(year.pv_kw[:, night] == 0)
    summer, winter = _season_masks(year.day_of_year)
    daily_kwh = year.pv_kw[:, :, year.has_pv].sum(axis=1) * year.dt_h  # (D, n_pv)
    assert daily_kwh[summer].mean() > 3 * daily_kwh[winter].mean()


def test_southern_hemisphere_has_its_summer_in_december():
    profiles = synthetic_profiles(4, 1.0, prosumer_share=1.0, seed=1, latitude_deg=-35.0)
    summer_north, winter_north = _season_masks(profiles.day_of_year)
    daily_kwh = profiles.pv_kw.sum(axis=(1, 2))
    assert daily_kwh[winter_north].mean() > 1.5 * daily_kwh[summer_north].mean()


def test_load_has_evening_peak_and_is_higher_in_winter(year):
    hour = np.arange(year.steps_per_day) * year.dt_h
    mean_kw = year.load_kw.mean(axis=(0, 2))
    evening = mean_kw[(hour >= 17) & (hour < 21)].mean()
    assert evening > 1.5 * mean_kw.mean()
    assert evening > 3 * mean_kw[(hour >= 2) & (hour < 5)].mean()
    assert mean_kw[(hour >= 6) & (hour < 9)].mean() > mean_kw[(hour >= 2) & (hour < 5)].mean()  # morning peak
    summer, winter = _season_masks(year.day_of_year)
    daily_kwh = year.load_kw.sum(axis=(1, 2)) * year.dt_h
    assert daily_kwh[winter].mean() > 1.2 * daily_kwh[summer].mean()


def test_annual_magnitudes_are_realistic():
    profiles = synthetic_profiles(30, 0.5, prosumer_share=1.0, seed=5, pv_kwp_range=(3.0, 3.0),
                                  annual_load_kwh_range=(2500.0, 5500.0))
    annual_load_kwh = profiles.load_kw.sum(axis=(0, 1)) * profiles.dt_h
    assert np.all((annual_load_kwh > 2500 * 0.9) & (annual_load_kwh < 5500 * 1.1))
    assert 3000 < annual_load_kwh.mean() < 4500
    yield_kwh_per_kwp = profiles.pv_kw.sum(axis=(0, 1)) * profiles.dt_h / 3.0
    assert np.all((yield_kwh_per_kwp > 850) & (yield_kwh_per_kwp < 1100))


def test_households_are_heterogeneous(year):
    annual_kwh = year.load_kw.sum(axis=(0, 1))
    assert annual_kwh.std() / annual_kwh.mean() > 0.1
    peak_step = year.load_kw.mean(axis=0).argmax(axis=0)
    assert len(set(peak_step.tolist())) > 1


def test_weather_persists_from_day_to_day(year):
    daily_kwh = year.pv_kw.sum(axis=(1, 2))
    # A day's share of the best day within +-7 days approximates its clear-sky index.
    padded = np.concatenate([daily_kwh[-7:], daily_kwh, daily_kwh[:7]])
    clear_sky_share = daily_kwh / np.lib.stride_tricks.sliding_window_view(padded, 15).max(axis=1)
    assert np.corrcoef(clear_sky_share[:-1], clear_sky_share[1:])[0, 1] > 0.15
    assert clear_sky_share.min() < 0.3  # overcast days exist


@pytest.mark.parametrize("share, n, expected", [(0.0, 10, 0), (0.01, 10, 1), (0.6, 10, 6), (0.55, 10, 6),
                                                (0.5, 3, 2), (1.0, 7, 7), (0.6, 50, 30)])
def test_prosumer_count_follows_share(share, n, expected):
    profiles = synthetic_profiles(n, 1.0, n_days=2, prosumer_share=share, seed=2)
    assert profiles.has_pv.sum() == expected
    assert np.all(profiles.pv_kw[:, :, profiles.has_pv].sum(axis=(0, 1)) > 0)


def test_which_households_have_pv_depends_on_seed():
    masks = {tuple(synthetic_profiles(10, 1.0, n_days=1, seed=s).has_pv) for s in range(10)}
    assert len(masks) > 1


def test_days_spread_over_the_year():
    assert synthetic_profiles(2, 1.0, n_days=4).day_of_year.tolist() == [0, 91, 182, 273]
    assert np.array_equal(synthetic_profiles(2, 1.0, n_days=365).day_of_year, np.arange(365))
    assert synthetic_profiles(2, 1.0, n_days=367).day_of_year[-2:].tolist() == [0, 1]


@pytest.mark.parametrize("kwargs, match", [
    ({"dt_h": 0.7}, "dt_h"), ({"dt_h": 0.0}, "dt_h"), ({"dt_h": float("nan")}, "dt_h"), ({"dt_h": 48.0}, "dt_h"),
    ({"n_households": 0}, "n_households"), ({"n_households": 2.0}, "n_households"), ({"n_days": 0}, "n_days"),
    ({"prosumer_share": 1.5}, "prosumer_share"), ({"pv_kwp_range": (3.0, 2.0)}, "pv_kwp_range"),
    ({"annual_load_kwh_range": (0.0, 100.0)}, "annual_load_kwh_range"), ({"latitude_deg": 91.0}, "latitude_deg"),
])
def test_synthetic_rejects_bad_arguments(kwargs, match):
    args = {"n_households": 3, "dt_h": 0.5, "n_days": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        synthetic_profiles(**args)


# ---------------------------------------------------------------------------------------------------------
# ProfileSet
# ---------------------------------------------------------------------------------------------------------

def test_select_days_keeps_households():
    profiles = synthetic_profiles(3, 1.0, n_days=10, seed=1)
    subset = profiles.select_days(np.array([2, 7]))
    assert subset.n_days == 2
    assert np.array_equal(subset.load_kw, profiles.load_kw[[2, 7]])
    assert np.array_equal(subset.day_of_year, profiles.day_of_year[[2, 7]])
    assert np.array_equal(subset.has_pv, profiles.has_pv) and subset.household_ids == profiles.household_ids
    assert subset.passive_kw is None and subset.n_passive == 0
    passive_kw = np.random.default_rng(0).normal(size=(10, 24, 2))
    with_passive = ProfileSet(profiles.load_kw, profiles.pv_kw, profiles.has_pv, profiles.day_of_year, 1.0,
                              passive_kw=passive_kw, passive_kvar=0.3 * passive_kw)
    subset = with_passive.select_days(np.array([2, 7]))
    assert subset.n_passive == 2 and np.array_equal(subset.passive_kvar, 0.3 * passive_kw[[2, 7]])


@pytest.mark.parametrize("change, match", [
    ({"load_kw": -np.ones((1, 4, 2))}, "load_kw"),
    ({"pv_kw": np.full((1, 4, 2), np.nan)}, "pv_kw"),
    ({"pv_kw": np.ones((1, 4, 3))}, "pv_kw"),
    ({"load_kw": np.ones((1, 5, 2)), "pv_kw": np.zeros((1, 5, 2))}, "load_kw"),
    ({"has_pv": np.array([0, 1])}, "has_pv"),
    ({"pv_kw": np.ones((1, 4, 2))}, "has_pv=False"),
    ({"day_of_year": np.array([366])}, "day_of_year"),
    ({"household_ids": ("a", "a")}, "household_ids"),
    ({"passive_kw": np.ones((1, 4, 3))}, "passive_kw and passive_kvar go together"),
    ({"passive_kw": np.ones((1, 4, 3)), "passive_kvar": np.ones((1, 4, 2))}, "passive_kvar must be finite"),
    ({"passive_kw": np.ones((1, 5, 3)), "passive_kvar": np.ones((1, 5, 3))}, "passive_kw must be finite"),
])
def test_profile_set_validates(change, match):
    fields = {"load_kw": np.ones((1, 4, 2)), "pv_kw": np.zeros((1, 4, 2)), "has_pv": np.array([False, True]),
              "day_of_year": np.array([0]), "dt_h": 6.0} | change
    with pytest.raises(ValueError, match=match):
        ProfileSet(**fields)


# ---------------------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shuffle", [False, True])
def test_csv_round_trip(tmp_path, shuffle):
    profiles = synthetic_profiles(4, 0.5, n_days=5, prosumer_share=0.5, seed=9)
    path = tmp_path / "profiles.csv"
    write_profile_csv(path, profiles, shuffle=shuffle)
    loaded = load_csv_profiles(path, 0.5)
    assert sorted(loaded.household_ids) == sorted(profiles.household_ids)
    if not shuffle:
        assert loaded.household_ids == profiles.household_ids  # order of first appearance
    order = [loaded.household_ids.index(h) for h in profiles.household_ids]
    assert np.array_equal(loaded.load_kw[:, :, order], profiles.load_kw)
    assert np.array_equal(loaded.pv_kw[:, :, order], profiles.pv_kw)
    assert np.array_equal(loaded.has_pv[order], profiles.has_pv)
    assert np.array_equal(loaded.day_of_year, profiles.day_of_year)
    assert loaded.dt_h == 0.5


def test_csv_extra_columns_utc_offset_and_day_of_year(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("household,note,pv_kw,timestamp,load_kw\n"
                    "a,x,0,2024-12-31T00:00:00Z,1.5\n"
                    "a,y,2.5,2024-12-31T12:00:00Z,0.5\n\n"
                    "a,z,0,2025-01-01T00:00:00Z,1.0\n"
                    "a,w,1.5,2025-01-01T12:00:00Z,2.0\n"
                    "a,v,0,2025-01-02T00:00:00Z,1.0\n"
                    "a,u,0,2025-01-02T12:00:00Z,1.0\n")
    loaded = load_csv_profiles(str(path), 12.0)
    assert loaded.load_kw[:, :, 0].tolist() == [[1.5, 0.5], [1.0, 2.0], [1.0, 1.0]]
    assert loaded.has_pv.tolist() == [True]
    assert loaded.day_of_year.tolist() == [365, 0, 1]  # 31 December of a leap year, then 1 and 2 January


# One complete day, dt_h = 6 h, households a and b; the row of step s, household h is at line 2 + 2 s + h.
VALID_ROWS = [f"2023-06-01T{6 * s:02d}:00:00,{h},{0.5 + s},{1.0 * (h == 'b') * (s == 2)}"
              for s in range(4) for h in "ab"]
# A valid file: that day and the next two (a file needs MIN_DAYS = 3 days for the train/validation/test split).
THREE_DAYS = [*VALID_ROWS, *(row.replace("2023-06-01", f"2023-06-0{day}") for day in (2, 3) for row in VALID_ROWS)]


def _error_case(tmp_path, rows, header="timestamp,household,load_kw,pv_kw"):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _replace(line: int, text: str) -> list[str]:
    rows = list(VALID_ROWS)
    rows[line - 2] = text
    return rows


@pytest.mark.parametrize("rows, header, match", [
    (_replace(3, "2023-06-01T00:00:00,b,zero,0"), None, r"line 3, column load_kw: cannot parse 'zero'"),
    (_replace(4, "2023-06-01T06:00:00,a,1.5,-0.1"), None, r"line 4, column pv_kw: '-0.1' is out of range"),
    (_replace(5, "2023-06-01T06:00:00,b,nan,0"), None, r"line 5, column load_kw: 'nan' is out of range"),
    (_replace(6, "2023-06-01T12:00:00,a,2.5,inf"), None, r"line 6, column pv_kw: 'inf' is out of range"),
    (_replace(6, "2023-06-01T12:00:00,a,2500,0"), None,
     r"line 6, column load_kw: '2500' kW is more than a household draws or makes \(at most 1000 kW is accepted\): "
     r"is the file in W instead of kW\?"),
    (_replace(7, "2023-06-01T12:00:00,b,,1"), None, r"line 7, column load_kw: cannot parse ''"),
    (_replace(8, "2023-06-32T18:00:00,a,3.5,0"), None, r"line 8, column timestamp: cannot parse"),
    (_replace(9, "2023-06-01T19:00:00,b,3.5,0"), None, r"line 9, column timestamp: .* not on the dt_h=6.0 h grid"),
    (_replace(9, "2023-06-01T18:00:00+01:00,b,3.5,0"), None,
     r"line 9, column timestamp: UTC offset 1:00:00 .* differs from None at line 2"),
    (_replace(4, ",b,0.5,0"), None, r"line 4, column timestamp: cannot parse ''"),
    (_replace(5, "2023-06-01T06:00:00, ,1.5,0"), None, r"line 5, column household: empty household id"),
    (_replace(6, "2023-06-01T12:00:00,a,2.5"), None, r"line 6, column pv_kw: missing field"),
    (_replace(5, "2023-06-01T06:00:00,a,1.5,0"), None,
     r"line 5, columns timestamp/household: duplicate row for household 'a' at 2023-06-01T06:00:00 "
     r"\(first given at line 4\)"),
    (VALID_ROWS[:-1], None, r"line 2, column household: no row for household 'b' at 2023-06-01T18:00:00"),
    (_replace(5, "2023-06-01T06:00:00,c,1.5,0"), None, r"no row for household 'c' at 2023-06-01T00:00:00"),
    (VALID_ROWS[:-2], None, r"line 2, column timestamp: day 2023-06-01 .* incomplete: 1 of 4 steps"),
    ([*VALID_ROWS, "2023-06-02T00:00:00,a,1,0", "2023-06-02T00:00:00,b,1,0"], None,
     r"line 10, column timestamp: day 2023-06-02 .* incomplete: 3 of 4 steps .* first 2023-06-02T06:00:00"),
    (VALID_ROWS, "timestamp,household,load_kw", r"line 1, column pv_kw: missing from the header"),
    (VALID_ROWS, "timestamp,household,load_kw,pv_kw,load_kw", r"line 1, column load_kw: appears 2 times"),
    ([], None, r"no data rows"),
])
def test_csv_errors_name_file_line_and_column(tmp_path, rows, header, match):
    path = _error_case(tmp_path, rows, header or "timestamp,household,load_kw,pv_kw")
    with pytest.raises(ValueError, match=match) as error:
        load_csv_profiles(path, 6.0)
    assert str(error.value).startswith(f"{path}: ")


def test_csv_empty_file_and_bad_dt(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ValueError, match=r"empty.csv: line 1: the file is empty"):
        load_csv_profiles(path, 0.5)
    with pytest.raises(ValueError, match="dt_h"):
        load_csv_profiles(_error_case(tmp_path, VALID_ROWS), 5.0)


def test_csv_valid_small_file(tmp_path):
    loaded = load_csv_profiles(_error_case(tmp_path, THREE_DAYS), 6.0)
    assert loaded.household_ids == ("a", "b")
    assert loaded.load_kw[0, :, 0].tolist() == [0.5, 1.5, 2.5, 3.5]
    assert loaded.has_pv.tolist() == [False, True]
    first = date(2023, 6, 1).timetuple().tm_yday - 1
    assert loaded.day_of_year.tolist() == [first, first + 1, first + 2]


def test_csv_of_one_day_names_the_file_and_the_minimum(tmp_path):
    path = _error_case(tmp_path, VALID_ROWS)
    with pytest.raises(CsvError, match=rf"^{re.escape(str(path))}: holds 1 day\(s\); at least 3 are needed"):
        load_csv_profiles(path, 6.0)


@pytest.mark.parametrize("content, match", [
    (None, "cannot open the profile CSV file: No such file or directory"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe binary", "is not UTF-8 text"),
])
def test_unreadable_csv_names_the_file(tmp_path, content, match):
    path = tmp_path / "profiles.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CsvError, match=rf"^{re.escape(str(path))}: {match}"):
        load_csv_profiles(path, 0.5)


# ---------------------------------------------------------------------------------------------------------
# Train/validation/test split
# ---------------------------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(n_days=st.integers(3, 1000), test_share=st.floats(0.001, 0.6), validation_share=st.floats(0.001, 0.35),
       seed=st.integers(0, 2**32 - 1))
def test_split_is_disjoint_sorted_and_covers(n_days, test_share, validation_share, seed):
    train, validation, test = split_days(n_days, test_share, seed, validation_share)
    for days in (train, validation, test):
        assert len(days) > 0 and np.all(np.diff(days) > 0)
    assert np.intersect1d(train, test).size == 0
    assert np.intersect1d(train, validation).size == 0
    assert np.intersect1d(validation, test).size == 0
    assert np.array_equal(np.union1d(np.union1d(train, validation), test), np.arange(n_days))
    assert abs(len(test) - test_share * n_days) <= 1.0 or len(test) in (1, n_days - 2)
    again = split_days(n_days, test_share, seed, validation_share)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, validation, test)))


def test_validation_split_leaves_the_test_days_unchanged():
    """The test days are drawn first: adding validation days did not move a single reported day."""
    rng = np.random.default_rng(0)
    test_before_validation = np.sort(rng.choice(365, size=73, replace=False))
    _, validation, test = split_days(365, 0.2, 0, 0.1)
    assert np.array_equal(test, test_before_validation)
    assert len(validation) == 37


@pytest.mark.parametrize("n_days, test_share, validation_share", [(2, 0.2, 0.1), (10, 0.0, 0.1), (10, 1.0, 0.1),
                                                                  (10, -0.1, 0.1), (10, 0.2, 0.0)])
def test_split_rejects_bad_arguments(n_days, test_share, validation_share):
    with pytest.raises(ValueError, match="n_days|test_share|validation_share"):
        split_days(n_days, test_share, 0, validation_share)


def test_n_days_set_together_with_a_csv_is_an_error(tmp_path):
    """n_days shapes synthetic profiles only; with a CSV it would silently not apply."""
    path = _error_case(tmp_path, THREE_DAYS)
    assert EnvConfig(n_agents=2, dt_h=6.0, data_csv=str(path)).n_days == 365  # the default is left alone
    with pytest.raises(ConfigError, match=r"n_days=30 applies to synthetic profiles only; with data_csv"):
        EnvConfig(n_agents=2, dt_h=6.0, data_csv=str(path), n_days=30)
