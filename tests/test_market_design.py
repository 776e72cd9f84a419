"""Market design options: network charges on P2P trades, the feeder's losses, and the optimum under them.

The clearing rules themselves (sdr, bill_sharing) are pinned in tests/test_auction.py; here they run inside the
core, with fees, over random actions.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.optimal import OptimalPolicy
from p2p_marl.baselines.rules import GridOnly, IdleMidPrice, SelfConsumption, TimeOfUse, ZeroIntelligence
from p2p_marl.config import ConfigError, EnvConfig, make_config
from p2p_marl.evaluation.kpis import day_kpis, jain_index
from p2p_marl.evaluation.market_design import _mean, core_observed_by
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.sim.auction import BUY, SELL
from p2p_marl.sim.community import CommunityCore
from p2p_marl.sim.feeder import household_distance_ohm, radial_feeder, to_pandapower
from p2p_marl.sim.fees import fee_matrix_per_kwh, p2p_fees
from conftest import meter_net_kwh
from test_kpis import DAY, DT_H, GRID_ONLY_BILLS, make_infos

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FEE_DESIGNS = [dict(p2p_fee_per_kwh=0.02, p2p_fee_basis=basis, p2p_fee_payer=payer)
               for basis in ("flat", "distance") for payer in ("buyer", "seller", "both")]
MARKETS = ("uniform", "pay_as_bid", "mid_market", "sdr", "bill_sharing")
CFG = EnvConfig(n_agents=6, n_days=12)


def shipped(name: str, **overrides) -> EnvConfig:
    return make_config(EnvConfig(**yaml.safe_load((CONFIGS / "env" / f"{name}.yaml").read_text())), **overrides)


# ------------------------------------------------------------------ fees on a cleared book

@st.composite
def trades(draw):
    """(traded_kwh (2, B, N) with equal P2P buys and sells per community, the feeder of N households)."""
    b, n = draw(st.integers(1, 4)), draw(st.integers(2, 9))
    is_buyer = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    kwh = st.one_of(st.integers(0, 50).map(lambda tenths: tenths / 10), st.floats(1e-6, 5.0))
    weight = np.array(draw(st.lists(kwh, min_size=b * n, max_size=b * n))).reshape(b, n)
    buy, sell = np.where(is_buyer, weight, 0.0), np.where(is_buyer, 0.0, weight)
    volume = np.minimum(buy.sum(axis=1), sell.sum(axis=1))[:, None]
    scale = lambda side: np.divide(side * volume, side.sum(axis=1, keepdims=True), out=np.zeros_like(side),
                                   where=side.sum(axis=1, keepdims=True) > 0)
    feeder = radial_feeder(n, n_laterals=draw(st.integers(1, 3)), segment_km=0.25, r_ohm_per_km=0.868,
                           x_ohm_per_km=0.086)
    return np.stack([scale(buy), scale(sell)]), feeder


@settings(max_examples=200, deadline=None)
@given(market=trades(), fee=st.floats(0.0, 0.1), basis=st.sampled_from(["flat", "distance"]))
def test_fees_charge_the_pro_rata_flows_and_the_payer_only_moves_them(market, fee, basis):
    traded_kwh, feeder = market
    matrix = fee_matrix_per_kwh(feeder, fee, basis)
    fees = {payer: p2p_fees(traded_kwh, fee, matrix, payer) for payer in ("buyer", "seller", "both")}
    buy, sell = traded_kwh[BUY], traded_kwh[SELL]
    volume = buy.sum(axis=1)
    rate = np.full((buy.shape[1],) * 2, fee) if matrix is None else matrix
    # Each buyer's energy comes from the sellers in proportion to their sales; each kWh pays its pair's rate.
    flows = np.divide(buy[:, :, None] * sell[:, None, :], volume[:, None, None],
                      out=np.zeros(buy.shape + buy.shape[1:]), where=volume[:, None, None] > 0)
    total = (flows * rate).sum(axis=(1, 2))
    for payer, fee_n in fees.items():
        assert np.all(fee_n >= 0.0)
        np.testing.assert_allclose(fee_n.sum(axis=1), total, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(fees["buyer"][sell > 0], 0.0)
    np.testing.assert_array_equal(fees["seller"][buy > 0], 0.0)
    np.testing.assert_allclose(fees["both"], 0.5 * (fees["buyer"] + fees["seller"]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fees["buyer"], (flows * rate).sum(axis=2), rtol=1e-9, atol=1e-12)
    if matrix is None:
        np.testing.assert_allclose(fees["buyer"], fee * buy, rtol=1e-12)


def test_distance_fees_grow_with_the_path_and_average_the_flat_rate():
    feeder = radial_feeder(6, n_laterals=2, segment_km=0.25, r_ohm_per_km=0.868, x_ohm_per_km=0.086)
    distance = household_distance_ohm(feeder)
    z_segment = np.hypot(0.868, 0.086) * 0.25
    # Households 0, 2, 4 form one lateral (1, 2, 3 segments out), 1, 3, 5 the other.
    assert distance[0, 2] == pytest.approx(z_segment)
    assert distance[0, 4] == pytest.approx(2 * z_segment)
    assert distance[0, 1] == pytest.approx(2 * z_segment)  # through the busbar
    assert distance[4, 5] == pytest.approx(6 * z_segment)
    np.testing.assert_allclose(distance, distance.T)
    np.testing.assert_array_equal(np.diag(distance), 0.0)
    matrix = fee_matrix_per_kwh(feeder, 0.03, "distance")
    assert matrix[~np.eye(6, dtype=bool)].mean() == pytest.approx(0.03)


# ------------------------------------------------------------------ fees in the core

CORES = {(market, i): CommunityCore(CFG.replace(market=market, **design), batch_size=8)
         for market in MARKETS for i, design in enumerate(FEE_DESIGNS[::2] + FEE_DESIGNS[1:2])}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), key=st.sampled_from(sorted(CORES)))
def test_bills_with_fees_balance_energy_and_money(seed, key):
    """Energy balance at every meter, P2P money balanced within the community, P2P prices within the tariffs, and
    every bill made of its parts with the fee on top: the community's bills less what leaves it (grid bill, fees,
    wear, penalties, settlement) are zero."""
    core = CORES[key]
    rng = np.random.default_rng(seed)
    core.reset(seed=seed)
    while not core.done:
        actions = np.stack([rng.uniform(-1, 1, (8, 6)), rng.uniform(0, 1, (8, 6)), rng.uniform(0, 0.3, (8, 6))],
                           axis=-1)
        _, reward, _, info = core.step(actions)
        net = meter_net_kwh(info)
        supply = info["p2p_buy_kwh"] - info["p2p_sell_kwh"] + info["grid_import_kwh"] - info["grid_export_kwh"]
        np.testing.assert_allclose(net, supply, atol=1e-9)
        np.testing.assert_allclose(info["p2p_payment"].sum(1), info["p2p_revenue"].sum(1), atol=1e-9)
        price = info["clearing_price"]
        assert np.all(price >= info["feed_in_price"] - 1e-12) and np.all(price <= info["retail_price"] + 1e-12)
        traded_kwh = np.stack([info["p2p_buy_kwh"], info["p2p_sell_kwh"]])
        cfg = core.config
        expected_fee = p2p_fees(traded_kwh, cfg.p2p_fee_per_kwh, core.p2p_fee_matrix_per_kwh, cfg.p2p_fee_payer)
        np.testing.assert_allclose(info["p2p_fee"], expected_fee, atol=1e-12)
        assert np.all(info["p2p_fee"] >= 0.0)
        bill = (info["grid_import_kwh"] * info["retail_price"] - info["grid_export_kwh"] * info["feed_in_price"]
                + info["p2p_payment"] - info["p2p_revenue"] + info["p2p_fee"] + info["degradation_cost"]
                + info["penalty"] + info["end_settlement"])
        np.testing.assert_allclose(info["cost"], bill, atol=1e-12)
        np.testing.assert_allclose(reward, -info["cost"], atol=1e-12)
        leaves = (info["grid_import_kwh"] * info["retail_price"] - info["grid_export_kwh"] * info["feed_in_price"]
                  + info["p2p_fee"] + info["degradation_cost"] + info["penalty"] + info["end_settlement"])
        np.testing.assert_allclose(info["cost"].sum(1), leaves.sum(1), atol=1e-9)


def test_no_fee_charges_nothing_and_a_fee_charges_the_traded_volume():
    days = CommunityCore(CFG).test_days[:2]
    free = rollout(CommunityCore(CFG, batch_size=2), SelfConsumption(), days)
    charged = rollout(CommunityCore(CFG.replace(p2p_fee_per_kwh=0.01), batch_size=2), SelfConsumption(), days)
    np.testing.assert_array_equal(free["p2p_fee"], 0.0)
    assert free["p2p_buy_kwh"].sum() > 0
    np.testing.assert_allclose(charged["p2p_fee"], 0.01 * charged["p2p_buy_kwh"])  # the buyer pays by default
    np.testing.assert_allclose(charged["cost"] - free["cost"], charged["p2p_fee"], atol=1e-12)


@pytest.mark.parametrize("key, value, message", [
    ("p2p_fee_per_kwh", -0.01, "p2p_fee_per_kwh"),
    ("p2p_fee_basis", "pairwise", "p2p_fee_basis"),
    ("p2p_fee_payer", "utility", "p2p_fee_payer"),
    ("market", "vickrey", "bill_sharing"),
])
def test_bad_market_design_settings_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        EnvConfig(**{key: value})


# ------------------------------------------------------------------ the optimum under fees


@pytest.mark.parametrize("design", [dict(p2p_fee_per_kwh=0.02),
                                    dict(p2p_fee_per_kwh=0.03, p2p_fee_basis="distance", p2p_fee_payer="both",
                                         market="sdr"),
                                    dict(p2p_fee_per_kwh=0.12, market="bill_sharing")])
def test_the_optimum_replays_to_its_cost_and_bounds_every_rule_under_fees(design):
    """Acted out, the environment charges exactly the schedule's cost (fees included), the LP's objective is a
    lower bound on it and on every benchmark; a flat fee is exact (cost = bound), a fee above the spread of some
    steps leaves those steps' trades to the grid."""
    config = shipped("community_10", **design)
    days = CommunityCore(config).test_days[:2]
    core = CommunityCore(config, batch_size=days.size)
    policy = OptimalPolicy()
    infos = rollout(core, policy, days)
    cost = infos["cost"].sum(axis=(1, 2))
    schedules = policy.schedules
    np.testing.assert_allclose(cost, [s.cost for s in schedules], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(infos["p2p_fee"].sum(axis=(1, 2)), [s.p2p_fee for s in schedules], rtol=1e-6,
                               atol=1e-9)
    lower_bound = np.array([s.lower_bound for s in schedules])
    assert np.all(lower_bound <= cost + 1e-9)
    if design.get("p2p_fee_basis", "flat") == "flat":
        np.testing.assert_allclose(lower_bound, cost, rtol=1e-9)
    for benchmark in (GridOnly(), IdleMidPrice(), SelfConsumption(), TimeOfUse(), ZeroIntelligence(seed=0)):
        assert np.all(lower_bound <= rollout(core, benchmark, days)["cost"].sum(axis=(1, 2)) + 1e-9), benchmark.name
    # Steps the plan leaves to the grid trade nothing (up to rounding of a meter planned at exactly zero).
    volume_kwh = infos["p2p_buy_kwh"].sum(axis=2)
    assert volume_kwh[~np.stack([s.p2p_trade for s in schedules])].max(initial=0.0) < 1e-9
    if design["p2p_fee_per_kwh"] > 0.1:  # above the off-peak and shoulder spreads: no P2P trade in those steps
        assert volume_kwh[:, core.retail_per_kwh - core.feed_in_per_kwh < 0.12].max() < 1e-9


# ------------------------------------------------------------------ losses

# Worst relative error of the LinDistFlow loss estimate against pandapower's AC losses, over the steps below.
LOSS_RELATIVE_ERROR = {"community_10": 0.05, "community_10_strong": 0.015, "community_50": 0.005}


@pytest.mark.parametrize("community", sorted(LOSS_RELATIVE_ERROR))
def test_feeder_losses_match_pandapower_ac(community):
    """The feeder_loss_kwh of the infos against an AC power flow of the same step, on the busiest steps of three
    test days of self-consumption: within 4.8 % on the weak default feeder (the linear flows neglect the
    losses they carry), 1.5 % on the strong one and 0.5 % on community_50."""
    pp = pytest.importorskip("pandapower")
    config = shipped(community)
    core = CommunityCore(config, batch_size=3)
    infos = rollout(core, SelfConsumption(), core.test_days[:3])
    net_kw = meter_net_kwh(infos).reshape(-1, config.n_agents) / config.dt_h
    q_kvar = infos["load_kwh"].reshape(-1, config.n_agents) / config.dt_h * core.q_per_p
    loss_kw = infos["feeder_loss_kwh"][:, :, 0].reshape(-1) / config.dt_h
    busiest = np.argsort(loss_kw)[::-1][::12][:8]  # every 12th of the busiest steps, from high to moderate flows
    errors = []
    for step in busiest:
        net = to_pandapower(core.feeder, net_kw[step], q_kvar[step])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=False)
        ac_kw = 1e3 * net.res_line.pl_mw.sum()
        errors.append(abs(loss_kw[step] - ac_kw) / ac_kw)
    assert max(errors) < LOSS_RELATIVE_ERROR[community], max(errors)
    loss_kwh = infos["feeder_loss_kwh"]  # per community, repeated over the households
    np.testing.assert_array_equal(loss_kwh, np.broadcast_to(loss_kwh[:, :, :1], loss_kwh.shape))


# ------------------------------------------------------------------ market-design KPIs


def test_a_learner_that_observes_the_forecast_bins_gets_a_core_of_the_same_design_that_gives_them():
    core = CommunityCore(CFG.replace(p2p_fee_per_kwh=0.02), batch_size=2)
    learner = TimeOfUse()
    learner.observation_settings = {"forecast_bins": 4}  # as load_policy marks a learner trained with the bins
    cores: dict[str, CommunityCore] = {}
    observing = core_observed_by(learner, core, cores)
    assert observing.config == core.config.replace(forecast_bins=4)
    assert observing.profiles is core.profiles and observing.batch_size == core.batch_size
    assert core_observed_by(learner, core, cores) is observing  # built once per design and setting
    learner.observation_settings = {"forecast_bins": 0}
    assert core_observed_by(learner, core, cores) is core
    assert core_observed_by(TimeOfUse(), core, cores) is core


def test_market_design_kpis_by_hand():
    kpis = day_kpis(DAY, DT_H, grid_only_bills=GRID_ONLY_BILLS)
    # Savings 0.1175 and 0.17: Jain (0.2875)^2 / (2 (0.1175^2 + 0.17^2)); nobody is worse off.
    assert kpis["savings_jain"] == pytest.approx([0.2875**2 / (2 * (0.1175**2 + 0.17**2))])
    assert kpis["share_worse_off"] == pytest.approx([0.0])
    # The utility sells 3.5 kWh at 0.13 and buys 1 kWh at 0.04; no fee, no loss in this hand-made day.
    assert kpis["utility_revenue"] == pytest.approx([3.5 * 0.13 - 0.04])
    assert kpis["p2p_fee"] == pytest.approx([0.0])
    worse = day_kpis(DAY, DT_H, grid_only_bills=GRID_ONLY_BILLS - np.array([[0.2, 0.0]]))
    assert worse["share_worse_off"] == pytest.approx([0.5])  # the prosumer now pays 0.0825 more than grid-only
    fees = make_infos(1, 2, 2, grid_import_kwh=1.0, retail_price=[[0.2, 0.1]], p2p_fee=[[[0.01, 0.0], [0.0, 0.02]]],
                      feeder_loss_kwh=[[[0.3, 0.3], [0.1, 0.1]]])  # repeated over households
    kpis = day_kpis(fees, DT_H)
    assert kpis["p2p_fee"] == pytest.approx([0.03])
    assert kpis["utility_revenue"] == pytest.approx([2 * 0.2 + 2 * 0.1 + 0.03])
    assert kpis["feeder_loss_kwh"] == pytest.approx([0.4])


@settings(max_examples=200, deadline=None)
@given(savings=st.lists(st.floats(-10.0, 10.0), min_size=1, max_size=12), scale=st.floats(0.01, 100.0))
def test_jain_index_lies_in_the_unit_interval_and_ignores_scale(savings, scale):
    values = np.array(savings)
    index = jain_index(values)
    assert 0.0 <= index <= 1.0 + 1e-12
    assert jain_index(scale * values) == pytest.approx(index, rel=1e-9, abs=1e-12)
    assert jain_index(np.full(5, 3.0)) == pytest.approx(1.0) and jain_index(np.zeros(4)) == 1.0
    assert jain_index(np.array([0.0, 0.0, 0.0, 2.0])) == pytest.approx(0.25)


def test_mpc_with_the_oracle_is_the_optimum_under_a_fee():
    """MPC plans on the same LP, fee included: with perfect forecasts every re-plan continues the optimum."""
    config = shipped("community_10", p2p_fee_per_kwh=0.05, max_cycles=16)  # above the off-peak spread
    days = CommunityCore(config).test_days[:2]
    core = CommunityCore(config, batch_size=days.size)
    optimal = rollout(core, OptimalPolicy(), days)["cost"].sum(axis=(1, 2))
    mpc = rollout(core, MPCPolicy("oracle"), days)["cost"].sum(axis=(1, 2))
    np.testing.assert_allclose(mpc, optimal, rtol=1e-6)


def test_a_kpi_without_a_finite_day_averages_to_nan_quietly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(_mean(np.full((3, 4), np.nan)))
        assert _mean(np.array([[np.nan, 1.0], [np.nan, np.nan], [3.0, 5.0]])) == pytest.approx(2.5)
