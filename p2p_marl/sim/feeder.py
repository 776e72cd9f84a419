"""Radial low-voltage feeder with a linearised (LinDistFlow) power flow.

Model
-----
A radial feeder of ``n_bus`` buses. Bus 0 is the LV busbar of the substation. The transformer
above it is a loading limit (``transformer_kva``) and, optionally, a series impedance
``transformer_r_ohm + j transformer_x_ohm`` referred to the LV side, through which the whole
community's power flows; ``v_slack_pu`` is the voltage behind that impedance (the busbar's
own voltage when it is zero, the default; SimBench grids carry their transformer's). Every other bus ``b`` is fed by
exactly one line, line ``b - 1``, from ``parent[b]``; buses are numbered so that a parent
comes before its children (``parent[b] < b``), which makes the topology a tree by
construction. Households sit on buses ``household_bus`` (several may share a bus). Loads that are not
agents (a SimBench grid's commercial and agricultural loads) sit on ``passive_bus``: their power follows their
profile, and the model superposes it on the households' (it is linear), so that voltages and flows are the
feeder's, while the market, the bills and the optimiser's decisions stay the households'.

Power flow (Baran & Wu 1989 LinDistFlow, linear in voltage, losses neglected), balanced
three-phase, ``v_nominal_kv`` line-to-line, impedances per phase:

    P_l = sum of the net consumption p_kw of all households downstream of line l
    V_i = V_0 - (r_T P + x_T Q) / V_nom^2 - sum_{lines l on the path 0 -> i} (r_l P_l + x_l Q_l) / V_nom^2  [p.u.]

with P, Q the community's totals through the transformer (r_T = x_T = 0 by default).

With P in kW and V in kV, ``r P / V^2`` carries a factor 1e-3 to be dimensionless. Because
P_l is a linear map of household powers, the voltages are one matrix product per step:

    voltage_pu = v_slack_pu - p_kw @ voltage_sens_p_pu_per_kw - q_kvar @ voltage_sens_q_pu_per_kvar
    P_line_kw  = p_kw @ downstream,   |S_l| = sqrt(P_l^2 + Q_l^2)
    transformer_kva = |(sum_n p_kw, sum_n q_kvar)|

plus the same terms of the passive loads' (B, M) powers with ``passive_voltage_sens_*`` and
``passive_downstream``.

The matrices are public attributes of ``Feeder`` so that an optimiser can write the same
network as linear constraints. Signs: ``p_kw`` / ``q_kvar`` are net consumption (positive =
load, negative = injection); injection raises voltages, load lowers them.

Arrays are batched: (B, N) household inputs give (B, n_bus) voltages and (B, n_lines) flows.
``to_pandapower`` builds the same network for an exact AC check (pandapower is a test extra).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandapower is optional: only the validation helper needs it
    from pandapower.auxiliary import pandapowerNet

V_SLACK_RANGE_PU = (0.9, 1.1)
# r [ohm] * P [kW] / V [kV]^2 = 1e3 W * ohm / 1e6 V^2 -> dimensionless after this factor
_KW_OHM_PER_KV2_TO_PU = 1e-3


def _frozen_array(value: Any, dtype: type, name: str, ndim: int = 1) -> np.ndarray:
    try:
        array = np.array(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be convertible to a {dtype.__name__} array: {error}") from None
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    array.setflags(write=False)
    return array


def _check_positive(value: float, name: str) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")


@dataclass(frozen=True, eq=False)
class Feeder:
    """Radial feeder topology, impedances and limits, plus the derived linear model.

    Attributes set by the caller (validated at construction):
        parent: (n_bus,) int, parent[0] = -1, 0 <= parent[b] < b for b >= 1.
        r_ohm, x_ohm: (n_lines,) = (n_bus - 1,) per-phase line resistance/reactance, >= 0;
            line i feeds bus i + 1 from parent[i + 1].
        line_rating_kva: (n_lines,) thermal rating, > 0.
        household_bus: (N,) int in [1, n_bus).
        passive_bus: (M,) int in [1, n_bus), the buses of loads that are not agents; default none.
        transformer_kva: substation transformer rating, > 0.
        v_nominal_kv: line-to-line nominal voltage, > 0.
        v_slack_pu: voltage behind the transformer impedance (the busbar's if it is zero), in [0.9, 1.1].
        transformer_r_ohm, transformer_x_ohm: the transformer's series impedance referred to the LV
            side, >= 0; default 0 (not modelled).

    Derived (read-only arrays):
        downstream: (N, n_lines) 1.0 where line l lies on the path from bus 0 to household n,
            i.e. household n's power flows through line l: P_line_kw = p_kw @ downstream.
        bus_path: (n_bus, n_lines) 1.0 where line l lies on the path from bus 0 to bus b.
        voltage_sens_p_pu_per_kw: (N, n_bus) voltage drop at each bus per kW consumed by n.
        voltage_sens_q_pu_per_kvar: (N, n_bus) same per kvar.
        passive_downstream, passive_voltage_sens_p_pu_per_kw, passive_voltage_sens_q_pu_per_kvar: the same
            for the passive loads, (M, n_lines) and (M, n_bus).
    """

    parent: np.ndarray
    r_ohm: np.ndarray
    x_ohm: np.ndarray
    line_rating_kva: np.ndarray
    household_bus: np.ndarray
    transformer_kva: float
    v_nominal_kv: float
    v_slack_pu: float
    transformer_r_ohm: float = 0.0
    transformer_x_ohm: float = 0.0
    passive_bus: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    downstream: np.ndarray = field(init=False, repr=False)
    bus_path: np.ndarray = field(init=False, repr=False)
    voltage_sens_p_pu_per_kw: np.ndarray = field(init=False, repr=False)
    voltage_sens_q_pu_per_kvar: np.ndarray = field(init=False, repr=False)
    passive_downstream: np.ndarray = field(init=False, repr=False)
    passive_voltage_sens_p_pu_per_kw: np.ndarray = field(init=False, repr=False)
    passive_voltage_sens_q_pu_per_kvar: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parent = _frozen_array(self.parent, np.int64, "parent")
        n_bus = parent.shape[0]
        if n_bus < 2:
            raise ValueError(f"parent must describe at least 2 buses (busbar + 1), got {n_bus}")
        if parent[0] != -1:
            raise ValueError(f"parent[0] must be -1 (bus 0 is the slack busbar), got {parent[0]}")
        bus = np.arange(1, n_bus)
        bad = np.flatnonzero((parent[1:] < 0) | (parent[1:] >= bus)) + 1
        if bad.size:
            raise ValueError(
                f"parent[{bad[0]}] = {parent[bad[0]]} must be in [0, {bad[0]}): buses are numbered "
                "so that a parent precedes its children"
            )
        n_lines = n_bus - 1
        lines = {}
        for name, allow_zero in (("r_ohm", True), ("x_ohm", True), ("line_rating_kva", False)):
            values = _frozen_array(getattr(self, name), np.float64, name)
            if values.shape != (n_lines,):
                raise ValueError(f"{name} must have shape ({n_lines},) (one per line), got {values.shape}")
            invalid = ~np.isfinite(values) | ((values < 0) if allow_zero else (values <= 0))
            if invalid.any():
                i = int(np.flatnonzero(invalid)[0])
                raise ValueError(f"{name}[{i}] = {values[i]} must be finite and {'>= 0' if allow_zero else '> 0'}")
            lines[name] = values
        household_bus = _frozen_array(self.household_bus, np.int64, "household_bus")
        if household_bus.size == 0:
            raise ValueError("household_bus must list at least one household")
        passive_bus = _frozen_array(self.passive_bus, np.int64, "passive_bus")
        for name, buses in (("household_bus", household_bus), ("passive_bus", passive_bus)):
            invalid = (buses < 1) | (buses >= n_bus)
            if invalid.any():
                n = int(np.flatnonzero(invalid)[0])
                raise ValueError(f"{name}[{n}] = {buses[n]} must be in [1, {n_bus})")
        _check_positive(self.transformer_kva, "transformer_kva")
        _check_positive(self.v_nominal_kv, "v_nominal_kv")
        for name in ("transformer_r_ohm", "transformer_x_ohm"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)}")
        lo, hi = V_SLACK_RANGE_PU
        if not (np.isfinite(self.v_slack_pu) and lo <= self.v_slack_pu <= hi):
            raise ValueError(f"v_slack_pu must be in [{lo}, {hi}], got {self.v_slack_pu}")

        bus_path = np.zeros((n_bus, n_lines))
        for b in range(1, n_bus):  # parents come first, so their rows are already complete
            bus_path[b] = bus_path[parent[b]]
            bus_path[b, b - 1] = 1.0
        scale = _KW_OHM_PER_KV2_TO_PU / self.v_nominal_kv**2
        downstream, passive_downstream = bus_path[household_bus], bus_path[passive_bus]
        sens_p, passive_sens_p = (_voltage_drop(paths, bus_path, lines["r_ohm"], float(self.transformer_r_ohm), scale)
                                  for paths in (downstream, passive_downstream))
        sens_q, passive_sens_q = (_voltage_drop(paths, bus_path, lines["x_ohm"], float(self.transformer_x_ohm), scale)
                                  for paths in (downstream, passive_downstream))
        derived = {
            "parent": parent,
            **lines,
            "household_bus": household_bus,
            "transformer_kva": float(self.transformer_kva),
            "v_nominal_kv": float(self.v_nominal_kv),
            "v_slack_pu": float(self.v_slack_pu),
            "transformer_r_ohm": float(self.transformer_r_ohm),
            "transformer_x_ohm": float(self.transformer_x_ohm),
            "downstream": downstream,
            "bus_path": bus_path,
            "voltage_sens_p_pu_per_kw": sens_p,
            "voltage_sens_q_pu_per_kvar": sens_q,
            "passive_bus": passive_bus,
            "passive_downstream": passive_downstream,
            "passive_voltage_sens_p_pu_per_kw": passive_sens_p,
            "passive_voltage_sens_q_pu_per_kvar": passive_sens_q,
        }
        for name, value in derived.items():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def n_bus(self) -> int:
        return self.parent.shape[0]

    @property
    def n_lines(self) -> int:
        return self.parent.shape[0] - 1

    @property
    def n_households(self) -> int:
        return self.household_bus.shape[0]

    @property
    def n_passive(self) -> int:
        return self.passive_bus.shape[0]

    def with_loads(self, household_bus: np.ndarray, passive_bus: np.ndarray | None = None) -> "Feeder":
        """The same network with its households (and passive loads, none by default) at other buses."""
        return Feeder(self.parent, self.r_ohm, self.x_ohm, self.line_rating_kva, household_bus,
                      self.transformer_kva, self.v_nominal_kv, self.v_slack_pu, self.transformer_r_ohm,
                      self.transformer_x_ohm, np.zeros(0, dtype=np.int64) if passive_bus is None else passive_bus)


def _voltage_drop(paths: np.ndarray, bus_path: np.ndarray, line_ohm: np.ndarray, transformer_ohm: float,
                  scale: float) -> np.ndarray:
    """(K, n_bus) voltage drop at each bus per kW (or kvar) consumed at the end of each of the K (K, n_lines)
    ``paths`` from the busbar: the sum of r (or x) over the lines shared by both paths, plus the transformer's,
    which all power passes (adding the default 0.0 changes no bit)."""
    return (paths @ (bus_path * line_ohm).T + transformer_ohm) * scale


@dataclass(frozen=True, eq=False)
class FlowRows:
    """The linear model's rows of everything that draws power from the feeder: the households' (the feeder's own
    arrays) and, after them, one per device at a bus of its own (the shared community battery)."""

    downstream: np.ndarray  # (P, n_lines) 1.0 where line l carries participant p's power
    voltage_sens_p_pu_per_kw: np.ndarray  # (P, n_bus)
    voltage_sens_q_pu_per_kvar: np.ndarray  # (P, n_bus)


def flow_rows(feeder: Feeder, device_buses: tuple[int, ...] = ()) -> FlowRows:
    """The households' rows of ``feeder`` followed by those of devices at ``device_buses``, any bus in
    [0, n_bus) (0, the busbar, loads no line: only the transformer's impedance lies between it and the slack)."""
    if not device_buses:
        return FlowRows(feeder.downstream, feeder.voltage_sens_p_pu_per_kw, feeder.voltage_sens_q_pu_per_kvar)
    buses = np.asarray(device_buses, dtype=np.int64)
    if buses.min() < 0 or buses.max() >= feeder.n_bus:
        raise ValueError(f"device buses {buses.tolist()} must lie in [0, {feeder.n_bus - 1}]")
    paths = feeder.bus_path[buses]
    scale = _KW_OHM_PER_KV2_TO_PU / feeder.v_nominal_kv**2
    return FlowRows(
        np.vstack([feeder.downstream, paths]),
        np.vstack([feeder.voltage_sens_p_pu_per_kw,
                   _voltage_drop(paths, feeder.bus_path, feeder.r_ohm, feeder.transformer_r_ohm, scale)]),
        np.vstack([feeder.voltage_sens_q_pu_per_kvar,
                   _voltage_drop(paths, feeder.bus_path, feeder.x_ohm, feeder.transformer_x_ohm, scale)]))


@dataclass(frozen=True, eq=False)
class PowerFlow:
    """Result of ``linear_power_flow`` for a batch of B operating points."""

    voltage_pu: np.ndarray  # (B, n_bus)
    household_voltage_pu: np.ndarray  # (B, N)
    line_flow_kva: np.ndarray  # (B, n_lines) apparent power magnitude through each line
    transformer_kva: np.ndarray  # (B,) apparent power through the substation transformer


def radial_feeder(
    n_households: int,
    n_laterals: int = 2,
    segment_km: float = 0.15,
    r_ohm_per_km: float = 0.443,
    x_ohm_per_km: float = 0.069,
    line_rating_kva: float = 100.0,
    transformer_kva: float = 100.0,
    v_nominal_kv: float = 0.4,
    v_slack_pu: float = 1.03,
    households_per_bus: int = 1,
) -> Feeder:
    """Busbar with ``n_laterals`` chains of buses; households assigned round-robin to laterals.

    Household n goes to lateral ``n % n_laterals``; along a lateral, consecutive households fill
    buses ``households_per_bus`` at a time, each bus ``segment_km`` further out (the first one
    ``segment_km`` from the busbar). Laterals that receive no household get no buses. All
    segments share the same per-km impedance and rating. Buses are numbered lateral by lateral.
    """
    if isinstance(n_households, bool) or not isinstance(n_households, (int, np.integer)) or n_households < 1:
        raise ValueError(f"n_households must be an int >= 1, got {n_households!r}")
    if isinstance(n_laterals, bool) or not isinstance(n_laterals, (int, np.integer)) or n_laterals < 1:
        raise ValueError(f"n_laterals must be an int >= 1, got {n_laterals!r}")
    if (
        isinstance(households_per_bus, bool)
        or not isinstance(households_per_bus, (int, np.integer))
        or households_per_bus < 1
    ):
        raise ValueError(f"households_per_bus must be an int >= 1, got {households_per_bus!r}")
    _check_positive(segment_km, "segment_km")
    for name, value in (("r_ohm_per_km", r_ohm_per_km), ("x_ohm_per_km", x_ohm_per_km)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    _check_positive(line_rating_kva, "line_rating_kva")

    parent = [-1]
    household_bus = np.zeros(n_households, dtype=np.int64)
    for lateral in range(n_laterals):
        members = np.arange(lateral, n_households, n_laterals)
        n_buses = -(-members.size // households_per_bus)  # ceil division
        first = len(parent)
        if n_buses:  # a chain: the first bus hangs off the busbar, each next one off the previous
            parent.extend([0, *range(first, first + n_buses - 1)])
        household_bus[members] = first + np.arange(members.size) // households_per_bus
    n_lines = len(parent) - 1
    return Feeder(
        parent=np.array(parent),
        r_ohm=np.full(n_lines, r_ohm_per_km * segment_km),
        x_ohm=np.full(n_lines, x_ohm_per_km * segment_km),
        line_rating_kva=np.full(n_lines, float(line_rating_kva)),
        household_bus=household_bus,
        transformer_kva=transformer_kva,
        v_nominal_kv=v_nominal_kv,
        v_slack_pu=v_slack_pu,
    )


def _load_array(value: Any, n: int, name: str, ndim: int, what: str = "household") -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim or array.shape[-1] != n:
        expected = f"(B, {n})" if ndim == 2 else f"({n},)"
        raise ValueError(f"{name} must have shape {expected} (one column per {what}), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def _household_array(value: Any, feeder: Feeder, name: str, ndim: int) -> np.ndarray:
    return _load_array(value, feeder.n_households, name, ndim)


def linear_power_flow(feeder: Feeder, p_kw: np.ndarray, q_kvar: np.ndarray, passive_kw: np.ndarray | None = None,
                      passive_kvar: np.ndarray | None = None) -> PowerFlow:
    """LinDistFlow voltages and flows for (B, N) net household consumption (+ load, - injection), and the (B, M)
    net consumption of the feeder's passive loads if it has any (then both passive arrays are required)."""
    p_kw = _household_array(p_kw, feeder, "p_kw", ndim=2)
    q_kvar = _household_array(q_kvar, feeder, "q_kvar", ndim=2)
    if p_kw.shape != q_kvar.shape:
        raise ValueError(f"p_kw and q_kvar must have the same shape, got {p_kw.shape} and {q_kvar.shape}")
    if feeder.n_passive:
        if passive_kw is None or passive_kvar is None:
            raise ValueError(f"the feeder has {feeder.n_passive} passive loads: pass their passive_kw and "
                             "passive_kvar")
        passive_kw, passive_kvar = (_load_array(values, feeder.n_passive, name, 2, "passive load")
                                    for values, name in ((passive_kw, "passive_kw"), (passive_kvar, "passive_kvar")))
        if passive_kw.shape != (p_kw.shape[0], feeder.n_passive) or passive_kvar.shape != passive_kw.shape:
            raise ValueError(f"passive_kw and passive_kvar must have shape {(p_kw.shape[0], feeder.n_passive)}, "
                             f"got {passive_kw.shape} and {passive_kvar.shape}")
    elif passive_kw is not None or passive_kvar is not None:
        raise ValueError("the feeder has no passive loads (passive_bus is empty): leave passive_kw and passive_kvar "
                         "out")
    voltage_pu, household_voltage_pu, _, line_flow_kva, _, transformer_kva = power_flow_arrays(
        feeder, p_kw, q_kvar, None, passive_kw, passive_kvar)
    return PowerFlow(voltage_pu, household_voltage_pu, line_flow_kva, transformer_kva)


def power_flow_arrays(
    feeder: Feeder, p_kw: np.ndarray, q_kvar: np.ndarray, rows: FlowRows | None = None,
    passive_kw: np.ndarray | None = None, passive_kvar: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The computation of ``linear_power_flow`` without its input checks, for callers that built valid
    float64 (B, N) inputs (the simulator, every step); with ``rows`` (``flow_rows``), (B, P) inputs of the
    households and the devices after them; and (B, M) ones for the passive loads where the feeder has them.

    Returns (voltage_pu, household_voltage_pu, line_p_kw, line_flow_kva, total_p_kw, transformer_kva); the
    active powers (> 0 towards the loads) tell the direction of each element's flow.
    """
    rows = rows or flow_rows(feeder)
    voltage_pu = (
        feeder.v_slack_pu - p_kw @ rows.voltage_sens_p_pu_per_kw - q_kvar @ rows.voltage_sens_q_pu_per_kvar
    )
    line_p_kw = p_kw @ rows.downstream
    line_q_kvar = q_kvar @ rows.downstream
    total_p_kw = p_kw.sum(axis=1)
    total_q_kvar = q_kvar.sum(axis=1)
    if passive_kw is not None:  # superposed: the model is linear in the injections
        voltage_pu = (voltage_pu - passive_kw @ feeder.passive_voltage_sens_p_pu_per_kw
                      - passive_kvar @ feeder.passive_voltage_sens_q_pu_per_kvar)
        line_p_kw = line_p_kw + passive_kw @ feeder.passive_downstream
        line_q_kvar = line_q_kvar + passive_kvar @ feeder.passive_downstream
        total_p_kw = total_p_kw + passive_kw.sum(axis=1)
        total_q_kvar = total_q_kvar + passive_kvar.sum(axis=1)
    return (
        voltage_pu,
        voltage_pu[:, feeder.household_bus],
        line_p_kw,
        np.hypot(line_p_kw, line_q_kvar),
        total_p_kw,
        np.hypot(total_p_kw, total_q_kvar),
    )


def line_losses_kw(feeder: Feeder, line_flow_kva: np.ndarray, voltage_pu: np.ndarray) -> np.ndarray:
    """(B,) the feeder's active losses, the sum of I^2 R over its lines, from (B, n_lines) apparent flows and
    (B, n_bus) voltages of a LinDistFlow solution.

    LinDistFlow neglects losses in its flows; this is DistFlow's loss term evaluated on them,
    ``P_loss = sum_l r_l |S_l|^2 / V_from(l)^2`` with ``V_from`` the voltage at the line's sending (parent)
    bus (per phase ``I = S / (sqrt(3) V)``, three phases). ``tests/test_market_design.py`` states and pins its
    worst error against pandapower's AC losses on the shipped feeders.
    """
    sending_v_kv = voltage_pu[:, feeder.parent[1:]] * feeder.v_nominal_kv
    return (line_flow_kva**2 / sending_v_kv**2) @ feeder.r_ohm * _KW_OHM_PER_KV2_TO_PU


def household_distance_ohm(feeder: Feeder, rows: FlowRows | None = None) -> np.ndarray:
    """(N, N) electrical distance between households: the summed impedance magnitude ``|r + jx|`` of the lines
    on the path between their buses (0 on one bus). What a distance-based network charge prices. With ``rows``
    (``flow_rows``), (P, P) between the households and the devices after them."""
    path = (rows or flow_rows(feeder)).downstream  # (P, n_lines): the lines from the busbar to each participant
    between = path[:, None, :] + path[None, :, :] - 2.0 * path[:, None, :] * path[None, :, :]
    return between @ np.hypot(feeder.r_ohm, feeder.x_ohm)


def violations(
    flow: PowerFlow, feeder: Feeder, v_min_pu: float = 0.95, v_max_pu: float = 1.05
) -> dict[str, np.ndarray]:
    """Per-community (B,) network limit violations of a power flow.

    Voltage terms cover buses 1..n_bus-1 (the slack busbar is held by the upstream grid, so the
    community cannot violate there). Magnitudes are sums of excess beyond the limit; counts
    are the number of buses/lines (or 0/1 for the transformer) beyond it:
        undervoltage_pu, overvoltage_pu, line_overload_kva, transformer_overload_kva,
        n_undervoltage_buses, n_overvoltage_buses, n_overloaded_lines, n_overloaded_transformers.
    """
    if not (np.isfinite(v_min_pu) and np.isfinite(v_max_pu) and 0 < v_min_pu < v_max_pu):
        raise ValueError(f"need 0 < v_min_pu < v_max_pu, got v_min_pu={v_min_pu}, v_max_pu={v_max_pu}")
    voltage_pu = flow.voltage_pu[:, 1:]
    under = np.maximum(v_min_pu - voltage_pu, 0.0)
    over = np.maximum(voltage_pu - v_max_pu, 0.0)
    line_excess = np.maximum(flow.line_flow_kva - feeder.line_rating_kva, 0.0)
    transformer_excess = np.maximum(flow.transformer_kva - feeder.transformer_kva, 0.0)
    return {
        "undervoltage_pu": under.sum(axis=1),
        "overvoltage_pu": over.sum(axis=1),
        "line_overload_kva": line_excess.sum(axis=1),
        "transformer_overload_kva": transformer_excess,
        "n_undervoltage_buses": (under > 0).sum(axis=1),
        "n_overvoltage_buses": (over > 0).sum(axis=1),
        "n_overloaded_lines": (line_excess > 0).sum(axis=1),
        "n_overloaded_transformers": (transformer_excess > 0).astype(np.int64),
    }


def to_pandapower(feeder: Feeder, p_kw: np.ndarray, q_kvar: np.ndarray) -> pandapowerNet:
    """The same feeder as a pandapower net (ext_grid at bus 0, one load per household), not run.

    Lines get the feeder's impedance as a 1 km line without shunt capacitance; loads carry the
    signed net consumption (negative = injection). The transformer is not modelled, matching
    the linear model whose slack is the LV busbar: a feeder with a transformer impedance (SimBench's)
    is compared against its own pandapower net instead (``p2p_marl.sim.simbench.ac_validation``).
    """
    import pandapower as pp  # test extra, not a core dependency

    if feeder.transformer_r_ohm or feeder.transformer_x_ohm or feeder.n_passive:
        raise ValueError("to_pandapower models neither a transformer impedance nor passive loads; this feeder has "
                         "one (validate a SimBench feeder with p2p_marl.sim.simbench.ac_validation)")

    p_kw = _household_array(p_kw, feeder, "p_kw", ndim=1)
    q_kvar = _household_array(q_kvar, feeder, "q_kvar", ndim=1)
    net = pp.create_empty_network(sn_mva=feeder.transformer_kva / 1e3)
    for b in range(feeder.n_bus):
        pp.create_bus(net, vn_kv=feeder.v_nominal_kv, index=b, name=f"bus {b}")
    pp.create_ext_grid(net, bus=0, vm_pu=feeder.v_slack_pu)
    for line in range(feeder.n_lines):
        pp.create_line_from_parameters(
            net,
            from_bus=int(feeder.parent[line + 1]),
            to_bus=line + 1,
            length_km=1.0,
            r_ohm_per_km=float(feeder.r_ohm[line]),
            x_ohm_per_km=float(feeder.x_ohm[line]),
            c_nf_per_km=0.0,
            max_i_ka=float(feeder.line_rating_kva[line] / (np.sqrt(3.0) * feeder.v_nominal_kv) / 1e3),
            index=line,
        )
    for n in range(feeder.n_households):
        pp.create_load(
            net, bus=int(feeder.household_bus[n]), p_mw=p_kw[n] / 1e3, q_mvar=q_kvar[n] / 1e3, name=f"household {n}"
        )
    return net
