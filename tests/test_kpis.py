"""KPIs on small hand-computed days, plus their ranges and invariances over random inputs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from p2p_marl.baselines.rules import RandomActions
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.kpis import (COST_PARTS, VIOLATION_TOLERANCE, agent_bills, day_kpis, gini,
                                     share_of_optimal_saving)
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.sim.community import INFO_KEYS, CommunityCore

COMMUNITY_KEYS = ("clearing_price", "retail_price", "feed_in_price", "feeder_undervoltage_pu",
                  "feeder_overvoltage_pu", "feeder_overload_kva")


def make_infos(n_days: int, steps: int, n_agents: int, **values) -> dict[str, np.ndarray]:
    """(B, T, N) infos, zero where not given; community-wide keys may be given per step (B, T)."""
    infos = {key: np.zeros((n_days, steps, n_agents)) for key in INFO_KEYS}
    for key, value in values.items():
        value = np.asarray(value, dtype=np.float64)
        if key in COMMUNITY_KEYS:
            value = np.broadcast_to(value[..., None], (n_days, steps, n_agents))
        infos[key] = np.broadcast_to(value, (n_days, steps, n_agents)).copy()
    return infos


# One day, three half-hour steps, a prosumer (0) with PV and battery and a consumer (1); retail 0.13, feed-in 0.04.
#   step 0: prosumer load 1, PV 3, charges 1 -> sells 1 kWh P2P at 0.10; consumer needs 2, imports 1.
#   step 1: prosumer load 1, discharges 0.5, imports 0.5; consumer imports 2. No P2P trade (price reported 0.085).
#   step 2: prosumer load 1, PV 4 -> sells 2 kWh P2P at 0.06 and exports 1; consumer buys its 2 kWh P2P.
# Costs: import * 0.13 - export * 0.04 + P2P payment - P2P revenue + 0.005 per kWh of battery throughput.
DAY = make_infos(
    1, 3, 2,
    load_kwh=[[[1, 2], [1, 2], [1, 2]]],
    pv_kwh=[[[3, 0], [0, 0], [4, 0]]],
    battery_charge_kwh=[[[1, 0], [0, 0], [0, 0]]],
    battery_discharge_kwh=[[[0, 0], [0.5, 0], [0, 0]]],
    p2p_buy_kwh=[[[0, 1], [0, 0], [0, 2]]],
    p2p_sell_kwh=[[[1, 0], [0, 0], [2, 0]]],
    p2p_payment=[[[0, 0.1], [0, 0], [0, 0.12]]],
    p2p_revenue=[[[0.1, 0], [0, 0], [0.12, 0]]],
    grid_import_kwh=[[[0, 1], [0.5, 2], [0, 0]]],
    grid_export_kwh=[[[0, 0], [0, 0], [1, 0]]],
    clearing_price=[[0.10, 0.085, 0.06]],
    retail_price=[[0.13, 0.13, 0.13]],
    feed_in_price=[[0.04, 0.04, 0.04]],
    degradation_cost=[[[0.005, 0], [0.0025, 0], [0, 0]]],
    cost=[[[-0.1 + 0.005, 0.1 + 0.13], [0.065 + 0.0025, 0.26], [-0.12 - 0.04, 0.12]]],
)
DT_H = 0.5
# Grid-only bills of the same day: prosumer exports 2, imports 1, exports 3; consumer imports 6 kWh.
GRID_ONLY_BILLS = np.array([[-2 * 0.04 + 0.13 - 3 * 0.04, 6 * 0.13]])


def test_agent_bills_and_community_cost():
    np.testing.assert_allclose(agent_bills(DAY), [[-0.1875, 0.61]])
    assert day_kpis(DAY, DT_H)["community_cost"] == pytest.approx([0.4225])


def test_energy_and_market_kpis_by_hand():
    kpis = day_kpis(DAY, DT_H)
    # E_load = 9, E_pv = 7, E_imp = 3.5, E_exp = 1, V_p2p = 3 kWh.
    assert kpis["grid_import_kwh"] == pytest.approx([3.5])
    assert kpis["grid_export_kwh"] == pytest.approx([1.0])
    assert kpis["self_sufficiency"] == pytest.approx([1 - 3.5 / 9])
    assert kpis["self_consumption"] == pytest.approx([1 - 1 / 7])
    assert kpis["p2p_volume_kwh"] == pytest.approx([3.0])
    assert kpis["p2p_share_of_demand"] == pytest.approx([3 / 9])
    # Volume-weighted over the two steps with trade; the no-trade step's nominal price carries no weight.
    assert kpis["clearing_price_mean"] == pytest.approx([(1 * 0.10 + 2 * 0.06) / 3])
    assert kpis["clearing_price_std"] == pytest.approx([np.sqrt((1 * (0.08 / 3) ** 2 + 2 * (0.04 / 3) ** 2) / 3)])
    # Net import per step: 1, 2.5, -1 kWh -> peak 2.5 kWh in half an hour = 5 kW.
    assert kpis["peak_grid_import_kw"] == pytest.approx([5.0])


def test_cost_parts_by_hand():
    """Grid energy 3.5 kWh * 0.13 - 1 kWh * 0.04, wear 0.0075; P2P payments cancel, nothing else is paid."""
    kpis = day_kpis(DAY, DT_H)
    assert kpis["grid_energy_cost"] == pytest.approx([3.5 * 0.13 - 0.04])
    assert kpis["battery_wear_cost"] == pytest.approx([0.0075])
    assert kpis["other_cost"] == pytest.approx([0.0], abs=1e-15)  # the named parts are the whole bill
    assert COST_PARTS[-1] == "other_cost"


# Designs whose every part of the cost is non-zero somewhere: a feeder that binds (penalties), fees and loss
# charges, pay-as-bid, and a shared battery (its wear and end-of-day settlement are other_cost).
COST_DESIGNS = {
    "default": {},
    "fees, loss charges, pay as bid": dict(market="pay_as_bid", p2p_fee_per_kwh=0.02, loss_allocation="net_energy"),
    "shared battery": dict(shared_battery_kwh=30.0, shared_battery_kw=15.0, shared_battery_bus=3),
    "shared battery, pay as bid, fees": dict(shared_battery_kwh=30.0, shared_battery_kw=15.0, market="pay_as_bid",
                                             p2p_fee_per_kwh=0.02, loss_allocation="p2p_volume"),
}


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), design=st.sampled_from(sorted(COST_DESIGNS)))
def test_cost_parts_sum_to_the_community_cost(seed, design):
    """Under random actions, what COST_PARTS leaves to other_cost is exactly the shared battery's bill less its grid
    energy, P2P payments and fees (its wear and settlement), and nothing without one: the named parts are the
    households' whole bills, whatever the clearing rule, fees and loss charges."""
    core = CommunityCore(EnvConfig(n_agents=6, **COST_DESIGNS[design]), batch_size=4)
    days = np.random.default_rng(seed).choice(core.test_days, size=4)
    infos = rollout(core, RandomActions(seed=seed), days)
    kpis = day_kpis(infos, core.dt_h)
    if core.has_shared_battery:
        shared = {key: infos[f"shared_battery_{key}"][:, :, 0] for key in
                  ("bill", "grid_import_kwh", "grid_export_kwh", "p2p_payment", "p2p_fee")}
        battery_grid = (shared["grid_import_kwh"] * infos["retail_price"][:, :, 0]
                        - shared["grid_export_kwh"] * infos["feed_in_price"][:, :, 0])
        expected = (shared["bill"] - battery_grid - shared["p2p_payment"] - shared["p2p_fee"]).sum(axis=1)
        np.testing.assert_allclose(kpis["other_cost"], expected, atol=1e-9)
        assert np.all(np.abs(expected) > 0)
    else:
        np.testing.assert_allclose(kpis["other_cost"], 0.0, atol=1e-9)
    assert kpis["network_penalty"].sum() > 0 and np.all(kpis["battery_wear_cost"] > 0)
    if "fees" in design:
        assert np.all(kpis["p2p_fee"] > 0) and np.all(kpis["loss_charge"] > 0)


def test_savings_fairness_and_share_of_optimal_saving_by_hand():
    kpis = day_kpis(DAY, DT_H, grid_only_bills=GRID_ONLY_BILLS, optimal_cost=np.array([0.2]))
    # Grid-only: prosumer -0.07, consumer 0.78 (community 0.71); savings 0.1175 and 0.17.
    assert kpis["saving_vs_grid_only"] == pytest.approx([0.2875])
    # Gini of two values: 2 |a - b| / (2 * 2 * (a + b)).
    assert kpis["savings_gini"] == pytest.approx([2 * 0.0525 / (4 * 0.2875)])
    assert kpis["share_of_optimal_saving"] == pytest.approx([0.2875 / (0.71 - 0.2)])


def test_network_kpis_by_hand():
    infos = make_infos(1, 4, 3, feeder_undervoltage_pu=[[0.0, 0.01, 0.0, 0.0]],
                       feeder_overvoltage_pu=[[0.02, 0.0, 0.0, 0.005]],
                       feeder_overload_kva=[[0.0, 0.0, 5.0, 1.0]],
                       penalty=[[[0.1, 0.0, 0.0], [0.0, 0.05, 0.05], [0, 0, 0], [0, 0, 0]]])
    kpis = day_kpis(infos, dt_h=0.25)
    assert kpis["voltage_violation_steps"] == pytest.approx([3])
    assert kpis["voltage_violation_pu"] == pytest.approx([0.035])
    assert kpis["line_overload_steps"] == pytest.approx([2])
    assert kpis["line_overload_kvah"] == pytest.approx([6.0 * 0.25])
    assert kpis["network_penalty"] == pytest.approx([0.2])


def test_excess_below_the_tolerance_is_rounding_not_a_violation():
    """The optimum plans to the band's edge and replays up to a float rounding step beyond it: such steps do not
    count (steps, days), while the magnitudes keep every excess. The tolerance applies to the step's excess summed
    over the buses (day 4: under- and overvoltage of 0.6 tolerance each, on different buses)."""
    rounding, real, part = VIOLATION_TOLERANCE / 10, VIOLATION_TOLERANCE, 0.6 * VIOLATION_TOLERANCE
    infos = make_infos(4, 2, 2, feeder_overvoltage_pu=[[rounding, 0.0], [real, 0.0], [0.0, 0.0], [part, 0.0]],
                       feeder_undervoltage_pu=[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [part, 0.0]],
                       feeder_overload_kva=[[0.0, rounding], [0.0, 0.0], [0.0, real], [0.0, 0.0]])
    kpis = day_kpis(infos, dt_h=0.25)
    np.testing.assert_array_equal(kpis["voltage_violation_steps"], [0, 1, 0, 1])
    np.testing.assert_array_equal(kpis["line_overload_steps"], [0, 0, 1, 0])
    np.testing.assert_array_equal(kpis["violation_day"], [0, 1, 1, 1])
    np.testing.assert_allclose(kpis["voltage_violation_pu"], [rounding, real, 0.0, 2 * part], rtol=0)
    np.testing.assert_allclose(kpis["line_overload_kvah"], [rounding * 0.25, 0.0, real * 0.25, 0.0], rtol=0)


def test_undefined_ratios_are_nan():
    # A night without PV and without any P2P trade.
    infos = make_infos(1, 2, 2, load_kwh=1.0, grid_import_kwh=1.0, clearing_price=[[0.085, 0.085]])
    kpis = day_kpis(infos, DT_H)
    assert np.isnan(kpis["self_consumption"][0])
    assert np.isnan(kpis["clearing_price_mean"][0]) and np.isnan(kpis["clearing_price_std"][0])
    assert kpis["self_sufficiency"] == pytest.approx([0.0])
    assert kpis["p2p_share_of_demand"] == pytest.approx([0.0])


def test_imports_beyond_the_load_and_exports_beyond_pv_clip_to_zero():
    # Batteries filled from the grid (import 3 > load 2) and emptied into it (export 2 > PV 1).
    infos = make_infos(1, 2, 1, load_kwh=[[[1.0], [1.0]]], pv_kwh=[[[1.0], [0.0]]],
                       grid_import_kwh=[[[3.0], [0.0]]], grid_export_kwh=[[[0.0], [2.0]]])
    kpis = day_kpis(infos, DT_H)
    assert kpis["self_sufficiency"] == pytest.approx([0.0])
    assert kpis["self_consumption"] == pytest.approx([0.0])


def test_days_are_independent():
    other = make_infos(1, 3, 2, load_kwh=2.0, pv_kwh=1.0, grid_import_kwh=1.0, cost=0.13)
    both = {key: np.concatenate([DAY[key], other[key]]) for key in INFO_KEYS}
    together = day_kpis(both, DT_H)
    for single, index in ((day_kpis(DAY, DT_H), 0), (day_kpis(other, DT_H), 1)):
        for key, values in single.items():
            np.testing.assert_array_equal(together[key][index], values[0], err_msg=key)


def test_gini_hand_cases():
    assert gini(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.25)
    assert gini(np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.75)  # one takes all: (N - 1) / N
    assert gini(np.array([2.0, 2.0, 2.0])) == pytest.approx(0.0)
    assert gini(np.zeros(3)) == 0.0  # nobody saves anything: equal
    # A household that loses: sum |x_i - x_j| = 4, 2 N sum |x| = 8.
    assert gini(np.array([-1.0, 1.0])) == pytest.approx(0.5)
    np.testing.assert_allclose(gini(np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]])), [0.25, 0.0])


@settings(max_examples=200, deadline=None)
# Amounts in euros to a micro-euro: subnormal floats (5e-324 * 0.5 == 0) would test float underflow, not the Gini.
@given(values=arrays(np.float64, st.integers(1, 12), elements=st.floats(-100, 100).map(lambda v: round(v, 6))),
       scale=st.floats(0.01, 100), seed=st.integers(0, 2**32 - 1))
def test_gini_range_and_invariances(values, scale, seed):
    g = gini(values)
    assert 0.0 <= g <= 1.0 + 1e-12
    assert gini(np.random.default_rng(seed).permutation(values)) == pytest.approx(g, abs=1e-12)
    assert gini(scale * values) == pytest.approx(g, abs=1e-9)
    if np.all(values >= 0) and values.sum() > 0:  # the classic formula where it applies
        classic = np.abs(values[:, None] - values[None, :]).sum() / (2 * len(values) ** 2 * values.mean())
        assert g == pytest.approx(classic, abs=1e-9)


def test_share_of_optimal_saving_cases():
    grid_only, optimal = np.array([10.0, 10.0, 10.0, 10.0]), np.array([4.0, 4.0, 4.0, 4.0])
    share = share_of_optimal_saving(np.array([10.0, 4.0, 7.0, 13.0]), grid_only, optimal)
    np.testing.assert_allclose(share, [0.0, 1.0, 0.5, -0.5])
    # Nothing to save (or only solver noise): undefined.
    assert np.isnan(share_of_optimal_saving(5.0, 5.0, 5.0))
    assert np.isnan(share_of_optimal_saving(5.0, 5.0, 5.0 - 1e-9))
    assert np.isnan(share_of_optimal_saving(5.0, 5.0, 6.0))
    # Negative costs (a community earning from exports) are fine.
    assert share_of_optimal_saving(-3.0, -2.0, -4.0) == pytest.approx(0.5)


def test_day_kpis_rejects_bad_input():
    with pytest.raises(ValueError, match="lack the key"):
        day_kpis({key: value for key, value in DAY.items() if key != "cost"}, DT_H)
    with pytest.raises(ValueError, match="grid_only_bills too"):
        day_kpis(DAY, DT_H, optimal_cost=np.array([0.2]))
    with pytest.raises(ValueError, match=r"grid_only_bills must have shape \(B, N\) = \(1, 2\)"):
        day_kpis(DAY, DT_H, grid_only_bills=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="dt_h"):
        day_kpis(DAY, 0.0)


energy = arrays(np.float64, (3, 4, 5), elements=st.one_of(st.just(0.0), st.floats(1e-6, 10.0)))


@settings(max_examples=100, deadline=None)
@given(load=energy, pv=energy, imports=energy, exports=energy, p2p=energy,
       price=arrays(np.float64, (3, 4), elements=st.floats(0.04, 0.18)))
def test_shares_lie_in_unit_interval_and_prices_within_traded_range(load, pv, imports, exports, p2p, price):
    infos = make_infos(3, 4, 5, load_kwh=load, pv_kwh=pv, grid_import_kwh=imports, grid_export_kwh=exports,
                       p2p_buy_kwh=np.minimum(p2p, load), clearing_price=price)
    kpis = day_kpis(infos, DT_H)
    for key in ("self_sufficiency", "self_consumption", "p2p_share_of_demand"):
        defined = kpis[key][~np.isnan(kpis[key])]
        assert np.all((defined >= 0) & (defined <= 1 + 1e-12)), key
    traded = infos["p2p_buy_kwh"].sum(axis=2) > 0
    for day in np.flatnonzero(traded.any(axis=1)):
        prices = price[day][traded[day]]
        assert prices.min() - 1e-12 <= kpis["clearing_price_mean"][day] <= prices.max() + 1e-12
        assert 0 <= kpis["clearing_price_std"][day] <= prices.max() - prices.min() + 1e-12
    assert np.all(kpis["peak_grid_import_kw"] >= 0)
