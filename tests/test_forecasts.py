"""Forecasters: what the observations know of the future, seeded errors of the configured size, and the features
built from them."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import p2p_marl
from conftest import write_profile_csv
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import OBS_FEATURES, STATE_PER_AGENT, STATE_SHARED, CommunityCore
from p2p_marl.sim.forecasts import LOAD, PV, build_forecaster, stack_profiles
from p2p_marl.sim.profiles import synthetic_profiles

FORECAST_FEATURES = [OBS_FEATURES.index(name) for name in
                     ("next_load", "next_pv", "load_ahead", "pv_ahead", "community_load_ahead", "community_pv_ahead")]


def _diverging_files(tmp_path, cut_day: int, cut_step: int) -> tuple[str, str]:
    """Two profile CSV files that agree on every value up to (cut_day, cut_step) and hold the same values in
    another order afterwards: each household's later values are permuted in time (so the data's maxima, which
    scale the observations, are the same)."""
    profiles = synthetic_profiles(4, 1.0, n_days=6, prosumer_share=0.5, seed=3)
    later = cut_day * profiles.steps_per_day + cut_step + 1  # first time index that differs
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ("load_kw", "pv_kw"):
        values = getattr(profiles, name).reshape(-1, profiles.n_households).copy()
        for household in range(profiles.n_households):
            values[later:, household] = rng.permutation(values[later:, household])
        arrays[name] = values.reshape(getattr(profiles, name).shape)
    other = dataclasses.replace(profiles, **arrays)
    paths = (str(tmp_path / "a.csv"), str(tmp_path / "b.csv"))
    write_profile_csv(paths[0], profiles)
    write_profile_csv(paths[1], other)
    return paths


def _play(path: str, day: int, steps: int, **env_kwargs) -> list[dict]:
    """Observations, global states and rewards of the PettingZoo view on ``day`` for ``steps`` steps of seeded
    random actions."""
    env = p2p_marl.parallel_env(data_csv=path, n_agents=4, dt_h=1.0, test_share=0.2, validation_share=0.2,
                                **env_kwargs)
    obs, _ = env.reset(seed=0, options={"day": day})
    rng = np.random.default_rng(1)
    seen = []
    for _ in range(steps):
        seen.append({"obs": obs, "state": env.state()})
        actions = {agent: rng.uniform([-1, 0, 0], [1, 1, 1]).astype(np.float32) for agent in env.agents}
        obs, rewards, *_ = env.step(actions)
        seen[-1]["rewards"] = rewards
    return seen


def _same(a: dict, b: dict) -> bool:
    return (all(np.array_equal(a["obs"][agent], b["obs"][agent]) for agent in a["obs"])
            and np.array_equal(a["state"], b["state"]) and a["rewards"] == b["rewards"])


@pytest.mark.parametrize("forecast_bins", [0, 4])
def test_the_default_observation_holds_nothing_from_the_future(tmp_path, forecast_bins):
    cut_day, cut_step = 3, 13
    first, second = _diverging_files(tmp_path, cut_day, cut_step)
    one, other = (_play(path, cut_day, cut_step + 2, forecast_bins=forecast_bins) for path in (first, second))
    assert all(_same(a, b) for a, b in zip(one[:cut_step + 1], other[:cut_step + 1]))
    assert not _same(one[cut_step + 1], other[cut_step + 1])  # the next step's own load and PV differ
    # The test has teeth: the oracle forecaster's observations tell the two futures apart before the cut.
    one, other = (_play(path, cut_day, cut_step + 1, forecaster="oracle") for path in (first, second))
    assert not _same(one[cut_step], other[cut_step])


PROFILES = synthetic_profiles(5, 0.5, n_days=40, prosumer_share=0.6, seed=4)
TRUTH = stack_profiles(PROFILES)
STEPS = PROFILES.steps_per_day


def _forecaster(**changes):
    return build_forecaster(EnvConfig(n_agents=5, n_days=40).replace(**changes), PROFILES)


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["persistence", "noisy", "oracle"]), t=st.integers(0, STEPS - 1),
       days=st.lists(st.integers(0, 39), min_size=1, max_size=4))
def test_a_known_day_is_the_truth_up_to_the_issue_step_and_a_forecast_after(kind, t, days):
    known = _forecaster(forecaster=kind).known_day(np.array(days), t)
    assert known.shape == (len(days), STEPS, 2, 5)
    np.testing.assert_array_equal(known[:, :t + 1], TRUTH[days, :t + 1])
    assert np.all(known >= 0.0) and np.all(np.isfinite(known))


def test_oracle_is_the_truth_and_persistence_is_the_previous_day():
    days = np.array([0, 1, 17])
    np.testing.assert_array_equal(_forecaster(forecaster="oracle").forecast(days, 5), TRUTH[days, 6:])
    persistence = _forecaster().forecast(days, 5)
    np.testing.assert_array_equal(persistence[1:], TRUTH[[0, 16], 6:])
    # The first day has no previous day: the last observed value is held.
    np.testing.assert_array_equal(persistence[0], np.broadcast_to(TRUTH[0, 5], persistence[0].shape))


def test_noisy_forecasts_are_seeded():
    days = np.arange(40)
    same = [_forecaster(forecaster="noisy", forecast_seed=7).forecast(days, 3) for _ in range(2)]
    np.testing.assert_array_equal(*same)
    other = _forecaster(forecaster="noisy", forecast_seed=8).forecast(days, 3)
    assert not np.array_equal(same[0], other)


@pytest.mark.parametrize("nrmse_next, nrmse", [(0.1, 0.3), (0.2, 0.6)])
def test_noisy_errors_have_the_configured_size_growing_with_the_lead(nrmse_next, nrmse):
    """Relative RMSE at lead h is nrmse_next + (nrmse - nrmse_next) * sqrt((h - 1) / (T - 1)): over a year of 10
    households the sampling error of the estimate is a few percent (PV's error is shared by the community and
    autocorrelated in time, so its estimate is the noisier one)."""
    profiles = synthetic_profiles(10, 0.5, n_days=365, prosumer_share=1.0, seed=5)
    cfg = EnvConfig(forecaster="noisy", forecast_nrmse=nrmse, forecast_nrmse_next=nrmse_next, forecast_seed=1)
    forecaster = build_forecaster(cfg, profiles)
    days = np.arange(profiles.n_days)
    for lead in (1, 12, 24):
        errors, truths = {LOAD: [], PV: []}, {LOAD: [], PV: []}
        for t in range(0, STEPS - lead, 3):
            predicted, truth = forecaster.forecast(days, t)[:, lead - 1], forecaster.profiles_kw[days, t + lead]
            for quantity in (LOAD, PV):
                errors[quantity].append(predicted[:, quantity] - truth[:, quantity])
                truths[quantity].append(truth[:, quantity])
        expected = nrmse_next + (nrmse - nrmse_next) * np.sqrt((lead - 1) / (STEPS - 1))
        for quantity, tolerance in ((LOAD, 0.05), (PV, 0.12)):
            error, truth = np.concatenate(errors[quantity]), np.concatenate(truths[quantity])
            measured = np.sqrt((error ** 2).sum() / (truth ** 2).sum())
            assert measured == pytest.approx(expected, rel=tolerance), (lead, quantity)


def test_noisy_errors_are_autocorrelated_as_configured():
    xi = _forecaster(forecaster="noisy", forecast_autocorrelation=0.8).xi[:, :, LOAD]  # (D, T, N)
    lag_one = (xi[:, 1:] * xi[:, :-1]).mean() / (xi ** 2).mean()
    assert lag_one == pytest.approx(0.8, abs=0.05)
    assert (xi ** 2).mean() == pytest.approx(1.0, abs=0.1)
    pv = _forecaster(forecaster="noisy").xi[:, :, PV]
    np.testing.assert_array_equal(pv, np.broadcast_to(pv[..., :1], pv.shape))  # one path per community


def test_file_forecaster_reads_the_forecast_csv(tmp_path):
    profiles = synthetic_profiles(3, 1.0, n_days=5, prosumer_share=0.7, seed=2)
    forecast = dataclasses.replace(profiles, load_kw=profiles.load_kw * 1.5, pv_kw=profiles.pv_kw * 0.5)
    data, forecasts = tmp_path / "data.csv", tmp_path / "forecast.csv"
    write_profile_csv(data, profiles)
    write_profile_csv(forecasts, forecast)
    cfg = EnvConfig(n_agents=3, dt_h=1.0, data_csv=str(data), forecaster="file", forecast_csv=str(forecasts))
    core = CommunityCore(cfg)
    np.testing.assert_allclose(core.forecaster.forecast(np.array([2]), 4), stack_profiles(forecast)[[2], 5:])
    obs = core.reset(days=np.array([2]))
    next_load = OBS_FEATURES.index("next_load")
    np.testing.assert_allclose(obs[0, :, next_load],
                               np.minimum(forecast.load_kw[2, 1] / core.power_scale_kw, 1.0))


def test_a_forecast_file_for_other_households_is_a_config_error(tmp_path):
    profiles = synthetic_profiles(3, 1.0, n_days=5, prosumer_share=0.7, seed=2)
    renamed = dataclasses.replace(profiles, household_ids=("x", "y", "z"))
    data, forecasts = tmp_path / "data.csv", tmp_path / "forecast.csv"
    write_profile_csv(data, profiles)
    write_profile_csv(forecasts, renamed)
    with pytest.raises(ConfigError, match=r"forecast_csv .*forecast.csv holds households \['x', 'y', 'z'\]"):
        CommunityCore(EnvConfig(n_agents=3, dt_h=1.0, data_csv=str(data), forecaster="file",
                                forecast_csv=str(forecasts)))


@pytest.mark.parametrize("changes, match", [
    ({"forecaster": "crystal_ball"}, r"forecaster='crystal_ball' is not allowed; choose one of \['persistence'"),
    ({"forecaster": "file"}, r"forecaster='file' with forecast_csv=None: forecaster=file reads forecast_csv"),
    ({"forecast_csv": "f.csv"}, r"forecaster='persistence' with forecast_csv='f.csv'"),
    ({"forecaster": "file", "forecast_csv": "f.csv"}, r"forecast_csv needs data_csv"),
    ({"forecast_horizon_h": 0.0}, r"forecast_horizon_h=0.0 is out of range; allowed \(0.0, 24.0\]"),
    ({"forecast_horizon_h": 1.25}, r"forecast_horizon_h=1.25 must be a whole number of steps of dt_h=0.5"),
    ({"forecast_nrmse": -0.1}, r"forecast_nrmse=-0.1 is out of range"),
    ({"forecast_nrmse_next": 11.0}, r"forecast_nrmse_next=11.0 is out of range; allowed \[0.0, 10.0\]"),
    ({"forecast_autocorrelation": 1.0}, r"forecast_autocorrelation=1.0 is out of range; allowed \[0.0, 1.0\)"),
    ({"forecast_seed": 1.5}, r"forecast_seed must be an integer"),
    ({"forecast_seed": -1}, r"forecast_seed=-1 is out of range; allowed \[0, 9223372036854775807\]"),
    ({"forecast_bins": 5}, r"forecast_bins=5 must divide the forecast window's 48 steps .* allowed 0 or a divisor "
                           r"of 48"),
    ({"forecast_bins": 4, "forecast_horizon_h": 3.0}, r"forecast_bins=4 must divide the forecast window's 6 steps"),
    ({"forecast_bins": -1}, r"forecast_bins=-1 is out of range; allowed \[0, 10000\]"),
    ({"forecast_bins": 1.5}, r"forecast_bins must be an integer"),
    ({"forecast_nrmse_next": 0.5, "forecast_nrmse": 0.1},
     r"forecast_nrmse_next=0.5 must not exceed forecast_nrmse=0.1: a forecast's error grows with its lead"),
])
def test_bad_forecast_settings_name_the_key(changes, match):
    with pytest.raises(ConfigError, match=match):
        EnvConfig(**changes)


@pytest.mark.parametrize("kind", ["persistence", "noisy"])
def test_forecast_features_are_the_forecasters_forecasts(kind):
    """next_* is the forecast of the next step, *_ahead its mean over the horizon (cut at the episode's end),
    community_* the mean over households; all scaled by power_scale_kw and zero once nothing is left."""
    cfg = EnvConfig(n_agents=5, n_days=40, forecaster=kind, forecast_horizon_h=3.0)
    core = CommunityCore(cfg, batch_size=2, profiles=PROFILES)
    obs = core.reset(days=np.array([0, 11]))
    horizon = 6
    while True:
        t = core.t
        forecast = core.forecaster.forecast(core.days, t) if t < STEPS - 1 else np.zeros((2, 0, 2, 5))
        window = forecast[:, :horizon]
        expected = np.zeros((2, 5, 6))
        if t < STEPS - 1:
            expected[..., 0:2] = forecast[:, 0].transpose(0, 2, 1)
            expected[..., 2:4] = (window.sum(axis=1) / horizon).transpose(0, 2, 1)
        expected[..., 4:6] = expected[..., 2:4].mean(axis=1, keepdims=True)
        np.testing.assert_allclose(obs[..., FORECAST_FEATURES], np.clip(expected / core.power_scale_kw, 0, 1),
                                   atol=1e-12)
        if core.done:
            break
        obs, *_ = core.step(np.zeros((2, 5, 3)))
    assert t == STEPS


def test_the_global_state_holds_the_same_forecasts():
    core = CommunityCore(EnvConfig(n_agents=5, n_days=40), batch_size=1, profiles=PROFILES)
    obs = core.reset(days=np.array([9]))[0]
    state = core.state()[0]
    shared = len(STATE_SHARED)
    np.testing.assert_array_equal(state[:shared], obs[0, list(STATE_SHARED)])
    np.testing.assert_array_equal(state[shared:].reshape(5, -1), obs[:, list(STATE_PER_AGENT)])
    for name in ("community_load_ahead", "community_pv_ahead"):
        assert OBS_FEATURES.index(name) in STATE_SHARED
    for name in ("next_load", "next_pv", "load_ahead", "pv_ahead"):
        assert OBS_FEATURES.index(name) in STATE_PER_AGENT


@pytest.mark.parametrize("kind, dt_h, max_cycles", [("persistence", 0.5, None), ("noisy", 0.5, None),
                                                    ("oracle", 1.0, 10)])
def test_forecast_bins_are_the_windows_profile(kind, dt_h, max_cycles):
    """With forecast_bins = K the observation ends with K load and K PV features: the forecast window cut into K
    equal parts (steps at or past the episode's end count as zero, as in *_ahead), each part's mean, so that their
    mean is load_ahead / pv_ahead."""
    profiles = PROFILES if dt_h == 0.5 else synthetic_profiles(5, dt_h, n_days=40, prosumer_share=0.6, seed=4)
    cfg = EnvConfig(n_agents=5, n_days=40, dt_h=dt_h, max_cycles=max_cycles, forecaster=kind,
                    forecast_horizon_h=3.0 * dt_h / 0.5, forecast_bins=3)
    core = CommunityCore(cfg, batch_size=2, profiles=profiles)
    assert core.obs_features[len(OBS_FEATURES):] == ("load_bin_1", "load_bin_2", "load_bin_3", "pv_bin_1",
                                                     "pv_bin_2", "pv_bin_3")
    obs = core.reset(days=np.array([0, 11]))
    ahead = [OBS_FEATURES.index("load_ahead"), OBS_FEATURES.index("pv_ahead")]
    while True:
        t = core.t
        window = np.zeros((2, 6, 2, 5))  # (B, horizon steps, [load, PV], N)
        if t < profiles.steps_per_day - 1:
            forecast = core.forecaster.forecast(core.days, t, 6)
            window[:, :forecast.shape[1]] = forecast
        window[:, max(core.steps_per_episode - t - 1, 0):] = 0.0  # steps t + 1 + h >= the episode's length
        expected = window.reshape(2, 3, 2, 2, 5).mean(axis=2)  # (B, bin, [load, PV], N)
        bins = obs[..., len(OBS_FEATURES):].reshape(2, 5, 2, 3)  # (B, N, [load, PV], bin)
        np.testing.assert_allclose(bins, np.clip(expected.transpose(0, 3, 2, 1) / core.power_scale_kw, 0, 1),
                                   atol=1e-12)
        np.testing.assert_allclose(bins.mean(axis=3), obs[..., ahead], atol=1e-12)
        if core.done:
            break
        obs, *_ = core.step(np.zeros((2, 5, 3)))
    assert t == core.steps_per_episode
    state = core.state(obs)
    assert state.shape == (2, core.state_dim) and core.state_dim == len(STATE_SHARED) + 5 * (len(STATE_PER_AGENT) + 6)
    np.testing.assert_array_equal(state[:, len(STATE_SHARED):].reshape(2, 5, -1)[..., -6:],
                                  obs[..., len(OBS_FEATURES):])
    assert np.all(core.state_low <= state) and np.all(state <= core.state_high)


def test_a_policy_is_tied_to_its_forecast_profile():
    """A checkpoint's environment spec names forecast_bins when set (its observations hold 2 K more features),
    and leaves it out at 0, so that checkpoints written before the option existed still match the default."""
    from p2p_marl.training.checkpoint import environment_spec

    assert "forecast_bins" not in environment_spec(EnvConfig())["forecasts"]
    spec = environment_spec(EnvConfig(forecast_bins=12))
    assert spec["forecasts"]["forecast_bins"] == 12 and spec["obs_features"][-1] == "pv_bin_12"


def test_a_forecast_file_for_other_dates_names_the_first_day_that_differs(tmp_path):
    profiles = synthetic_profiles(3, 1.0, n_days=5, prosumer_share=0.7, seed=2)
    shifted = dataclasses.replace(profiles, day_of_year=profiles.day_of_year + np.array([0, 0, 1, 1, 1]))
    data, forecasts = tmp_path / "data.csv", tmp_path / "forecast.csv"
    write_profile_csv(data, profiles)
    write_profile_csv(forecasts, shifted)
    first = profiles.day_of_year[2]
    with pytest.raises(ConfigError, match=rf"forecast_csv .*forecast.csv and data_csv .*data.csv differ at their "
                                          rf"day 2: day of the year \(0 = 1 January\) {first + 1} against {first}; "
                                          rf"both must hold the same dates"):
        CommunityCore(EnvConfig(n_agents=3, dt_h=1.0, data_csv=str(data), forecaster="file",
                                forecast_csv=str(forecasts)))
