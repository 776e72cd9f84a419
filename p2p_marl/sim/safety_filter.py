"""A feeder safety filter: the smallest change of the households' battery power and PV curtailment that keeps a
step's voltages in the band and the lines and the transformer within their ratings.

It acts for the community as a distribution operator's device would: it reads every household's metered load and
PV of the step being settled, the batteries' stored energy and the feeder's linear model (the simulator's own
LinDistFlow, so its prediction of the step's flow is the step's flow). Where the households' battery power and
curtailment keep the feeder within its limits they pass unchanged; where they do not, one small LP per such
community (HiGHS) moves each household's net power ``net_kw`` (kW, > 0 imports) by

    net_new = net + more_charge - more_discharge + more_curtailed - less_curtailed      (all >= 0, kW)

within its battery's feasible power this step and the PV available, minimising

    sum over households of (more_charge + more_discharge + 2 * more_curtailed + 0.5 * less_curtailed)
    + 1e6 * (voltage slack, p.u.) + 1e3 * (line and transformer slack, kW)

subject to, at every bus and element (the reactive power is the loads' and does not move):

    v_min + margin <= v_slack - net_new @ S_p - q @ S_q (- the passive loads' drop) <= v_max - margin
    |line_p(net_new)| <= sqrt(rating^2 - line_q^2) - margin,  the same for the transformer's total

At one bus, charging a kW relieves the feeder as much as curtailing a kW, and costs half: PV is curtailed only
where the battery beside it charges as fast as it can. Curtailment asked for is given back only where that
relieves the feeder (an undervoltage or an import overload), and there before any battery discharges harder.
The slacks keep the LP feasible where no move suffices (empty batteries under an evening peak on a weak feeder;
an export excess can always be curtailed); they are then as small as the moves allow. The margins keep the plan
inside the limits by more than the solver's tolerance, so that a filtered step is within them as the simulator
checks.

Two views use it: the environment option ``safety_filter`` (``CommunityCore.step`` filters every step, so that a
learner trains and plays through it) and ``p2p_marl.baselines.safety_filter.SafetyFilter``, which plays any
policy through it on an environment without the option (``evaluate.py safety_filter=true``). A community with a
shared battery is not supported (its rule's power follows the households' net power, which the filter moves).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import highspy
import numpy as np

from p2p_marl.lp import LPBuilder, quiet_highs
from p2p_marl.sim.battery import feasible_power
from p2p_marl.sim.feeder import power_flow_arrays

if TYPE_CHECKING:
    from p2p_marl.sim.community import CommunityCore

VOLTAGE_MARGIN_PU = 1e-5  # the band the filter plans to, inside the real one on both sides
FLOW_MARGIN_KW = 1e-6  # the same for the active-power limits of the lines and the transformer
# A household's power counts as moved when the filter changes it by more than this (kW): ten times HiGHS's
# feasibility tolerance, far below any power that changes a bill. Both views count moved community-steps by it.
MOVED_KW = 1e-6
# Each household's moves (more_charge, more_discharge, more_curtailed, less_curtailed): their sign in net_new and
# their cost per kW (the module docstring).
MOVE_SIGN = np.array([1.0, -1.0, 1.0, -1.0])
MOVE_COST = np.array([1.0, 1.0, 2.0, 0.5])
VOLTAGE_SLACK_COST_PER_PU = 1e6
FLOW_SLACK_COST_PER_KW = 1e3


def filtered_power(core: CommunityCore, load_kw: np.ndarray, pv_kw: np.ndarray, battery_kw: np.ndarray,
                   curtailed_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The step's (battery power kW, > 0 charging; curtailed PV kW), both (B, N), after the filter of the module
    docstring, and (B,) True for the communities whose power it moved. ``battery_kw`` must be feasible this step
    (``feasible_power`` of ``core.energy_kwh``) and ``curtailed_kw`` within [0, ``pv_kw``]; the filtered power is
    too."""
    step = _Step(core, load_kw, pv_kw, battery_kw, curtailed_kw)
    moved = step.outside_limits()
    battery_kw, curtailed_kw = battery_kw.copy(), curtailed_kw.copy()
    for b in np.flatnonzero(moved):
        battery_kw[b], curtailed_kw[b] = step.safe_power(b)
    return battery_kw, curtailed_kw, moved


def idle_step_outside_limits(core: CommunityCore) -> np.ndarray:
    """(B,) True for the communities whose step about to be played leaves the voltage band or overloads a line or
    the transformer with every household's battery idle and no PV curtailed: grid-only's step, so a property of the
    day and the hour, not of anyone's actions (a shared battery's power is not counted)."""
    load_kw, pv_kw = core.step_profiles_kw()
    idle_kw = np.zeros_like(load_kw)
    return _Step(core, load_kw, pv_kw, idle_kw, idle_kw).outside_limits()


class _Step:
    """The step's flow under the households' battery power and curtailment, as ``CommunityCore.step`` computes
    it, and its repair."""

    def __init__(self, core: CommunityCore, load_kw: np.ndarray, pv_kw: np.ndarray, battery_kw: np.ndarray,
                 curtailed_kw: np.ndarray):
        self.core, self.pv_kw, self.battery_kw, self.curtailed_kw = core, pv_kw, battery_kw, curtailed_kw
        battery, dt_h = core.battery, core.dt_h
        self.max_charge_kw, _ = feasible_power(battery.max_kw, core.energy_kwh, battery, dt_h)
        _, self.max_discharge_kw = feasible_power(-battery.max_kw, core.energy_kwh, battery, dt_h)
        net_kw = load_kw - pv_kw + curtailed_kw + battery_kw
        q_kvar = core.reactive_kvar(load_kw, core.days, core.t)
        passive = core.passive_power(core.days, core.t)
        self.flow = power_flow_arrays(core.feeder, net_kw, q_kvar, core.flow_rows, *passive)

    def outside_limits(self) -> np.ndarray:
        """(B,) True where the step leaves the voltage band anywhere or overloads an element."""
        cfg, feeder = self.core.config, self.core.feeder
        voltage_pu, _, _, line_flow_kva, _, transformer_kva = self.flow
        return ((voltage_pu < cfg.v_min_pu).any(axis=1) | (voltage_pu > cfg.v_max_pu).any(axis=1)
                | (line_flow_kva > feeder.line_rating_kva).any(axis=1) | (transformer_kva > feeder.transformer_kva))

    def safe_power(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Community ``b``'s (battery power kW, > 0 charging; curtailed PV kW) after the LP of the module
        docstring."""
        core, feeder, cfg = self.core, self.core.feeder, self.core.config
        voltage_pu, _, line_p_kw, line_flow_kva, total_p_kw, transformer_kva = (value[b] for value in self.flow)
        # The reactive flows do not move, so each element's active-power limit is sqrt(rating^2 - q^2), with
        # q^2 = kva^2 - p^2 read back from the step's flow (the passive loads' share included).
        line_limit_kw = (np.sqrt(np.maximum(feeder.line_rating_kva**2 - line_flow_kva**2 + line_p_kw**2, 0.0))
                         - FLOW_MARGIN_KW)
        trafo_limit_kw = (np.sqrt(max(feeder.transformer_kva**2 - transformer_kva**2 + total_p_kw**2, 0.0))
                          - FLOW_MARGIN_KW)
        # A change d (kW) of the households' net power moves the voltages by -d @ S_p and the active flows by
        # d @ downstream; each block: (coefficients per kW (N, k), lower and upper bounds (k,), slack cost).
        blocks = (
            (-core.flow_rows.voltage_sens_p_pu_per_kw, cfg.v_min_pu + VOLTAGE_MARGIN_PU - voltage_pu,
             cfg.v_max_pu - VOLTAGE_MARGIN_PU - voltage_pu, VOLTAGE_SLACK_COST_PER_PU),
            (core.flow_rows.downstream, -line_limit_kw - line_p_kw, line_limit_kw - line_p_kw,
             FLOW_SLACK_COST_PER_KW),
            (np.ones((core.n_agents, 1)), -trafo_limit_kw - total_p_kw, trafo_limit_kw - total_p_kw,
             FLOW_SLACK_COST_PER_KW),
        )
        room_kw = np.stack([self.max_charge_kw[b] - self.battery_kw[b], self.battery_kw[b] + self.max_discharge_kw[b],
                            self.pv_kw[b] - self.curtailed_kw[b], self.curtailed_kw[b]], axis=1)  # (N, moves)
        moves = _cheapest_moves(np.maximum(room_kw, 0.0), blocks)
        battery_change_kw = moves[:, :2] @ MOVE_SIGN[:2]
        curtailed_change_kw = moves[:, 2:] @ MOVE_SIGN[2:]
        battery_kw = np.clip(self.battery_kw[b] + battery_change_kw, -self.max_discharge_kw[b], self.max_charge_kw[b])
        curtailed_kw = np.clip(self.curtailed_kw[b] + curtailed_change_kw, 0.0, self.pv_kw[b])
        return battery_kw, curtailed_kw


def _cheapest_moves(room_kw: np.ndarray, blocks) -> np.ndarray:
    """The LP's moves (N, 4), each in [0, room_kw]. In each block of rows, row r reads
    ``lower[r] <= sum_i coef[i, r] * (moves[i] @ MOVE_SIGN) + slack_low[r] - slack_high[r] <= upper[r]``, both
    slacks >= 0 at the block's cost. ``RuntimeError`` if HiGHS does not reach the optimum (one always exists:
    the slacks make every point feasible)."""
    model = LPBuilder()
    moves = model.columns(room_kw.shape, MOVE_COST, 0.0, room_kw)
    for coef, lower, upper, slack_cost in blocks:
        n_rows = coef.shape[1]
        rows = model.rows((n_rows,), lower, upper)
        model.entries(rows[None, :, None], moves[:, None, :], coef[:, :, None] * MOVE_SIGN)
        model.entries(rows, model.columns((n_rows,), slack_cost, 0.0, np.inf), 1.0)
        model.entries(rows, model.columns((n_rows,), slack_cost, 0.0, np.inf), -1.0)
    lp, _, _ = model.highs_lp(None)
    solver = quiet_highs()
    solver.passModel(lp)
    solver.run()
    status = solver.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"the safety filter's LP ended with {solver.modelStatusToString(status)}")
    return np.asarray(solver.getSolution().col_value)[moves]
