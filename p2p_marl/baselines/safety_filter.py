"""A feeder safety filter: the smallest change of a policy's battery power and PV curtailment that keeps the step's
voltages in the band and the lines and the transformer within their ratings (``evaluate.py safety_filter=true``).

It acts for the community as a distribution operator's device would: it reads every household's metered load and
PV of the step being settled (what each agent observes of itself), the batteries' stored energy and the feeder's
linear model (the simulator's own LinDistFlow, so its prediction of the step's flow is the step's flow). Where the
policy's actions keep the feeder within its limits they pass unchanged; where they do not, one small LP per such
community (HiGHS) moves the households' net power ``net_kw`` (kW, > 0 imports) by

    net_new = net + more_charge - more_discharge + more_curtailed - less_curtailed      (all >= 0, kW)

within each battery's feasible power this step and the PV available, minimising

    sum over households of (more_charge + more_discharge) + 2 * more_curtailed + 0.5 * less_curtailed
    + 1e6 * (voltage slack, p.u.) + 1e3 * (line and transformer slack, kW)

subject to, at every bus and element (the reactive power is the loads' and does not move):

    v_min + margin <= v_slack - net_new @ S_p - q @ S_q (- passive loads' drop) <= v_max - margin
    |line_p(net_new)| <= sqrt(rating^2 - line_q^2),  |total_p(net_new)| <= sqrt(transformer_kva^2 - total_q^2)

Moving a battery costs least (its energy stays in the community), curtailing more most (that PV is lost), and
curtailing less is welcome (it recovers PV). The slacks keep the LP feasible where no move suffices (full
batteries under a PV peak that curtailment alone cannot bring down); they are then as small as the moves allow.
``MARGIN_PU`` keeps the plan inside the band by more than the solver's tolerance, so a filtered step is not
counted as a violation by ``kpis.VIOLATION_TOLERANCE``.

The bid price is the policy's. The filter changes the play, not the learner: a filtered method is its own row.
A community with a shared battery is not supported (its rule's power follows the households' net power, which
the filter moves).
"""

from __future__ import annotations

import highspy
import numpy as np
import scipy.sparse as sp

from p2p_marl.sim.battery import feasible_power
from p2p_marl.sim.community import CommunityCore
from p2p_marl.sim.feeder import power_flow_arrays

MARGIN_PU = 1e-5  # the band the filter plans to, inside the real one on both sides
# Objective weights per kW of each move (see the module docstring), and of the slacks.
MOVE_COST = {"more_charge": 1.0, "more_discharge": 1.0, "more_curtailed": 2.0, "less_curtailed": 0.5}
VOLTAGE_SLACK_COST_PER_PU = 1e6
FLOW_SLACK_COST_PER_KW = 1e3
_LOAD, _PV = 2, 3  # the observation's "load" and "pv" features (p2p_marl.sim.community.OBS_FEATURES)


class SafetyFilter:
    """A policy whose actions pass the feeder safety filter of the module docstring. It observes as the policy
    does (its ``observation_settings``); ``interventions`` counts the community-steps it changed."""

    def __init__(self, policy):
        self.policy = policy
        self.name = f"{policy.name}+safety_filter"
        self.observation_settings = getattr(policy, "observation_settings", {})
        self.interventions = 0

    def reset(self, core: CommunityCore) -> None:
        if core.has_shared_battery:
            raise ValueError("the safety filter moves the households' power only, and this community has a shared "
                             "battery whose power follows theirs: evaluate it without safety_filter")
        self.policy.reset(core)

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        action = np.array(self.policy.act(core, obs), dtype=np.float64)
        step = _Step(core, obs, action)
        unsafe = np.flatnonzero(step.outside_limits())
        for b in unsafe:
            battery_kw, curtailed_kw = step.safe_power(b)
            with np.errstate(divide="ignore", invalid="ignore"):
                action[b, :, 0] = np.where(core.battery.max_kw > 0, battery_kw / core.battery.max_kw, 0.0)
                action[b, :, 2] = np.where(step.pv_kw[b] > 0, curtailed_kw / step.pv_kw[b], 0.0)
        self.interventions += len(unsafe)
        return action


class _Step:
    """The step's flow under a policy's actions, as ``CommunityCore.step`` will compute it, and its repair."""

    def __init__(self, core: CommunityCore, obs: np.ndarray, action: np.ndarray):
        self.core = core
        self.load_kw, self.pv_kw = obs[..., _LOAD] * core.power_scale_kw, obs[..., _PV] * core.power_scale_kw
        battery, dt_h = core.battery, core.dt_h
        setpoint_kw = np.clip(action[..., 0], -1.0, 1.0) * battery.max_kw
        charge_kw, discharge_kw = feasible_power(setpoint_kw, core.energy_kwh, battery, dt_h)
        self.battery_kw = charge_kw - discharge_kw  # > 0 charges
        self.max_charge_kw, _ = feasible_power(battery.max_kw, core.energy_kwh, battery, dt_h)
        _, self.max_discharge_kw = feasible_power(-battery.max_kw, core.energy_kwh, battery, dt_h)
        self.curtailed_kw = np.clip(action[..., 2], 0.0, 1.0) * self.pv_kw
        self.net_kw = self.load_kw - self.pv_kw + self.curtailed_kw + self.battery_kw
        self.q_kvar = core.reactive_kvar(self.load_kw, core.days, core.t)
        self.passive = core.passive_power(core.days, core.t)
        self.flow = power_flow_arrays(core.feeder, self.net_kw, self.q_kvar, core.flow_rows, *self.passive)

    def outside_limits(self) -> np.ndarray:
        """(B,) True where the policy's step leaves the voltage band anywhere or overloads an element."""
        cfg, feeder = self.core.config, self.core.feeder
        voltage_pu, _, _, line_flow_kva, _, transformer_kva = self.flow
        return ((voltage_pu < cfg.v_min_pu).any(axis=1) | (voltage_pu > cfg.v_max_pu).any(axis=1)
                | (line_flow_kva > feeder.line_rating_kva).any(axis=1) | (transformer_kva > feeder.transformer_kva))

    def safe_power(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Community ``b``'s (battery power kW, > 0 charging; curtailed PV kW) after the LP of the module
        docstring."""
        core, feeder, cfg = self.core, self.core.feeder, self.core.config
        n = core.n_agents
        voltage_pu, _, line_p_kw, _, total_p_kw, _ = (value[b] for value in self.flow)
        line_q_kvar = self.q_kvar[b] @ core.flow_rows.downstream
        total_q_kvar = self.q_kvar[b].sum()
        if self.passive:
            passive_kvar = self.passive[1][b]
            line_q_kvar = line_q_kvar + passive_kvar @ feeder.passive_downstream
            total_q_kvar = total_q_kvar + passive_kvar.sum()
        # The four moves of every household side by side, (n, 4), and the sign of each in net_new.
        upper = np.stack([self.max_charge_kw[b] - self.battery_kw[b], self.battery_kw[b] + self.max_discharge_kw[b],
                          self.pv_kw[b] - self.curtailed_kw[b], self.curtailed_kw[b]], axis=1)
        sign = np.array([1.0, -1.0, 1.0, -1.0])
        costs = np.array(list(MOVE_COST.values()))
        # A change d of net power moves the voltages by -d @ S_p and the active flows by d @ downstream.
        sens_p = core.flow_rows.voltage_sens_p_pu_per_kw[:n]
        downstream = core.flow_rows.downstream[:n]
        line_limit_kw = np.sqrt(np.maximum(feeder.line_rating_kva**2 - line_q_kvar**2, 0.0))
        trafo_limit_kw = np.sqrt(max(feeder.transformer_kva**2 - total_q_kvar**2, 0.0))
        rows = [  # per block: coefficients per kW of net change (n, k), lower and upper bounds (k,), slack cost
            (-sens_p, cfg.v_min_pu + MARGIN_PU - voltage_pu, cfg.v_max_pu - MARGIN_PU - voltage_pu,
             VOLTAGE_SLACK_COST_PER_PU),
            (downstream, -line_limit_kw - line_p_kw, line_limit_kw - line_p_kw, FLOW_SLACK_COST_PER_KW),
            (np.ones((n, 1)), np.array([-trafo_limit_kw - total_p_kw]), np.array([trafo_limit_kw - total_p_kw]),
             FLOW_SLACK_COST_PER_KW),
        ]
        moves = _solve(upper, sign, costs, rows)
        net_change_kw = moves[:, :2] @ sign[:2]
        curtail_change_kw = moves[:, 2:] @ sign[2:]
        battery_kw = np.clip(self.battery_kw[b] + net_change_kw, -self.max_discharge_kw[b], self.max_charge_kw[b])
        curtailed_kw = np.clip(self.curtailed_kw[b] + curtail_change_kw, 0.0, self.pv_kw[b])
        return battery_kw, curtailed_kw


def _solve(upper: np.ndarray, sign: np.ndarray, costs: np.ndarray,
           rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """The LP's moves (n, 4) within [0, upper]. Each block of ``rows`` (coef (n, k), lower (k,), upper (k,), slack
    cost) reads ``lower <= sum_i coef[i] * (moves[i] @ sign) + slack_low - slack_up <= upper`` with both slacks >= 0
    at that cost. ``RuntimeError`` if HiGHS does not reach the optimum (one always exists: the slacks make every
    point feasible)."""
    n, n_kinds = upper.shape
    coef = np.concatenate([block[0] for block in rows], axis=1)  # (n, n_rows)
    n_rows = coef.shape[1]
    slack_cost = np.concatenate([np.full(block[0].shape[1], block[3]) for block in rows])
    # Columns: the moves (household-major), then every row's low slack, then its high slack.
    matrix = np.hstack([(coef.T[:, :, None] * sign).reshape(n_rows, n * n_kinds), np.eye(n_rows), -np.eye(n_rows)])
    cost = np.concatenate([np.tile(costs, n), slack_cost, slack_cost])
    col_upper = np.concatenate([np.maximum(upper, 0.0).ravel(), np.full(2 * n_rows, highspy.kHighsInf)])
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cost), n_rows
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, np.zeros(len(cost)), col_upper
    lp.row_lower_ = np.concatenate([block[1] for block in rows])
    lp.row_upper_ = np.concatenate([block[2] for block in rows])
    csc = sp.csc_matrix(matrix)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.passModel(lp)
    solver.run()
    status = solver.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"the safety filter's LP ended with {solver.modelStatusToString(status)}")
    return np.asarray(solver.getSolution().col_value[:n * n_kinds]).reshape(n, n_kinds)
