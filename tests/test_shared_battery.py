"""The shared community battery and the loss charges (issue 15, items 3 and 4): the core's energy and money
balances with them, the optimum's bound and replay, the PettingZoo operator, the defaults' fingerprint, and the
market-design script on a tiny setting."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pettingzoo.test import api_test, parallel_api_test

import p2p_marl
from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.optimal import OptimalPolicy, solve_optimal_day
from p2p_marl.baselines.rules import GridOnly, IdleMidPrice, SelfConsumption, TimeOfUse, ZeroIntelligence
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.evaluation import market_design
from p2p_marl.evaluation.kpis import day_kpis
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.sim.auction import BUY, SELL
from p2p_marl.sim.community import SHARED_BATTERY_INFO_KEYS, CommunityCore
from p2p_marl.sim.feeder import flow_rows, power_flow_arrays, radial_feeder
from p2p_marl.sim.fees import loss_charges
from conftest import meter_net_kwh, table_cells

CFG = EnvConfig(n_agents=6, n_days=12)
BATTERY = dict(shared_battery_kwh=20.0, shared_battery_kw=8.0)

# ------------------------------------------------------------------ defaults unchanged

# The info keys of the code before the shared battery and loss charges (main at 0ed57f2).
MAIN_INFO_KEYS = (
    "load_kwh", "pv_kwh", "pv_curtailed_kwh", "battery_charge_kwh", "battery_discharge_kwh", "soc", "bid_price",
    "p2p_buy_kwh", "p2p_sell_kwh", "p2p_payment", "p2p_revenue", "grid_import_kwh", "grid_export_kwh",
    "clearing_price", "retail_price", "feed_in_price", "degradation_cost", "penalty", "end_settlement", "cost",
    "voltage_pu", "p2p_fee", "feeder_loss_kwh",
    "feeder_undervoltage_pu", "feeder_overvoltage_pu", "feeder_overload_kva",
)
# fingerprint() computed with main's code at 0ed57f2, before this feature (same function, PYTHONPATH=main).
MAIN_FINGERPRINT = "92c208c5ea5a27e54fda66085c6f1eea1fed0ccbdb1309bde4ba348718234079"


def fingerprint() -> str:
    """A digest of the default environment's observations, rewards and infos under random actions on two test
    days (default market and a distance fee), the LP optima of those days, and a PettingZoo step's agents, info
    keys and rewards; values rounded (10 decimals, the LP's 6) so that another BLAS's last bits do not count."""
    digest = hashlib.sha256()

    def add(values, decimals: int) -> None:
        digest.update(np.ascontiguousarray(np.round(np.asarray(values, dtype=np.float64), decimals) + 0.0).tobytes())

    for changes in ({}, {"p2p_fee_per_kwh": 0.02, "p2p_fee_basis": "distance", "p2p_fee_payer": "both"}):
        config = EnvConfig(**changes)
        core = CommunityCore(config, batch_size=2)
        days = core.test_days[:2]
        rng = np.random.default_rng(7)
        add(core.reset(days=days), 10)
        while not core.done:
            actions = rng.uniform([-1, 0, 0], [1, 1, 0.3], size=(2, config.n_agents, 3))
            obs, reward, _, infos = core.step(actions)
            add(obs, 10)
            add(reward, 10)
            digest.update(",".join(sorted(infos)).encode())
            for key in MAIN_INFO_KEYS:
                add(infos[key], 10)
        for day in days:
            schedule = solve_optimal_day(core, int(day))
            add([schedule.cost, schedule.lower_bound, schedule.p2p_fee, schedule.end_settlement], 6)
    env = p2p_marl.parallel_env()
    env.reset(seed=3, options={"day": 5})
    digest.update(",".join(env.possible_agents).encode())
    _, rewards, _, _, infos = env.step({a: env.action_space(a).sample() * 0 + 0.5 for a in env.agents})
    digest.update(",".join(sorted(infos[env.possible_agents[0]])).encode())
    add(list(rewards.values()), 10)
    return digest.hexdigest()


def test_defaults_are_unchanged():
    """With the new keys at their defaults the environment, its infos and the LP optimum are main's."""
    assert fingerprint() == MAIN_FINGERPRINT


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("changes, message", [
    (dict(shared_battery_kwh=-1.0), r"shared_battery_kwh=-1.0 is out of range; allowed \[0.0, inf\)"),
    (dict(shared_battery_kwh=10.0), "shared_battery_kw"),
    (dict(shared_battery_kw=5.0), "shared_battery_kwh"),
    (dict(shared_battery_bus=3), "shared_battery_bus=3 / shared_battery_control='rule' apply to a shared battery"),
    (dict(BATTERY, shared_battery_bus=-1), r"shared_battery_bus=-1 is out of range; allowed \[0, 100000\]"),
    (dict(BATTERY, shared_battery_bus=1.5), "shared_battery_bus must be an integer"),
    (dict(BATTERY, shared_battery_control="market"), r"shared_battery_control='market' is not allowed"),
    (dict(shared_battery_control="operator"), "apply to a shared battery only"),
    (dict(BATTERY, shared_battery_control="operator", action_mode="discrete"), "needs action_mode='continuous'"),
    (dict(loss_allocation="marginal"), r"loss_allocation='marginal' is not allowed; choose one of \['none', "
                                       r"'p2p_volume', 'net_energy'\]"),
])
def test_bad_settings_are_named_with_their_range(changes, message):
    with pytest.raises(ConfigError, match=message):
        EnvConfig(**changes)


def test_bus_beyond_the_feeder_and_views_without_an_operator_are_refused():
    with pytest.raises(ConfigError, match=r"shared_battery_bus=7 is out of range; allowed \[0, 6\]"):
        CommunityCore(CFG.replace(shared_battery_bus=7, **BATTERY))
    operator = CFG.replace(shared_battery_control="operator", **BATTERY)
    with pytest.raises(ConfigError, match="centralised view acts for the households alone"):
        p2p_marl.CommunityCentralEnv(operator)
    core = CommunityCore(CFG)
    core.reset(days=core.test_days[:1])
    with pytest.raises(ValueError, match="this community has none"):
        core.step(np.zeros((1, 6, 3)), np.zeros((1, 2)))


# ------------------------------------------------------------------ network model and loss charges


def test_a_device_draws_power_like_a_household_on_its_bus():
    """The shared battery's rows are those of a household on its bus; at the busbar it loads no line."""
    feeder = radial_feeder(6, n_laterals=2, segment_km=0.25, r_ohm_per_km=0.868, x_ohm_per_km=0.086)
    rows = flow_rows(feeder, (int(feeder.household_bus[4]), 0))
    np.testing.assert_array_equal(rows.downstream[6], feeder.downstream[4])
    np.testing.assert_allclose(rows.voltage_sens_p_pu_per_kw[6], feeder.voltage_sens_p_pu_per_kw[4], rtol=1e-15)
    np.testing.assert_array_equal(rows.downstream[7], 0.0)
    np.testing.assert_array_equal(rows.voltage_sens_p_pu_per_kw[7], 0.0)  # no transformer impedance here
    rng = np.random.default_rng(0)
    p_kw, q_kvar = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    device_kw = rng.normal(size=(3, 2))
    with_devices = power_flow_arrays(feeder, np.hstack([p_kw, device_kw]), np.hstack([q_kvar, np.zeros((3, 2))]),
                                     rows)
    merged_kw = p_kw.copy()
    merged_kw[:, 4] += device_kw[:, 0]
    merged = power_flow_arrays(feeder, merged_kw, q_kvar)
    for index in (0, 2, 3):  # voltages and line flows as if the device were household 4's own
        np.testing.assert_allclose(with_devices[index], merged[index], atol=1e-12)
    np.testing.assert_allclose(with_devices[4], merged[4] + device_kw[:, 1])  # the busbar's: the transformer only


def test_loss_charges_by_hand():
    """Two steps of three households: P2P volumes (1, 1, 0) and (0, 0, 0), meters moving 2 + 1 + 1 kWh."""
    net_kwh = np.array([[2.0, -1.0, 1.0], [2.0, -1.0, 1.0]])
    traded_kwh = np.zeros((2, 2, 3))
    traded_kwh[BUY, 0, 0] = traded_kwh[SELL, 0, 1] = 1.0
    loss_kwh, price = np.array([0.4, 0.4]), np.array([[0.2], [0.1]])
    by_volume = loss_charges(loss_kwh, price, net_kwh, traded_kwh, "p2p_volume")
    np.testing.assert_allclose(by_volume, [[0.02, 0.02, 0.0], [0.0, 0.0, 0.0]])  # 0.08 * 1 / 4 each
    by_energy = loss_charges(loss_kwh, price, net_kwh, traded_kwh, "net_energy")
    np.testing.assert_allclose(by_energy, [[0.04, 0.02, 0.02], [0.02, 0.01, 0.01]])
    np.testing.assert_allclose(by_energy.sum(axis=1), (loss_kwh * price[:, 0]))  # the whole loss, priced
    np.testing.assert_array_equal(loss_charges(loss_kwh, price, np.zeros((2, 3)), np.zeros((2, 2, 3)),
                                               "net_energy"), 0.0)


# ------------------------------------------------------------------ balances in the core

DESIGNS = {
    "busbar": dict(BATTERY),
    "lateral, distance fee, P2P losses": dict(BATTERY, shared_battery_bus=3, p2p_fee_per_kwh=0.02,
                                              p2p_fee_basis="distance", p2p_fee_payer="both",
                                              loss_allocation="p2p_volume"),
    "sdr, flat fee by sellers, all losses": dict(BATTERY, market="sdr", p2p_fee_per_kwh=0.03, p2p_fee_payer="seller",
                                                 loss_allocation="net_energy", cooperative_weight=0.5),
    "pay as bid, operator": dict(BATTERY, market="pay_as_bid", shared_battery_control="operator",
                                 shared_battery_bus=6),
    "losses only": dict(loss_allocation="p2p_volume", market="bill_sharing"),
}
CORES = {name: CommunityCore(CFG.replace(**design), batch_size=4) for name, design in DESIGNS.items()}


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), name=st.sampled_from(sorted(CORES)), operator_share=st.floats(0.0, 1.0))
def test_energy_and_money_balance_with_the_shared_battery_and_loss_charges(seed, name, operator_share):
    """Every meter's energy balance (the shared battery's too), its SoC within its bounds, P2P money balanced over
    households and the battery, each household's bill made of its parts (its loss charge and 1/N of the battery's
    bill included), and the community's summed cost equal to what leaves it. Operator actions on a random share
    of the steps, the rule on the rest."""
    core = CORES[name]
    cfg, n = core.config, core.n_agents
    rng = np.random.default_rng(seed)
    core.reset(days=rng.choice(core.test_days, size=4))
    start_kwh = core.shared_start_energy_kwh[:, 0].copy()
    while not core.done:
        actions = np.stack([rng.uniform(-1, 1, (4, n)), rng.uniform(0, 1, (4, n)), rng.uniform(0, 0.3, (4, n))],
                           axis=-1)
        operator = (rng.uniform(-1.5, 1.5, (4, 2)) if core.has_shared_battery and rng.random() < operator_share
                    else None)
        _, reward, _, info = core.step(actions, operator)
        assert set(info) == set(core.info_keys)
        retail, feed_in = info["retail_price"], info["feed_in_price"]
        net = meter_net_kwh(info)
        supply = info["p2p_buy_kwh"] - info["p2p_sell_kwh"] + info["grid_import_kwh"] - info["grid_export_kwh"]
        np.testing.assert_allclose(net, supply, atol=1e-9)
        shared = {key[len("shared_battery_"):]: info[key] if key in info else np.zeros((4, n))
                  for key in SHARED_BATTERY_INFO_KEYS}
        for value in shared.values():  # community values, repeated over the households
            np.testing.assert_array_equal(value, value[:, :1].repeat(n, axis=1))
        np.testing.assert_allclose(shared["charge_kwh"] - shared["discharge_kwh"],
                                   shared["p2p_buy_kwh"] - shared["p2p_sell_kwh"] + shared["grid_import_kwh"]
                                   - shared["grid_export_kwh"], atol=1e-9)
        assert np.all(np.minimum(shared["charge_kwh"], shared["discharge_kwh"]) == 0.0)
        if core.has_shared_battery:
            assert np.all(shared["soc"] >= cfg.soc_min - 1e-12) and np.all(shared["soc"] <= cfg.soc_max + 1e-12)
            assert np.all(shared["charge_kwh"] <= cfg.shared_battery_kw * cfg.dt_h + 1e-12)
            assert np.all(shared["discharge_kwh"] <= cfg.shared_battery_kw * cfg.dt_h + 1e-12)
        np.testing.assert_allclose(
            info["p2p_payment"].sum(1) - info["p2p_revenue"].sum(1) + shared["p2p_payment"][:, 0], 0.0, atol=1e-9)
        loss_charge = info.get("loss_charge", np.zeros((4, n)))
        assert np.all(loss_charge >= 0.0)
        assert np.all(loss_charge.sum(1) <= info["feeder_loss_kwh"][:, 0] * retail[:, 0] * (1 + 1e-9) + 1e-15)
        bill = (info["grid_import_kwh"] * retail - info["grid_export_kwh"] * feed_in + info["p2p_payment"]
                - info["p2p_revenue"] + info["p2p_fee"] + info["degradation_cost"] + info["penalty"]
                + info["end_settlement"] + loss_charge + shared["bill"] / n)
        np.testing.assert_allclose(info["cost"], bill, atol=1e-12)
        # The battery's bill: grid, P2P and fee, wear, and at the end the settlement of its stored energy.
        wear = cfg.degradation_cost_per_kwh * (shared["charge_kwh"] + shared["discharge_kwh"])
        settlement = np.zeros(4)
        if core.done and core.has_shared_battery:
            end_kwh = core.shared_energy_kwh[:, 0]
            settlement = (core.end_refill_price_per_kwh / cfg.charge_efficiency * np.maximum(start_kwh - end_kwh, 0)
                          - core.end_surplus_price_per_kwh * cfg.discharge_efficiency
                          * np.maximum(end_kwh - start_kwh, 0))
        battery_grid = shared["grid_import_kwh"] * retail - shared["grid_export_kwh"] * feed_in
        np.testing.assert_allclose(shared["bill"][:, 0], (battery_grid + shared["p2p_payment"] + shared["p2p_fee"]
                                                          + wear)[:, 0] + settlement, atol=1e-12)
        leaves = (info["grid_import_kwh"] * retail - info["grid_export_kwh"] * feed_in + info["p2p_fee"]
                  + info["degradation_cost"] + info["penalty"] + info["end_settlement"] + loss_charge).sum(1)
        leaves += (battery_grid + shared["p2p_fee"] + wear)[:, 0] + settlement
        np.testing.assert_allclose(info["cost"].sum(1), leaves, atol=1e-9)
        np.testing.assert_allclose(reward.sum(1), -info["cost"].sum(1), atol=1e-9)


def test_the_rule_charges_the_surplus_and_discharges_no_further_than_its_start():
    """On sunny test days the rule stores the community's surplus and gives back only what it stored today; the
    day's P2P volume grows by its trades, and the KPIs count its meter."""
    core = CommunityCore(EnvConfig(shared_battery_kwh=30.0, shared_battery_kw=15.0), batch_size=4)
    days = core.test_days[np.argsort(core.profiles.pv_kw[core.test_days].sum(axis=(1, 2)))[-4:]]
    infos = rollout(core, SelfConsumption(), days)
    soc = infos["shared_battery_soc"][:, :, 0]
    assert soc.max() > 0.6 and soc.min() >= 0.5 - 1e-12  # from soc_initial 0.5 up, never below it
    kpis = day_kpis(infos, core.dt_h)
    assert np.all(kpis["shared_battery_throughput_kwh"] > 1.0)
    np.testing.assert_allclose(kpis["shared_battery_bill"], infos["shared_battery_bill"][:, :, 0].sum(1))
    np.testing.assert_allclose(kpis["p2p_volume_kwh"], (infos["p2p_buy_kwh"].sum(2)
                                                        + infos["shared_battery_p2p_buy_kwh"][:, :, 0]).sum(1))
    revenue = ((infos["grid_import_kwh"].sum(2) + infos["shared_battery_grid_import_kwh"][:, :, 0])
               * infos["retail_price"][:, :, 0]
               - (infos["grid_export_kwh"].sum(2) + infos["shared_battery_grid_export_kwh"][:, :, 0])
               * infos["feed_in_price"][:, :, 0]).sum(1)
    np.testing.assert_allclose(kpis["utility_revenue"], revenue)


# ------------------------------------------------------------------ the optimum and MPC


@pytest.mark.parametrize("design", ["busbar", "lateral, distance fee, P2P losses",
                                    "sdr, flat fee by sellers, all losses", "losses only"])
def test_the_optimum_dispatches_the_shared_battery_bounds_every_rule_and_replays_to_its_cost(design):
    """Acted out (households by their actions, the battery by the operator action), the environment charges the
    schedule's ``cost`` within 1e-6, loss charges included; the LP objective ``lower_bound`` leaves them out and
    bounds every benchmark (whose battery runs by its rule); without losses and a distance fee the two agree."""
    config = CORES[design].config.replace(n_days=365)  # a year's test days: winter, spring and summer below
    core = CommunityCore(config, batch_size=3)
    days = core.test_days[[5, 20, 40]]
    policy = OptimalPolicy()
    infos = rollout(core, policy, days)
    cost = infos["cost"].sum(axis=(1, 2))
    schedules = policy.schedules
    np.testing.assert_allclose(cost, [s.cost for s in schedules], rtol=1e-6, atol=1e-9)
    lower_bound = np.array([s.lower_bound for s in schedules])
    loss_charge = np.array([s.loss_charge for s in schedules])
    if config.loss_allocation == "none":
        np.testing.assert_array_equal(loss_charge, 0.0)
        np.testing.assert_allclose(lower_bound, cost, rtol=1e-9)
    else:
        np.testing.assert_allclose(loss_charge, infos["loss_charge"].sum(axis=(1, 2)), rtol=1e-6, atol=1e-12)
        assert np.all(loss_charge > 0)
    if core.has_shared_battery:
        shared_kw = np.stack([s.shared_charge_kw - s.shared_discharge_kw for s in schedules])
        acted_kw = (infos["shared_battery_charge_kwh"] - infos["shared_battery_discharge_kwh"])[:, :, 0] / core.dt_h
        np.testing.assert_allclose(acted_kw, shared_kw, atol=1e-7)
        assert np.abs(shared_kw).max() > 1.0  # the LP uses it
    assert np.all(lower_bound <= cost + 1e-9)
    for benchmark in (GridOnly(), IdleMidPrice(), SelfConsumption(), TimeOfUse(), ZeroIntelligence(seed=0)):
        assert np.all(lower_bound <= rollout(core, benchmark, days)["cost"].sum(axis=(1, 2)) + 1e-9), benchmark.name


def test_the_shared_battery_never_raises_the_optimum_and_lowers_it_on_some_days():
    """More storage is one more option for the LP (idle, it changes nothing); on days where the households'
    batteries cannot store all that pays, it saves."""
    base = CommunityCore(CFG.replace(n_days=365))
    with_battery = CommunityCore(base.config.replace(**BATTERY))
    days = base.test_days[::8]
    saving = np.array([solve_optimal_day(base, int(day)).cost - solve_optimal_day(with_battery, int(day)).cost
                       for day in days])
    assert np.all(saving >= -1e-9) and saving.max() > 0.05


def test_mpc_with_the_oracle_is_the_optimum_with_the_shared_battery():
    config = CFG.replace(max_cycles=12, p2p_fee_per_kwh=0.01, **BATTERY)
    days = CommunityCore(config).test_days[:2]
    core = CommunityCore(config, batch_size=days.size)
    optimal = rollout(core, OptimalPolicy(), days)["cost"].sum(axis=(1, 2))
    mpc = rollout(core, MPCPolicy("oracle"), days)["cost"].sum(axis=(1, 2))
    np.testing.assert_allclose(mpc, optimal, rtol=1e-6)


# ------------------------------------------------------------------ PettingZoo


@pytest.mark.parametrize("control", ["rule", "operator"])
def test_pettingzoo_api_with_the_shared_battery(control):
    kwargs = dict(n_agents=4, n_days=20, shared_battery_control=control, loss_allocation="net_energy", **BATTERY)
    parallel_api_test(p2p_marl.parallel_env(**kwargs), num_cycles=60)
    api_test(p2p_marl.env(**kwargs), num_cycles=60)


def test_the_operator_acts_for_the_battery_and_is_paid_the_community_bill():
    env = p2p_marl.parallel_env(n_agents=4, n_days=20, shared_battery_control="operator", **BATTERY)
    assert env.possible_agents[-1] == "community_operator" and len(env.possible_agents) == 5
    assert env.action_space("community_operator").shape == (2,)
    obs, _ = env.reset(seed=0, options={"day": 3})
    assert env.observation_space("community_operator").contains(obs["community_operator"])
    actions = {a: np.array([0.0, 0.5, 0.0], dtype=np.float32) for a in env.agents[:-1]}
    _, rewards, _, _, infos = env.step({**actions, "community_operator": np.array([1.0, 1.0], dtype=np.float32)})
    operator = infos["community_operator"]
    assert operator["shared_battery_charge_kwh"] == pytest.approx(8.0 * 0.5)  # full power, room to spare
    assert rewards["community_operator"] == pytest.approx(-operator["community_cost"])
    assert rewards["community_operator"] == pytest.approx(sum(rewards[a] for a in env.agents[:-1]))
    with pytest.raises(ValueError, match="community_operator must hold 2 numbers"):
        env.step({**actions, "community_operator": np.zeros(3)})
    with pytest.raises(ValueError, match=r"^action of community_operator is not finite: array\(\[nan,"):
        env.step({**actions, "community_operator": np.array([np.nan, 0.5])})
    for not_real, shown in ((["0.5", "0.5"], r"\['0\.5', '0\.5'\] of dtype <U3"),
                            (np.array([0.5 + 1j, 0.5]), r"\[0\.5\+1\.j, 0\.5\+0\.j\] of dtype complex128"),
                            ([None, 0.5], r"\[None, 0\.5\] of dtype object")):
        with pytest.raises(ValueError, match=rf"^action of community_operator must be real numbers, got {shown}$"):
            env.step({**actions, "community_operator": not_real})
    core = env.core
    with pytest.raises(ValueError, match=r"^operator_action \(the shared battery's setpoint and price share per "
                                         r"community\) must be real numbers, got \[\['0\.5', '0\.5'\]\]"):
        core.step(np.zeros((1, 4, 3)), np.array([["0.5", "0.5"]]))


# ------------------------------------------------------------------ the market-design script


def test_market_design_script_on_two_days(tmp_path):
    """The experiment's command on two test days: every design's rows, the grid-only reference, the optimum at
    share 1, fees only where charged, loss charges only with loss allocation, the shared battery only where
    installed, and the CSV and plot written."""
    market_design.main(["--max-days", "2", "--out", str(tmp_path)])
    table = (tmp_path / "market_design.md").read_text().splitlines()
    header = table_cells(table[0])
    rows = {}
    for line in table[2:]:
        cells = table_cells(line)
        rows[cells[0], cells[1]] = dict(zip(header[2:], cells[2:]))
    designs = [label for label, _ in market_design.DESIGNS]
    assert {design for design, _ in rows} == {market_design.GRID_ONLY, *designs}
    for design in designs:
        assert {method for d, method in rows if d == design} == {*market_design.BENCHMARKS, "optimal"}
        optimal = rows[design, "optimal"]
        assert float(optimal["share of optimal saving"]) == pytest.approx(1.0, abs=1e-3)
        assert float(optimal["cost /day"]) < float(rows[market_design.GRID_ONLY, "grid_only"]["cost /day"])
        charged = dict(market_design.DESIGNS)[design]
        assert (float(optimal["fees /day"]) > 0) == ("p2p_fee_per_kwh" in charged)
        assert (float(optimal["loss charges /day"]) > 0) == ("loss_allocation" in charged)
        battery_kwh = optimal["shared battery kWh/day"]
        assert (battery_kwh != "–") == ("shared_battery_kwh" in charged)
        if battery_kwh != "–":
            assert float(battery_kwh) > 1.0
    default, battery = rows[designs[0], "optimal"], rows["uniform + shared battery at the busbar", "optimal"]
    assert float(battery["cost /day"]) < float(default["cost /day"])
    with open(tmp_path / "market_design.csv") as file:
        records = list(csv.DictReader(file))
    assert len(records) == 2 * (1 + len(designs) * (len(market_design.BENCHMARKS) + 1))
    assert (tmp_path / "market_design.png").stat().st_size > 10_000
