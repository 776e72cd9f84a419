"""SimBench low-voltage grids as ready-made communities: a ``Feeder`` and a ``ProfileSet`` from a SimBench code.

SimBench (``pip install -e ".[simbench]"``) is the open benchmark of German distribution grids; its wheel ships
six LV grids with a year (2016, 366 days) of 15-minute absolute profiles in three scenarios (0 today, 1 2024,
2 2034). ``simbench_community(code, dt_h)`` turns one of them into the simulator's inputs, so that the core, the
LP and every view run on it unchanged:

* Households: the grid's household loads (``net.load`` in its index order: H0 profiles and heat pumps) are the
  agents at their buses, each with its own active and reactive power profile (``ProfileSet.load_kvar``). The
  commercial (G) and agricultural (L) loads are passive loads (``Feeder.passive_bus``, ``ProfileSet.passive_kw``
  / ``passive_kvar``): on the feeder, outside the market. ``agents="all_loads"`` makes every load an agent.
* PV: every static generator (all are PV in the LV grids) feeds a load at its bus: an H0 household first, else
  another agent, else the passive load there (its PV then nets off that load's profile); several on one bus add
  up. ``pv_scale`` multiplies every PV profile (a penetration study). Batteries follow the
  config: each household with PV gets ``battery_kwh`` / ``battery_kw`` (SimBench's own storage units are not used).
* Feeder: the grid's in-service lines form a tree below the single MV/LV transformer; buses are renumbered
  breadth-first from the LV busbar (bus 0), each line keeps its impedance ``r/x_ohm_per_km * length_km /
  parallel`` and its thermal rating ``sqrt(3) * 0.4 kV * max_i_ka * df * parallel``. The transformer enters as
  its series impedance referred to the LV side (``vk_percent``, ``vkr_percent``, ``sn_mva``) and its rating;
  ``v_slack_pu`` is the MV grid's set point ``ext_grid.vm_pu`` through the tap changer's ratio. Magnetising
  losses, line capacitance and the MV grid's impedance are neglected (``ac_validation`` measures the effect).
* Steps: native 15 minutes (``dt_h = 0.25``) or their means over ``dt_h`` = 0.5, 1, ... hours; day ``d`` of the
  profiles is day-of-year ``d`` of 2016.

Loading a grid takes seconds; every function here caches its result per argument (``functools.lru_cache``), so
building a core per worker or per test loads each grid once per process. Returned arrays are read-only.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from p2p_marl.config import SIMBENCH_AGENTS, ConfigError, check_simbench_code
from p2p_marl.sim.feeder import Feeder, linear_power_flow
from p2p_marl.sim.profiles import ProfileSet

if TYPE_CHECKING:  # simbench (and its pandapower) is an optional extra
    from pandapower.auxiliary import pandapowerNet

SIMBENCH_STEP_H = 0.25  # SimBench's profiles are 15-minute means
SIMBENCH_DAYS = 366  # the profile year is 2016
HOUSEHOLD_PROFILE_PREFIX = "H0"  # the BDEW household standard load profiles
PASSIVE_PROFILE_LETTERS = ("G", "L")  # BDEW commercial (G1..G6) and agricultural (L0..L2) profiles
_MW_TO_KW = 1e3
LOAD_ROUNDING_KW = 1e-3  # negative load profile values down to this are rounding and read as 0


@dataclass(frozen=True, eq=False)
class SimbenchCommunity:
    """A SimBench LV grid as the simulator sees it, and where each piece came from in the pandapower net."""

    code: str
    feeder: Feeder
    profiles: ProfileSet
    load_profile_types: tuple[str, ...]  # (N,) SimBench profile of each household's load, e.g. "H0-A", "Air_..."
    passive_profile_types: tuple[str, ...]  # (M,) of each passive load, e.g. "G1-A", "L2-A"
    line_km: np.ndarray  # (n_lines,) length of feeder line i
    bus_index: np.ndarray  # (n_bus,) pandapower bus of feeder bus b
    line_index: np.ndarray  # (n_lines,) pandapower line of feeder line i (which feeds bus i + 1)
    sgen_household: np.ndarray  # (n_sgen,) household that each static generator (net.sgen order) feeds; -1: passive
    household_load: np.ndarray  # (N,) net.load row of each household
    passive_load: np.ndarray  # (M,) net.load row of each passive load

    @property
    def n_households(self) -> int:
        return self.feeder.n_households

    @property
    def feeder_length_km(self) -> float:
        """The longest path from the transformer to a bus."""
        return float((self.feeder.bus_path @ self.line_km).max())


@functools.lru_cache(maxsize=None)
def simbench_net(code: str) -> pandapowerNet:
    """The SimBench net of ``code`` (cached: callers that change it must work on a ``copy.deepcopy``)."""
    check_simbench_code(code)
    try:
        import simbench
    except ImportError:
        raise ConfigError(f"simbench_code={code!r} needs the simbench package: pip install -e \".[simbench]\"") from None
    return simbench.get_simbench_net(code)


@functools.lru_cache(maxsize=None)
def quarter_hour_profiles_kw(code: str) -> dict[str, np.ndarray]:
    """SimBench's absolute profiles of ``code``, (35136 steps, n) in kW / kvar: load_kw (values within
    ``LOAD_ROUNDING_KW`` below zero read as 0), load_kvar, sgen_kw."""
    import simbench

    values = simbench.get_absolute_values(simbench_net(code), profiles_instead_of_study_cases=True)
    arrays = {"load_kw": values[("load", "p_mw")], "load_kvar": values[("load", "q_mvar")],
              "sgen_kw": values[("sgen", "p_mw")]}
    arrays = {name: np.asarray(frame, dtype=np.float64) * _MW_TO_KW for name, frame in arrays.items()}
    # A few heat-pump profiles (HLS_C_3.7) dip to -4e-5 kW, rounding in SimBench's data; loads are >= 0 here.
    load_kw = arrays["load_kw"]
    if load_kw.min() < -LOAD_ROUNDING_KW:
        step, load = np.unravel_index(np.argmin(load_kw), load_kw.shape)
        raise ConfigError(f"simbench_code={code!r}: load {load} draws {load_kw[step, load]} kW at quarter hour "
                          f"{step}; loads must be >= 0")
    arrays["load_kw"] = np.maximum(load_kw, 0.0)
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=None)
def simbench_community(code: str, dt_h: float, pv_scale: float = 1.0,
                       agents: str = "households") -> SimbenchCommunity:
    """The community of SimBench grid ``code`` with steps of ``dt_h`` hours (a multiple of 15 minutes); ``agents``
    is ``households`` (the commercial and agricultural loads are passive) or ``all_loads``."""
    steps_per_sample = dt_h / SIMBENCH_STEP_H
    if not (math.isfinite(steps_per_sample) and steps_per_sample >= 1 - 1e-9
            and abs(steps_per_sample - round(steps_per_sample)) < 1e-9):
        raise ConfigError(f"dt_h={dt_h!r} must be a multiple of SimBench's 15-minute step (0.25, 0.5, 1.0, ...)")
    if not (math.isfinite(pv_scale) and pv_scale >= 0):
        raise ConfigError(f"simbench_pv_scale={pv_scale!r} must be a finite number >= 0")
    if agents not in SIMBENCH_AGENTS:
        raise ConfigError(f"simbench_agents={agents!r} is not allowed; choose one of {list(SIMBENCH_AGENTS)}")
    net = simbench_net(code)
    feeder, bus_index, line_index, line_km = _feeder(net, code)
    bus_of = {int(bus): b for b, bus in enumerate(bus_index)}
    load_bus = net.load.bus.to_numpy()
    all_types = tuple(str(profile) for profile in net.load.profile)
    is_agent = np.array([agents == "all_loads" or not _is_passive(kind) for kind in all_types])
    if not is_agent.any():
        raise ConfigError(f"simbench_code={code!r} has no household loads; set simbench_agents=all_loads")
    agent_loads, passive_loads = np.flatnonzero(is_agent), np.flatnonzero(~is_agent)
    # Columns: the agents' loads, then the passive ones. Each PV unit feeds an agent at its bus if there is one
    # (else it is passive with the loads there); unit k's owner is column sgen_owner[k].
    order = np.concatenate([agent_loads, passive_loads])
    owner_load = np.array([_pv_owner(load_bus, all_types, is_agent, int(bus), code) for bus in net.sgen.bus],
                          dtype=np.int64)
    sgen_owner = np.argsort(order)[owner_load]

    raw = quarter_hour_profiles_kw(code)
    pv_quarter_kw = np.zeros((raw["sgen_kw"].shape[0], len(net.load)))
    np.add.at(pv_quarter_kw.T, sgen_owner, raw["sgen_kw"].T)
    steps = round(steps_per_sample)
    load_kw, load_kvar, pv_kw = (_day_steps(array, steps) for array in (raw["load_kw"][:, order],
                                                                         raw["load_kvar"][:, order],
                                                                         pv_quarter_kw * pv_scale))
    n = agent_loads.size
    passive = {}
    if passive_loads.size:
        passive = {"passive_kw": load_kw[..., n:] - pv_kw[..., n:], "passive_kvar": load_kvar[..., n:]}
    profiles = ProfileSet(load_kw[..., :n], pv_kw[..., :n], pv_kw[..., :n].max(axis=(0, 1)) > 0,
                          np.arange(SIMBENCH_DAYS), dt_h, tuple(str(net.load.name[i]) for i in agent_loads),
                          load_kvar[..., :n], **passive)
    for name in ("load_kw", "pv_kw", "load_kvar", "passive_kw", "passive_kvar"):
        if getattr(profiles, name) is not None:
            getattr(profiles, name).setflags(write=False)
    feeder = feeder.with_loads(np.array([bus_of[int(load_bus[i])] for i in agent_loads]),
                               np.array([bus_of[int(load_bus[i])] for i in passive_loads], dtype=np.int64))
    sgen_household = np.where(sgen_owner < n, sgen_owner, -1)
    for array in (line_km, bus_index, line_index, sgen_household, passive_loads):
        array.setflags(write=False)
    return SimbenchCommunity(code, feeder, profiles, tuple(all_types[i] for i in agent_loads),
                             tuple(all_types[i] for i in passive_loads), line_km, bus_index, line_index,
                             sgen_household, agent_loads, passive_loads)


def _is_passive(profile: str) -> bool:
    """A commercial (G1..G6) or agricultural (L0..L2) standard load profile: not a household's."""
    return profile[:1] in PASSIVE_PROFILE_LETTERS and profile[1:2].isdigit()


def _day_steps(quarter_hours: np.ndarray, steps: int) -> np.ndarray:
    """(35136, n) 15-minute values -> (366 days, T, n) means over ``steps`` quarter hours."""
    n = quarter_hours.shape[1]
    return quarter_hours.reshape(SIMBENCH_DAYS, -1, steps, n).mean(axis=2)


def _pv_owner(load_bus: np.ndarray, types: tuple[str, ...], is_agent: np.ndarray, bus: int, code: str) -> int:
    """The load that a PV unit at ``bus`` feeds: the first household (H0) there, else the first agent, else the
    first (passive) load there."""
    at_bus = np.flatnonzero(load_bus == bus)
    if at_bus.size == 0:
        raise ConfigError(f"simbench_code={code!r}: a PV unit sits at bus {bus}, which has no load to own it")
    for candidates in ([n for n in at_bus if is_agent[n] and types[n].startswith(HOUSEHOLD_PROFILE_PREFIX)],
                       [n for n in at_bus if is_agent[n]]):
        if candidates:
            return int(candidates[0])
    return int(at_bus[0])


def _feeder(net: Any, code: str) -> tuple[Feeder, np.ndarray, np.ndarray, np.ndarray]:
    """The grid's tree below its transformer, with a placeholder household (``Feeder.with_loads`` sets them)."""
    if len(net.trafo) != 1:
        raise ConfigError(f"simbench_code={code!r}: expected one MV/LV transformer, found {len(net.trafo)}")
    trafo = net.trafo.iloc[0]
    open_lines = set(net.switch.element[(net.switch.et == "l") & ~net.switch.closed])
    lines = net.line[net.line.in_service & ~net.line.index.isin(open_lines)]
    neighbours: dict[int, list[tuple[int, int]]] = {}
    for index, from_bus, to_bus in zip(lines.index, lines.from_bus, lines.to_bus):
        neighbours.setdefault(int(from_bus), []).append((int(to_bus), int(index)))
        neighbours.setdefault(int(to_bus), []).append((int(from_bus), int(index)))
    # Breadth-first from the LV busbar: a parent gets its number before its children, as Feeder requires.
    order, parent, feeding_line = [int(trafo.lv_bus)], [-1], []
    number = {int(trafo.lv_bus): 0}
    for bus in order:
        for other, line in neighbours.get(bus, []):
            if other not in number:
                number[other] = len(order)
                order.append(other)
                parent.append(number[bus])
                feeding_line.append(line)
    if len(feeding_line) != len(lines):
        raise ConfigError(f"simbench_code={code!r}: the LV grid is not one radial tree below its transformer "
                          f"({len(lines)} lines, {len(feeding_line)} in the tree)")
    line = lines.loc[feeding_line]
    parallel = line.parallel.to_numpy()
    length_km = line.length_km.to_numpy(dtype=np.float64)
    v_lv_kv = float(trafo.vn_lv_kv)
    base_ohm = v_lv_kv**2 / float(trafo.sn_mva) / 100.0  # ohm per percent of the transformer's own base
    z_ohm, r_ohm = trafo.vk_percent * base_ohm, trafo.vkr_percent * base_ohm
    feeder = Feeder(
        parent=np.array(parent),
        r_ohm=line.r_ohm_per_km.to_numpy() * length_km / parallel,
        x_ohm=line.x_ohm_per_km.to_numpy() * length_km / parallel,
        line_rating_kva=math.sqrt(3.0) * v_lv_kv * line.max_i_ka.to_numpy() * line.df.to_numpy() * parallel * 1e3,
        household_bus=np.array([1]),
        transformer_kva=float(trafo.sn_mva) * trafo.parallel * 1e3,
        v_nominal_kv=v_lv_kv,
        v_slack_pu=_lv_set_point_pu(net, trafo),
        transformer_r_ohm=r_ohm / trafo.parallel,
        transformer_x_ohm=math.sqrt(z_ohm**2 - r_ohm**2) / trafo.parallel,
    )
    return feeder, np.array(order, dtype=np.int64), np.array(feeding_line, dtype=np.int64), length_km


def _lv_set_point_pu(net: Any, trafo: Any) -> float:
    """The no-load LV voltage: the MV set point through the transformer's ratio at its tap position."""
    grid = net.ext_grid[net.ext_grid.bus == trafo.hv_bus]
    if len(grid) != 1:
        raise ConfigError("the SimBench grid's external grid must sit at its transformer's MV bus")
    tap = 1.0 + (trafo.tap_pos - trafo.tap_neutral) * trafo.tap_step_percent / 100.0
    hv_kv, lv_kv = trafo.vn_hv_kv * (tap if trafo.tap_side == "hv" else 1.0), trafo.vn_lv_kv * (
        tap if trafo.tap_side == "lv" else 1.0)
    hv_bus_kv, lv_bus_kv = net.bus.vn_kv[trafo.hv_bus], net.bus.vn_kv[trafo.lv_bus]
    return float(grid.vm_pu.iloc[0] * hv_bus_kv / hv_kv * lv_kv / lv_bus_kv)


# ---------------------------------------------------------------------------------------------------------
# Validation against pandapower's AC power flow
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AcComparison:
    """LinDistFlow against the AC power flow of SimBench's own net at one 15-minute step."""

    code: str
    step: int  # quarter hour of the year
    voltage_error_pu: float  # max over buses of |v_linear - v_ac|
    loading_error_pct: float  # max over lines and the transformer of |S_linear - S_ac| in % of the rating
    max_voltage_drop_pu: float  # max over buses of |v_ac - v_slack|: how far the operating point is from no load


def extreme_steps(code: str) -> dict[str, int]:
    """The quarter hours that stress the linear model most: the year's highest net export (sunny noon) and
    highest net load (winter evening) of the whole grid."""
    raw = quarter_hour_profiles_kw(code)
    net_kw = raw["load_kw"].sum(axis=1) - raw["sgen_kw"].sum(axis=1)
    return {"max_export": int(np.argmin(net_kw)), "max_load": int(np.argmax(net_kw))}


def ac_validation(code: str, step: int) -> AcComparison:
    """Run pandapower's AC power flow on SimBench's net at quarter hour ``step`` (its storage units idle, as the
    community's batteries are at this comparison) and compare the LinDistFlow feeder on the same injections."""
    import pandapower as pp

    community = simbench_community(code, SIMBENCH_STEP_H)
    raw = quarter_hour_profiles_kw(code)
    net = copy.deepcopy(simbench_net(code))
    net.load["p_mw"] = raw["load_kw"][step] / _MW_TO_KW
    net.load["q_mvar"] = raw["load_kvar"][step] / _MW_TO_KW
    net.sgen["p_mw"] = raw["sgen_kw"][step] / _MW_TO_KW
    net.sgen["q_mvar"] = 0.0
    net.storage["in_service"] = False
    # SimBench's 2024/2034 scenarios set tap positions, but leave tap_changer_type empty, which pandapower 3
    # reads as "no tap changer" and ignores the tap; the feeder's v_slack_pu applies it, so the AC run must too.
    net.trafo["tap_changer_type"] = "Ratio"
    pp.runpp(net)

    profiles = community.profiles
    day, t = divmod(step, profiles.steps_per_day)
    p_kw = profiles.load_kw[day, t] - profiles.pv_kw[day, t]
    passive = {}
    if community.feeder.n_passive:
        passive = {"passive_kw": profiles.passive_kw[day, t][None], "passive_kvar": profiles.passive_kvar[day, t][None]}
    flow = linear_power_flow(community.feeder, p_kw[None], profiles.load_kvar[day, t][None], **passive)
    feeder = community.feeder
    v_ac = net.res_bus.vm_pu.loc[community.bus_index].to_numpy()
    line = net.res_line.loc[community.line_index]
    # A line's two ends differ by its losses, which LinDistFlow neglects; a rating binds at the larger one.
    s_ac_kva = np.maximum(np.hypot(line.p_from_mw, line.q_from_mvar), np.hypot(line.p_to_mw, line.q_to_mvar))
    trafo = net.res_trafo.iloc[0]
    trafo_ac_kva = math.hypot(trafo.p_lv_mw, trafo.q_lv_mvar) * _MW_TO_KW
    loading_error = np.abs(flow.line_flow_kva[0] - s_ac_kva.to_numpy() * _MW_TO_KW) / feeder.line_rating_kva
    trafo_error = abs(flow.transformer_kva[0] - trafo_ac_kva) / feeder.transformer_kva
    return AcComparison(code, step, float(np.abs(flow.voltage_pu[0] - v_ac).max()),
                        float(100.0 * max(loading_error.max(), trafo_error)),
                        float(np.abs(v_ac - feeder.v_slack_pu).max()))

