"""The optional observation features (EnvConfig.extra_features): the community's battery SoCs, the household's
place on the feeder, the feeder's loading and the community's forecast window, added to what a household observes
and nothing else."""

import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from p2p_marl.config import EXTRA_FEATURES, ConfigError, EnvConfig, ordered_extra_features
from p2p_marl.sim.community import ACTION_DIM, OBS_FEATURES, CommunityCore
from p2p_marl.sim.feeder import power_flow_arrays

from conftest import meter_net_kwh

SMALL = dict(n_agents=6, n_days=20)
ONE_NUMBER = tuple(name for name in EXTRA_FEATURES if name != "community_window")  # one observed number each


def step_both(plain: CommunityCore, extra: CommunityCore, rng: np.random.Generator):
    """One step of random actions on a core without and one with extra features; their rewards and infos are
    equal. Returns both observations and whether the day is over."""
    actions = rng.uniform(-1.5, 1.5, (3, 6, ACTION_DIM))
    obs_plain, reward_plain, _, infos_plain = plain.step(actions)
    obs, reward, done, infos = extra.step(actions)
    np.testing.assert_array_equal(reward, reward_plain)
    for key in infos_plain:
        np.testing.assert_array_equal(infos[key], infos_plain[key], err_msg=key)
    return obs_plain, obs, done


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), forecast_bins=st.sampled_from([0, 4]),
       features=st.lists(st.sampled_from(ONE_NUMBER), min_size=1, max_size=3, unique=True))
def test_extra_features_are_the_community_soc_and_the_feeder_position_and_change_nothing_else(seed, forecast_bins,
                                                                                            features):
    """At every step of random episodes: community_soc is the batteries' mean SoC, community_soc_spread their
    standard deviation / 0.5, feeder_position the own bus's voltage sensitivity / the largest (1 for the weakest
    bus), all within the observation's bounds, after the features the core observes without them, which are
    unchanged, as are the state, the rewards and every info."""
    plain = CommunityCore(EnvConfig(**SMALL, forecast_bins=forecast_bins), batch_size=3)
    extra = CommunityCore(EnvConfig(**SMALL, forecast_bins=forecast_bins, extra_features=features), batch_size=3)
    assert extra.obs_features == plain.obs_features + tuple(name for name in ONE_NUMBER if name in features)
    assert extra.state_dim == plain.state_dim
    rng = np.random.default_rng(seed)
    obs_plain, obs = plain.reset(seed=seed), extra.reset(seed=seed)
    batteries = extra.has_battery
    sensitivity = extra.feeder.voltage_sens_p_pu_per_kw[np.arange(6), extra.feeder.household_bus]
    done = False
    while not done:
        np.testing.assert_array_equal(obs[..., :plain.obs_dim], obs_plain)
        np.testing.assert_array_equal(extra.state(obs), plain.state(obs_plain))
        assert np.all(extra.obs_low <= obs) and np.all(obs <= extra.obs_high)
        observed = dict(zip(extra.obs_features, np.moveaxis(obs, -1, 0)))
        soc = observed["soc"][:, batteries]
        expected = {"community_soc": soc.mean(axis=1), "community_soc_spread": soc.std(axis=1) / 0.5}
        for name, value in expected.items():
            if name in features:
                np.testing.assert_allclose(observed[name], np.repeat(value[:, None], 6, axis=1), atol=1e-12)
        if "feeder_position" in features:
            np.testing.assert_allclose(observed["feeder_position"], np.tile(sensitivity / sensitivity.max(), (3, 1)))
            assert observed["feeder_position"][0, np.argmax(sensitivity)] == 1.0
        obs_plain, obs, done = step_both(plain, extra, rng)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), forecast_bins=st.sampled_from([1, 4, 12]),
       others=st.lists(st.sampled_from(ONE_NUMBER), max_size=3, unique=True))
def test_the_community_window_is_the_households_mean_forecast_bins_and_changes_nothing_else(seed, forecast_bins,
                                                                                         others):
    """community_window observes, after the other extra features, the households' mean of each load and PV bin,
    the same for every household of a community, at every step of random episodes, within the bounds; the rest
    of the observation, the state, the rewards and the infos are those without it."""
    plain = CommunityCore(EnvConfig(**SMALL, forecast_bins=forecast_bins, extra_features=others), batch_size=3)
    extra = CommunityCore(EnvConfig(**SMALL, forecast_bins=forecast_bins,
                                    extra_features=[*others, "community_window"]), batch_size=3)
    bins = range(1, forecast_bins + 1)
    window = [f"community_{kind}_bin_{k}" for kind in ("load", "pv") for k in bins]
    assert extra.obs_features == plain.obs_features + tuple(window)
    own = [plain.obs_features.index(f"{kind}_bin_{k}") for kind in ("load", "pv") for k in bins]
    rng = np.random.default_rng(seed)
    obs_plain, obs = plain.reset(seed=seed), extra.reset(seed=seed)
    done = False
    while True:  # every observation, the one after the day's last step included
        np.testing.assert_array_equal(obs[..., :plain.obs_dim], obs_plain)
        np.testing.assert_array_equal(extra.state(obs), plain.state(obs_plain))
        assert np.all(extra.obs_low <= obs) and np.all(obs <= extra.obs_high)
        mean_bins = obs_plain[..., own].mean(axis=1, keepdims=True)
        np.testing.assert_allclose(obs[..., plain.obs_dim:], np.broadcast_to(mean_bins, obs[..., plain.obs_dim:].shape),
                                   rtol=0, atol=1e-12)
        if done:
            break
        obs_plain, obs, done = step_both(plain, extra, rng)


@pytest.mark.parametrize("features", [["community_window"], ["community_soc", "feeder_position", "community_window"],
                                      list(ONE_NUMBER)])
def test_the_observed_features_name_the_extra_features_they_came_from(features):
    """A checkpoint records the features it observes; the settings it trained with are read back from them."""
    config = EnvConfig(**SMALL, forecast_bins=4, extra_features=features)
    assert ordered_extra_features(CommunityCore(config).obs_features) == config.extra_features


def test_the_community_window_needs_forecast_bins():
    with pytest.raises(ConfigError, match=r"^extra_features=\['community_window'\]: community_window needs "
                                         r"forecast_bins > 0 \(here 0\).*set forecast_bins to a divisor of 48"):
        EnvConfig(extra_features=["community_window"])


def test_a_community_without_batteries_observes_zero_community_soc():
    core = CommunityCore(EnvConfig(**SMALL, prosumer_share=0.0, extra_features=list(ONE_NUMBER)))
    obs = core.reset(seed=0)
    n = len(OBS_FEATURES)
    np.testing.assert_array_equal(obs[..., n:n + 2], 0.0)
    assert obs[..., n + 2].max() == 1.0


def test_extra_features_are_observed_in_their_own_order_whatever_order_the_config_lists():
    config = EnvConfig(extra_features=["feeder_position", "community_soc"])
    assert config.extra_features == ["community_soc", "feeder_position"]
    assert config == EnvConfig(extra_features=["community_soc", "feeder_position"])


@pytest.mark.parametrize("value", [["soc_of_everyone"], "community_soc", ["community_soc", "community_soc"], [3]])
def test_an_unknown_or_repeated_extra_feature_is_named_with_the_allowed_ones(value):
    message = (rf"^extra_features={re.escape(repr(value))} must list distinct names from "
               rf"{re.escape(repr(list(EXTRA_FEATURES)))} \(or none: \[\]\)$")
    with pytest.raises(ConfigError, match=message):
        EnvConfig(extra_features=value)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), rating_kva=st.sampled_from([4.0, 12.0, 85.0]),
       transformer_kva=st.sampled_from([3.0, 10.0, 100.0]))
@example(seed=0, rating_kva=4.0, transformer_kva=100.0).via("lines overloaded")
@example(seed=0, rating_kva=85.0, transformer_kva=3.0).via("the transformer overloaded")
@example(seed=0, rating_kva=85.0, transformer_kva=100.0).via("within the ratings")
def test_the_feeder_loading_is_the_last_steps_most_loaded_element_against_its_rating(seed, rating_kva,
                                                                                    transformer_kva):
    """feeder_loading observes, at every step of random episodes, the highest loading of a line or the transformer
    in the step before, as a share of its rating, / 2 (0 before the day's first step, also after a second reset),
    clipped to [0, 1]: above 0.5 exactly where that step overloaded an element (the feeder KPI), the same for
    every household."""
    config = EnvConfig(**SMALL, extra_features=["feeder_loading"], line_rating_kva=rating_kva,
                       transformer_kva=transformer_kva)
    core = CommunityCore(config, batch_size=3)
    column = core.obs_features.index("feeder_loading")
    rng = np.random.default_rng(seed)
    core.reset(seed=seed)
    core.step(rng.uniform(-1.5, 1.5, (3, 6, ACTION_DIM)))
    obs, done = core.reset(seed=seed + 1), False
    np.testing.assert_array_equal(obs[..., column], 0.0)
    while not done:
        days, t = core.days.copy(), core.t
        obs, _, done, infos = core.step(rng.uniform(-1.5, 1.5, (3, 6, ACTION_DIM)))
        net_kw = meter_net_kwh(infos) / config.dt_h
        q_kvar = core.reactive_kvar(infos["load_kwh"] / config.dt_h, days, t)
        *_, line_flow_kva, _, transformer_flow_kva = power_flow_arrays(core.feeder, net_kw, q_kvar)
        loading = np.maximum((line_flow_kva / rating_kva).max(axis=1), transformer_flow_kva / transformer_kva)
        np.testing.assert_allclose(obs[..., column], np.repeat(np.clip(loading / 2.0, 0.0, 1.0)[:, None], 6, axis=1),
                                   rtol=1e-9, atol=1e-12)
        assert np.all(core.obs_low <= obs) and np.all(obs <= core.obs_high)
        overloaded = infos["feeder_overload_kva"][:, 0] > 0
        np.testing.assert_array_equal(obs[:, 0, column] > 0.5, overloaded)
