"""Tests for the radial feeder and its LinDistFlow power flow (p2p_marl/sim/feeder.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_marl.config import EnvConfig
from p2p_marl.sim.community import build_feeder
from p2p_marl.sim.feeder import Feeder, PowerFlow, linear_power_flow, radial_feeder, to_pandapower, violations

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
AC_TOLERANCE_PU = 0.005
WEAK_FEEDER_AC_TOLERANCE_PU = 0.01
LOAD_POWER_FACTOR_TAN = 0.33  # tan(acos(0.95)): household loads draw reactive power, PV runs at unity


def household_q_kvar(p_kw: np.ndarray) -> np.ndarray:
    return LOAD_POWER_FACTOR_TAN * np.maximum(p_kw, 0.0)


@st.composite
def random_feeders(draw: st.DrawFn) -> Feeder:
    """Arbitrary trees (parent[b] drawn in [0, b)) with positive impedances, 1..12 households."""
    n_bus = draw(st.integers(2, 12))
    parent = [-1] + [draw(st.integers(0, b - 1)) for b in range(1, n_bus)]
    n_households = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return Feeder(
        parent=np.array(parent),
        r_ohm=rng.uniform(0.001, 0.05, n_bus - 1),
        x_ohm=rng.uniform(0.001, 0.02, n_bus - 1),
        line_rating_kva=rng.uniform(20.0, 200.0, n_bus - 1),
        household_bus=rng.integers(1, n_bus, n_households),
        transformer_kva=draw(st.floats(50.0, 500.0)),
        v_nominal_kv=0.4,
        v_slack_pu=draw(st.floats(0.95, 1.05)),
    )


def random_injections(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    p_kw = rng.uniform(-6.0, 8.0, (batch, n))
    return p_kw, household_q_kvar(p_kw)


def subtree_households(feeder: Feeder, bus: int) -> np.ndarray:
    """Households whose bus is `bus` or below it, found by walking up the parent pointers."""
    members = []
    for n, b in enumerate(feeder.household_bus):
        while b > 0 and b != bus:
            b = feeder.parent[b]
        if b == bus:
            members.append(n)
    return np.array(members, dtype=int)


def test_default_topology_round_robin_chains() -> None:
    feeder = radial_feeder(10, n_laterals=3, segment_km=0.04, r_ohm_per_km=0.206, x_ohm_per_km=0.080,
                           line_rating_kva=150.0)
    assert feeder.n_bus == 11 and feeder.n_lines == 10 and feeder.n_households == 10
    # laterals of 4, 3, 3 buses, numbered lateral by lateral, each a chain off the busbar
    np.testing.assert_array_equal(feeder.parent, [-1, 0, 1, 2, 3, 0, 5, 6, 0, 8, 9])
    np.testing.assert_array_equal(feeder.household_bus, [1, 5, 8, 2, 6, 9, 3, 7, 10, 4])
    np.testing.assert_allclose(feeder.r_ohm, 0.206 * 0.04)
    np.testing.assert_allclose(feeder.x_ohm, 0.080 * 0.04)
    np.testing.assert_allclose(feeder.line_rating_kva, 150.0)


def test_households_per_bus_and_fewer_households_than_laterals() -> None:
    shared = radial_feeder(7, n_laterals=2, households_per_bus=2)
    # lateral 0 gets households 0,2,4,6 -> 2 buses; lateral 1 gets 1,3,5 -> 2 buses
    np.testing.assert_array_equal(shared.parent, [-1, 0, 1, 0, 3])
    np.testing.assert_array_equal(shared.household_bus, [1, 3, 1, 3, 2, 4, 2])
    sparse = radial_feeder(2, n_laterals=5)
    np.testing.assert_array_equal(sparse.parent, [-1, 0, 0])
    np.testing.assert_array_equal(sparse.household_bus, [1, 2])


def test_derived_matrices_shapes_and_read_only() -> None:
    feeder = radial_feeder(50)
    assert feeder.downstream.shape == (50, feeder.n_lines)
    assert feeder.voltage_sens_p_pu_per_kw.shape == (50, feeder.n_bus)
    assert feeder.voltage_sens_q_pu_per_kvar.shape == (50, feeder.n_bus)
    assert (feeder.voltage_sens_p_pu_per_kw >= 0).all() and (feeder.voltage_sens_p_pu_per_kw[:, 0] == 0).all()
    with pytest.raises(ValueError):
        feeder.r_ohm[0] = 1.0
    with pytest.raises(ValueError):
        feeder.downstream[0, 0] = 0.0


@settings(max_examples=60, deadline=None)
@given(random_feeders(), st.integers(1, 4))
def test_zero_injection_gives_slack_voltage(feeder: Feeder, batch: int) -> None:
    zeros = np.zeros((batch, feeder.n_households))
    flow = linear_power_flow(feeder, zeros, zeros)
    np.testing.assert_array_equal(flow.voltage_pu, feeder.v_slack_pu)
    np.testing.assert_array_equal(flow.household_voltage_pu, feeder.v_slack_pu)
    np.testing.assert_array_equal(flow.line_flow_kva, 0.0)
    np.testing.assert_array_equal(flow.transformer_kva, 0.0)


@settings(max_examples=80, deadline=None)
@given(random_feeders(), st.data())
def test_injection_raises_and_load_lowers_voltage(feeder: Feeder, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    p_kw, q_kvar = random_injections(rng, 1, feeder.n_households)
    n = data.draw(st.integers(0, feeder.n_households - 1))
    delta_kw = data.draw(st.floats(0.01, 10.0))
    use_reactive = data.draw(st.booleans())
    step = np.zeros_like(p_kw)
    step[0, n] = delta_kw
    base = linear_power_flow(feeder, p_kw, q_kvar).voltage_pu
    if use_reactive:
        more_load = linear_power_flow(feeder, p_kw, q_kvar + step).voltage_pu
        more_injection = linear_power_flow(feeder, p_kw, q_kvar - step).voltage_pu
    else:
        more_load = linear_power_flow(feeder, p_kw + step, q_kvar).voltage_pu
        more_injection = linear_power_flow(feeder, p_kw - step, q_kvar).voltage_pu
    assert (more_load <= base + 1e-15).all() and (more_injection >= base - 1e-15).all()
    # strictly at the household's own bus (all impedances here are > 0); slack never moves
    bus = feeder.household_bus[n]
    assert more_load[0, bus] < base[0, bus] < more_injection[0, bus]
    assert more_load[0, 0] == base[0, 0] == more_injection[0, 0] == feeder.v_slack_pu


@settings(max_examples=80, deadline=None)
@given(random_feeders(), st.data())
def test_line_flows_balance_at_every_bus(feeder: Feeder, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    p_kw, q_kvar = random_injections(rng, 3, feeder.n_households)
    flow = linear_power_flow(feeder, p_kw, q_kvar)
    line_p_kw = p_kw @ feeder.downstream
    line_q_kvar = q_kvar @ feeder.downstream
    np.testing.assert_allclose(flow.line_flow_kva, np.hypot(line_p_kw, line_q_kvar), atol=1e-12)
    for bus in range(1, feeder.n_bus):
        # independent definition: the line into `bus` carries everything in its subtree
        members = subtree_households(feeder, bus)
        np.testing.assert_allclose(line_p_kw[:, bus - 1], p_kw[:, members].sum(axis=1), atol=1e-12)
    for bus in range(feeder.n_bus):
        here = feeder.household_bus == bus
        leaving = np.flatnonzero(feeder.parent[1:] == bus)
        for name, power, line_power in (("P", p_kw, line_p_kw), ("Q", q_kvar, line_q_kvar)):
            inflow = power.sum(axis=1) if bus == 0 else line_power[:, bus - 1]
            outflow = power[:, here].sum(axis=1) + line_power[:, leaving].sum(axis=1)
            np.testing.assert_allclose(inflow, outflow, atol=1e-9, err_msg=f"{name} balance at bus {bus}")
    np.testing.assert_allclose(flow.transformer_kva, np.hypot(p_kw.sum(axis=1), q_kvar.sum(axis=1)))
    np.testing.assert_array_equal(flow.household_voltage_pu, flow.voltage_pu[:, feeder.household_bus])


def test_batch_rows_are_independent() -> None:
    feeder = radial_feeder(20)
    p_kw, q_kvar = random_injections(np.random.default_rng(3), 5, 20)
    batched = linear_power_flow(feeder, p_kw, q_kvar)
    for b in range(5):
        single = linear_power_flow(feeder, p_kw[b : b + 1], q_kvar[b : b + 1])
        np.testing.assert_allclose(batched.voltage_pu[b], single.voltage_pu[0], rtol=0, atol=1e-15)
        np.testing.assert_allclose(batched.line_flow_kva[b], single.line_flow_kva[0], rtol=0, atol=1e-12)


def _band_edge_cases(feeder: Feeder) -> list[tuple[np.ndarray, np.ndarray]]:
    """Uniform load scaled so the linear minimum is 0.95 p.u.; uniform PV so the maximum is 1.05.

    These powers can be far from a real day, but they check the linearisation over the whole voltage band.
    """
    n = feeder.n_households
    unit_p, unit_q = np.ones((1, n)), household_q_kvar(np.ones((1, n)))
    drop_pu = feeder.v_slack_pu - linear_power_flow(feeder, unit_p, unit_q).voltage_pu.min()
    rise_pu = linear_power_flow(feeder, -unit_p, 0 * unit_q).voltage_pu.max() - feeder.v_slack_pu
    load = (feeder.v_slack_pu - 0.95) / drop_pu
    pv = (1.05 - feeder.v_slack_pu) / rise_pu
    return [(load * unit_p[0], load * unit_q[0]), (-pv * unit_p[0], np.zeros(n))]


@pytest.mark.parametrize("community, tolerance_pu", [("community_10", WEAK_FEEDER_AC_TOLERANCE_PU),
                                                     ("community_10_strong", AC_TOLERANCE_PU),
                                                     ("community_50", AC_TOLERANCE_PU)])
def test_linear_voltages_match_pandapower_ac(community: str, tolerance_pu: float) -> None:
    """The feeders of the shipped community configs, against pandapower's exact AC power flow. LinDistFlow
    neglects the line losses, so its error grows with the current on a long thin cable: the weak default
    feeder gets the looser tolerance (its worst case, a 0.92 p.u. heavy-load sample, is off by 0.008 p.u.)."""
    pp = pytest.importorskip("pandapower")
    env_yaml = yaml.safe_load((CONFIGS / "env" / f"{community}.yaml").read_text())
    feeder = build_feeder(EnvConfig(**env_yaml))
    n_households = feeder.n_households
    p_kw, q_kvar = random_injections(np.random.default_rng(n_households), 12, n_households)
    cases = list(zip(p_kw, q_kvar)) + _band_edge_cases(feeder)
    for i, (p, q) in enumerate(cases):
        net = to_pandapower(feeder, p, q)
        pp.runpp(net, numba=False)
        v_ac = net.res_bus.vm_pu.sort_index().to_numpy()
        flow = linear_power_flow(feeder, p[None], q[None])
        assert np.abs(flow.voltage_pu[0] - v_ac).max() < tolerance_pu, f"case {i}"
        # flows differ from AC only by downstream losses: a few percent of the flow at most
        s_ac_kva = 1e3 * np.hypot(net.res_line.p_from_mw, net.res_line.q_from_mvar).sort_index().to_numpy()
        np.testing.assert_allclose(flow.line_flow_kva[0], s_ac_kva, rtol=0.1, atol=0.5, err_msg=f"case {i}")
    low, high = cases[-2:]
    assert linear_power_flow(feeder, low[0][None], low[1][None]).voltage_pu.min() == pytest.approx(0.95)
    assert linear_power_flow(feeder, high[0][None], high[1][None]).voltage_pu.max() == pytest.approx(1.05)


def test_to_pandapower_builds_matching_net() -> None:
    pytest.importorskip("pandapower")
    feeder = radial_feeder(5, n_laterals=2, v_slack_pu=1.02)
    p = np.array([1.0, -2.0, 3.0, 0.0, 4.0])
    net = to_pandapower(feeder, p, household_q_kvar(p))
    assert len(net.bus) == feeder.n_bus and len(net.line) == feeder.n_lines and len(net.load) == 5
    assert net.ext_grid.bus.iloc[0] == 0 and net.ext_grid.vm_pu.iloc[0] == 1.02
    np.testing.assert_array_equal(net.line.from_bus.to_numpy(), feeder.parent[1:])
    np.testing.assert_allclose(net.load.p_mw.to_numpy() * 1e3, p)
    np.testing.assert_array_equal(net.load.bus.to_numpy(), feeder.household_bus)


def _flow(voltage_pu: list[float], line_kva: list[float], transformer_kva: float) -> PowerFlow:
    voltage = np.array([voltage_pu])
    return PowerFlow(
        voltage_pu=voltage,
        household_voltage_pu=voltage[:, 1:],
        line_flow_kva=np.array([line_kva]),
        transformer_kva=np.array([transformer_kva]),
    )


def test_violations_sum_excess_and_count() -> None:
    feeder = Feeder(
        parent=np.array([-1, 0, 1, 1]),
        r_ohm=np.full(3, 0.01),
        x_ohm=np.full(3, 0.01),
        line_rating_kva=np.array([100.0, 50.0, 50.0]),
        household_bus=np.array([2, 3, 3]),
        transformer_kva=100.0,
        v_nominal_kv=0.4,
        v_slack_pu=1.0,
    )
    # slack bus out of band is ignored; buses 1..3: 0.94 (0.01 under), 1.07 (0.02 over), 0.93 (0.02 under)
    result = violations(_flow([0.9, 0.94, 1.07, 0.93], [120.0, 50.0, 60.0], 130.0), feeder)
    expected = {
        "undervoltage_pu": 0.03,
        "overvoltage_pu": 0.02,
        "line_overload_kva": 30.0,
        "transformer_overload_kva": 30.0,
        "n_undervoltage_buses": 2,
        "n_overvoltage_buses": 1,
        "n_overloaded_lines": 2,
        "n_overloaded_transformers": 1,
    }
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name].shape == (1,)
        assert result[name][0] == pytest.approx(value), name
    ok = violations(_flow([1.0, 1.0, 0.96, 1.04], [100.0, 50.0, 0.0], 100.0), feeder)
    assert all((value == 0).all() for value in ok.values())


@settings(max_examples=60, deadline=None)
@given(random_feeders(), st.data())
def test_violations_are_non_negative_and_zero_inside_limits(feeder: Feeder, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    p_kw, q_kvar = random_injections(rng, 4, feeder.n_households)
    scale = data.draw(st.floats(0.0, 20.0))
    flow = linear_power_flow(feeder, scale * p_kw, scale * q_kvar)
    result = violations(flow, feeder)
    assert all(value.shape == (4,) and (value >= 0).all() for value in result.values())
    inside = (
        (flow.voltage_pu[:, 1:] >= 0.95).all(axis=1)
        & (flow.voltage_pu[:, 1:] <= 1.05).all(axis=1)
        & (flow.line_flow_kva <= feeder.line_rating_kva).all(axis=1)
        & (flow.transformer_kva <= feeder.transformer_kva)
    )
    total = sum(result[name] for name in ("undervoltage_pu", "overvoltage_pu", "line_overload_kva"))
    np.testing.assert_array_equal(total + result["transformer_overload_kva"] == 0, inside)


GOOD = dict(
    parent=np.array([-1, 0, 1]),
    r_ohm=np.array([0.01, 0.01]),
    x_ohm=np.array([0.005, 0.005]),
    line_rating_kva=np.array([100.0, 100.0]),
    household_bus=np.array([1, 2]),
    transformer_kva=100.0,
    v_nominal_kv=0.4,
    v_slack_pu=1.0,
)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"parent": np.array([-1])}, "at least 2 buses"),
        ({"parent": np.array([0, 0, 1])}, r"parent\[0\]"),
        ({"parent": np.array([-1, 0, 2])}, r"parent\[2\] = 2 must be in \[0, 2\)"),
        ({"parent": np.array([-1, -1, 0])}, r"parent\[1\]"),
        ({"r_ohm": np.array([0.01])}, "r_ohm must have shape"),
        ({"x_ohm": np.array([0.01, -0.1])}, r"x_ohm\[1\] = -0.1 must be finite and >= 0"),
        ({"r_ohm": np.array([np.nan, 0.1])}, r"r_ohm\[0\]"),
        ({"line_rating_kva": np.array([100.0, 0.0])}, r"line_rating_kva\[1\] = 0.0 must be finite and > 0"),
        ({"household_bus": np.array([0, 2])}, r"household_bus\[0\] = 0 must be in \[1, 3\)"),
        ({"household_bus": np.array([1, 3])}, r"household_bus\[1\]"),
        ({"household_bus": np.array([], dtype=int)}, "at least one household"),
        ({"passive_bus": np.array([1, 3])}, r"passive_bus\[1\] = 3 must be in \[1, 3\)"),
        ({"transformer_kva": 0.0}, "transformer_kva"),
        ({"v_nominal_kv": -0.4}, "v_nominal_kv"),
        ({"v_slack_pu": 1.2}, r"v_slack_pu must be in \[0.9, 1.1\]"),
    ],
)
def test_feeder_validation(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Feeder(**{**GOOD, **changes})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_households": 0}, "n_households"),
        ({"n_households": 2.5}, "n_households"),
        ({"n_laterals": 0}, "n_laterals"),
        ({"households_per_bus": 0}, "households_per_bus"),
        ({"segment_km": 0.0}, "segment_km"),
        ({"r_ohm_per_km": -1.0}, "r_ohm_per_km"),
        ({"x_ohm_per_km": np.inf}, "x_ohm_per_km"),
        ({"line_rating_kva": -5.0}, "line_rating_kva"),
        ({"transformer_kva": 0.0}, "transformer_kva"),
        ({"v_slack_pu": 0.5}, "v_slack_pu"),
    ],
)
def test_radial_feeder_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        radial_feeder(**{"n_households": 4, **kwargs})


@settings(max_examples=60, deadline=None)
@given(random_feeders(), st.data())
def test_passive_loads_superpose_like_households(feeder: Feeder, data: st.DataObject) -> None:
    """Passive loads at some buses give the voltages and flows of the same loads as households there."""
    n_passive = data.draw(st.integers(1, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    passive_bus = rng.integers(1, feeder.n_bus, n_passive)
    with_passive = feeder.with_loads(feeder.household_bus, passive_bus)
    as_households = feeder.with_loads(np.concatenate([feeder.household_bus, passive_bus]))
    p_kw, q_kvar = random_injections(rng, 3, feeder.n_households + n_passive)
    n = feeder.n_households
    superposed = linear_power_flow(with_passive, p_kw[:, :n], q_kvar[:, :n], p_kw[:, n:], q_kvar[:, n:])
    joint = linear_power_flow(as_households, p_kw, q_kvar)
    for field in ("voltage_pu", "line_flow_kva", "transformer_kva"):
        np.testing.assert_allclose(getattr(superposed, field), getattr(joint, field), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(superposed.household_voltage_pu, joint.household_voltage_pu[:, :n], atol=1e-12)


def test_power_flow_input_validation() -> None:
    feeder = radial_feeder(4)
    good = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"p_kw must have shape \(B, 4\)"):
        linear_power_flow(feeder, np.zeros(4), good)
    with pytest.raises(ValueError, match=r"q_kvar must have shape \(B, 4\)"):
        linear_power_flow(feeder, good, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="same shape"):
        linear_power_flow(feeder, good, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="p_kw must be finite"):
        linear_power_flow(feeder, np.full((2, 4), np.nan), good)
    with pytest.raises(ValueError, match="v_min_pu"):
        violations(linear_power_flow(feeder, good, good), feeder, v_min_pu=1.05, v_max_pu=0.95)
    with pytest.raises(ValueError, match=r"p_kw must have shape \(4,\)"):
        to_pandapower(feeder, good, good)
    with pytest.raises(ValueError, match="the feeder has no passive loads"):
        linear_power_flow(feeder, good, good, np.zeros((2, 1)), np.zeros((2, 1)))
    with_passive = feeder.with_loads(feeder.household_bus, np.array([1, 2]))
    with pytest.raises(ValueError, match="the feeder has 2 passive loads: pass their passive_kw and passive_kvar"):
        linear_power_flow(with_passive, good, good)
    with pytest.raises(ValueError, match=r"passive_kw must have shape \(B, 2\)"):
        linear_power_flow(with_passive, good, good, np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"passive_kw and passive_kvar must have shape \(2, 2\)"):
        linear_power_flow(with_passive, good, good, np.zeros((3, 2)), np.zeros((3, 2)))
