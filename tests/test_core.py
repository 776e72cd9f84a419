"""Physical and market invariants of the batched core, checked over many random inputs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import p2p_marl
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.battery import BatteryParams, end_settlement, feasible_power, next_energy
from p2p_marl.sim.community import OBS_FEATURES, CommunityCore

from conftest import assert_episode_invariants

CFG = EnvConfig(n_agents=6, n_days=12)
CORES = {market: CommunityCore(CFG.replace(market=market), batch_size=16)
         for market in ("uniform", "pay_as_bid", "mid_market")}


@settings(max_examples=200, deadline=None)
@given(capacity=st.floats(0.0, 20.0), max_kw=st.floats(0.0, 10.0), eta_c=st.floats(0.5, 1.0),
       eta_d=st.floats(0.5, 1.0), soc=st.floats(0.0, 1.0), setpoint=st.floats(-30.0, 30.0),
       dt_h=st.sampled_from([0.25, 0.5, 1.0]))
def test_battery_respects_limits_and_conserves_energy(capacity, max_kw, eta_c, eta_d, soc, setpoint, dt_h):
    battery = BatteryParams(np.array([capacity]), np.array([max_kw]), eta_c, eta_d, soc_min=0.1, soc_max=0.9)
    energy = np.array([0.1 * capacity + soc * 0.8 * capacity])
    charge, discharge = feasible_power(np.array([setpoint]), energy, battery, dt_h)
    assert charge[0] >= 0 and discharge[0] >= 0 and charge[0] * discharge[0] == 0
    assert charge[0] <= max_kw + 1e-12 and discharge[0] <= max_kw + 1e-12
    after = next_energy(energy, charge, discharge, battery, dt_h)
    assert 0.1 * capacity - 1e-9 <= after[0] <= 0.9 * capacity + 1e-9
    expected = energy + (eta_c * charge - discharge / eta_d) * dt_h
    assert after[0] == pytest.approx(expected[0], abs=1e-9)
    # A feasible request is followed exactly; an infeasible one is clipped towards zero, never reversed.
    assert np.sign(charge[0] - discharge[0]) in (0.0, np.sign(setpoint))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), market=st.sampled_from(sorted(CORES)), data=st.data())
def test_episode_invariants(seed, market, data):
    assert_episode_invariants(CORES[market], seed)


def test_cooperative_weight_mixes_in_the_community_mean_and_keeps_the_total():
    own = CommunityCore(CFG, batch_size=4)
    mixed = CommunityCore(CFG.replace(cooperative_weight=0.25), batch_size=4)
    own.reset(seed=5)
    mixed.reset(seed=5)
    actions = np.random.default_rng(0).uniform(0, 1, (4, 6, 3))
    _, r_own, _, info = own.step(actions)
    _, r_mixed, _, _ = mixed.step(actions)
    cost = info["cost"]
    np.testing.assert_allclose(r_mixed, -(0.75 * cost + 0.25 * cost.mean(1, keepdims=True)))
    np.testing.assert_allclose(r_mixed.sum(1), r_own.sum(1))


def test_batched_core_and_pettingzoo_env_give_identical_trajectories():
    env = p2p_marl.parallel_env(n_agents=6, n_days=12)
    core = CommunityCore(EnvConfig(n_agents=6, n_days=12), batch_size=1)
    obs_env, _ = env.reset(seed=11)
    obs_core = core.reset(seed=11)
    rng = np.random.default_rng(2)
    while env.agents:
        np.testing.assert_array_equal(np.stack([obs_env[a] for a in env.agents]), obs_core[0].astype(np.float32))
        np.testing.assert_array_equal(env.state(), core.state()[0].astype(np.float32))
        actions = rng.uniform([-1, 0, 0], [1, 1, 1], (6, 3))
        obs_env, rewards, _, truncations, infos = env.step({f"prosumer_{i}": actions[i] for i in range(6)})
        obs_core, reward_core, done, info_core = core.step(actions[None])
        assert [rewards[f"prosumer_{i}"] for i in range(6)] == reward_core[0].tolist()
        assert [infos[f"prosumer_{i}"]["voltage_pu"] for i in range(6)] == info_core["voltage_pu"][0].tolist()
        assert all(truncations.values()) == done


def test_same_seed_same_days_and_numbers():
    a = CommunityCore(CFG, batch_size=8)
    b = CommunityCore(CFG, batch_size=8)
    np.testing.assert_array_equal(a.reset(seed=7), b.reset(seed=7))
    np.testing.assert_array_equal(a.days, b.days)
    assert set(a.days) <= set(a.train_days)


@settings(max_examples=200, deadline=None)
@given(start_soc=st.floats(0.1, 0.95), end_soc=st.floats(0.1, 0.95), eta_c=st.floats(0.5, 1.0),
       eta_d=st.floats(0.5, 1.0))
def test_settlement_makes_draining_never_pay_and_values_surplus_as_export(start_soc, end_soc, eta_c, eta_d):
    """With the default prices, each stored kWh below the start costs more than it can ever earn inside the day
    (displacing an import at the highest retail price), and each kWh above it earns what exporting it would."""
    core = CommunityCore(EnvConfig(n_agents=1, prosumer_share=1.0, n_days=5, charge_efficiency=eta_c,
                                   discharge_efficiency=eta_d))
    capacity = core.battery.capacity_kwh
    settlement = end_settlement(start_soc * capacity, end_soc * capacity, core.battery,
                                core.end_refill_price_per_kwh, core.end_surplus_price_per_kwh)[0]
    moved_kwh = abs(end_soc - start_soc) * capacity[0]
    if end_soc < start_soc:
        # refill / eta_c >= peak * eta_d since eta_c * eta_d <= 1; equal (up to rounding) at lossless efficiencies
        assert settlement >= core.retail_per_kwh.max() * eta_d * moved_kwh * (1.0 - 1e-12)
    else:
        assert settlement == pytest.approx(-core.feed_in_per_kwh.min() * eta_d * moved_kwh)


def test_training_days_start_from_a_random_soc_and_chosen_days_from_soc_initial():
    cfg = CFG.replace(train_soc_initial_min=0.3, train_soc_initial_max=0.7)
    core = CommunityCore(cfg, batch_size=64)
    obs = core.reset(seed=3)
    start = core.start_energy_kwh[:, core.has_battery] / cfg.battery_kwh
    assert np.all((start >= 0.3) & (start <= 0.7)) and start.std() > 0.05
    np.testing.assert_allclose(obs[..., OBS_FEATURES.index("soc_start")][:, core.has_battery], start)
    core.reset(days=np.resize(core.test_days, 64))
    np.testing.assert_allclose(core.soc()[:, core.has_battery], cfg.soc_initial)
    for split in ("validation", "test"):
        chosen = CommunityCore(cfg.replace(split=split), batch_size=8)
        chosen.reset(seed=3)
        np.testing.assert_allclose(chosen.soc()[:, chosen.has_battery], cfg.soc_initial)


def test_turning_the_settlement_off_leaves_the_start_energy_free():
    days = np.array([0, 1])
    costs = {}
    for settle in (True, False):
        core = CommunityCore(CFG.replace(settle_end_energy=settle), batch_size=2)
        core.reset(days=days)
        total = 0.0
        while not core.done:  # drain every battery as fast as it allows
            _, _, _, info = core.step(np.tile([-1.0, 0.5, 0.0], (2, 6, 1)))
            total += info["cost"].sum()
        costs[settle] = total
        assert (info["end_settlement"].sum() > 0) == settle
    assert costs[True] > costs[False]


def test_validation_and_test_days_are_disjoint_from_training_days():
    core = CommunityCore(EnvConfig())
    train, validation, test = core.train_days, core.validation_days, core.test_days
    assert not set(train) & set(validation) and not set(train) & set(test) and not set(validation) & set(test)
    assert len(validation) == 37 and len(test) == 73


def test_test_split_only_samples_test_days():
    core = CommunityCore(CFG.replace(split="test"), batch_size=64)
    core.reset(seed=0)
    assert set(core.days) <= set(core.test_days)
    assert not set(core.train_days) & set(core.test_days)


def test_out_of_range_actions_are_clipped():
    core = CommunityCore(CFG, batch_size=2)
    clipped = CommunityCore(CFG, batch_size=2)
    core.reset(seed=1)
    clipped.reset(seed=1)
    _, r_wild, _, _ = core.step(np.full((2, 6, 3), [5.0, -3.0, 7.0]))
    _, r_edge, _, _ = clipped.step(np.full((2, 6, 3), [1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(r_wild, r_edge)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_is_rejected(bad):
    env = p2p_marl.parallel_env(n_agents=3, n_days=5)
    env.reset(seed=0)
    actions = {a: np.array([0.0, 0.5, 0.0]) for a in env.agents}
    actions["prosumer_1"] = np.array([bad, 0.5, 0.0])
    with pytest.raises(ValueError, match=r"^action of prosumer_1 is not finite: .*; actions must be finite numbers$"):
        env.step(actions)


@pytest.mark.parametrize("not_real", [np.full((2, 6, 3), "0.5"), np.full((2, 6, 3), 0.5 + 0.5j),
                                      np.full((2, 6, 3), None)])
def test_the_core_and_the_central_view_refuse_actions_of_anything_but_real_numbers(not_real):
    core = CommunityCore(CFG, batch_size=2)
    core.reset(seed=1)
    with pytest.raises(ValueError, match=rf"^actions \(setpoint, price and curtailment share per agent\) must be real "
                                         rf"numbers, got \[\[\[.*\.\.\..*\]\]\] of dtype {not_real.dtype}$"):
        core.step(not_real)  # on one line, summarised
    central = p2p_marl.CommunityCentralEnv(CFG)
    central.reset(seed=1)
    with pytest.raises(ValueError, match=rf"^action must be real numbers, got .* of dtype {not_real.dtype}$"):
        central.step(not_real[0].reshape(-1))
    vector = p2p_marl.CommunityCentralVectorEnv(num_envs=2, config=CFG)
    vector.reset(seed=1)
    with pytest.raises(ValueError, match=rf"^action must be real numbers, got .* of dtype {not_real.dtype}$"):
        vector.step(not_real.reshape(2, -1))


def test_a_ragged_action_is_refused_as_one():
    core = CommunityCore(CFG, batch_size=1)
    core.reset(seed=1)
    with pytest.raises(ValueError, match=r"^actions \(setpoint, .*\) must be a rectangular array of real numbers"):
        core.step([[[0.0, 0.5, 0.0]] * 5 + [[0.0, 0.5]]])


def test_boolean_and_integer_actions_are_real_numbers():
    core, floats = CommunityCore(CFG, batch_size=2), CommunityCore(CFG, batch_size=2)
    core.reset(seed=1)
    floats.reset(seed=1)
    np.testing.assert_array_equal(core.step(np.ones((2, 6, 3), dtype=bool))[1], floats.step(np.ones((2, 6, 3)))[1])
    np.testing.assert_array_equal(core.step(np.zeros((2, 6, 3), dtype=np.int8))[1], floats.step(np.zeros((2, 6, 3)))[1])


@pytest.mark.parametrize("field, value, message", [
    ("n_agents", 0, r"n_agents=0 is out of range; allowed \[1, 10000\]"),
    ("dt_h", 0.7, "dt_h=0.7 must divide 24 h"),
    ("charge_efficiency", 1.5, r"charge_efficiency=1.5 is out of range; allowed \(0.0, 1.0\]"),
    ("soc_initial", 0.99, r"soc_initial=0.99 must lie in \[soc_min, soc_max\]"),
    ("market", "vickrey", r"market='vickrey' is not allowed; choose one of \['uniform', 'pay_as_bid', 'mid_market', "
                          r"'sdr', 'bill_sharing'\]"),
    ("prosumer_share", float("nan"), "prosumer_share must be a finite number"),
    ("n_agents", 2.5, "n_agents must be an integer"),
    ("feed_in_per_kwh", 0.5, "feed_in_per_kwh=0.5 must not exceed the lowest retail price"),
    ("community_seed", -1, r"community_seed=-1 is out of range; allowed \[0, "),
    ("max_cycles", 49, r"max_cycles=49 is out of range; allowed None \(a whole day\) or an integer in \[1, 48\] "
                       r"\(the steps of a day at dt_h=0.5\)"),
    ("peak_end_h", 16.0, r"offpeak_end_h, peak_start_h, peak_end_h, offpeak_start_h = 7.0, 17.0, 16.0, 22.0: the "
                         r"tariff's hours must run offpeak_end_h <= peak_start_h <= peak_end_h <= offpeak_start_h"),
    ("offpeak_end_h", 19.0, "the tariff's hours must run"),
    ("offpeak_start_h", 20.0, "the tariff's hours must run"),
])
def test_invalid_config_names_the_field_and_range(field, value, message):
    with pytest.raises(ConfigError, match=message):
        p2p_marl.parallel_env(**{field: value})


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown environment config key\(s\) \['n_agent'\]"):
        p2p_marl.parallel_env(n_agent=3)


@pytest.mark.parametrize("days", [3.7, "5", True, float("nan"), [[1, 2]], [1, 2, 3]])
def test_reset_refuses_days_that_are_not_whole_indices_one_per_community(days):
    core = CommunityCore(CFG, batch_size=2)
    with pytest.raises(ValueError, match=r"days must be a whole day index in \[0, \d+\], or 2 of them \(one per "
                                         r"community\); got"):
        core.reset(days=days)


@pytest.mark.parametrize("seed", [-1, 1.5, "abc", True])
def test_reset_refuses_a_seed_that_is_not_a_non_negative_integer(seed):
    with pytest.raises(ValueError, match=r"seed must be None or an integer >= 0, got"):
        CommunityCore(CFG, batch_size=1).reset(seed=seed)
