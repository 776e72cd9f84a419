"""Perfect-foresight centralised optimum of a community-day: a linear program solved with HiGHS.

The optimum knows the whole day's load, PV and tariffs in advance and dispatches every battery of the
community together. It is the lower bound on the community cost that every learner is measured against.

Model (one community, one day of ``T = config.steps_per_episode`` steps of ``dt_h`` hours; it mirrors
``p2p_marl.sim.community``, whose module docstring defines the cost)
---------------------------------------------------------------------------------------------------
Decisions, for every household m with a battery (capacity and power limit > 0) and step t:

    charge_kw c[t, m] in [0, max_kw_m],  discharge_kw d[t, m] in [0, max_kw_m]   (at the meter)
    energy_kwh e[t, m] after step t in [soc_min, soc_max] * capacity_kwh_m
    e[t, m] = e[t-1, m] + (charge_efficiency * c - d / discharge_efficiency) * dt_h,
    e[-1, m] = soc_initial * capacity_kwh_m (the evaluation days' fixed start)
    e[T-1, m] - e[-1, m] = surplus_kwh[m] - shortfall_kwh[m],  both >= 0   (the end-of-episode settlement)

``DispatchProblem`` generalises the horizon for model-predictive control (``p2p_marl.baselines.mpc``): steps
t0 .. T-1 of the day from the energy stored at t0, on the load and PV as forecast, and the settlement measured
against the episode's start energy instead of e[-1].

for every household p with PV, curtailed power ``k[t, p] in [0, pv_kw[t, p]]`` (spilled at the inverter), and
for the community, grid import I[t] >= 0 and export X[t] >= 0 (kW) with

    I[t] - X[t] = sum_n net_kw[t, n],   net_kw = load_kw - pv_kw + k + c - d   (c = d = 0 without a battery).

Why community-level exchange is exact: ``OptimalPolicy`` bids the retail price (share 1) for every net buyer and
asks the feed-in tariff (share 0) for every net seller. Every bid is then at least every ask, so every market
mechanism matches the short side completely; the community exchanges exactly ``max(+-sum net, 0)`` with the grid,
and P2P payments cancel in the community sum (budget balance). Objective (money):

    sum_t (retail[t] * I[t] - feed_in[t] * X[t]) * dt_h + degradation_cost_per_kwh * sum (c + d) * dt_h
    + network penalty (exactly the environment's)
    + sum_m (end_refill_price / charge_efficiency * shortfall_kwh[m]
             - end_surplus_price * discharge_efficiency * surplus_kwh[m])   (if settle_end_energy)

P2P fees (``p2p_fee_per_kwh > 0``, ``p2p_marl.sim.fees``): a fee on P2P volume is not budget-neutral for the
community, so the LP then models the volume. Each meter's import and export ``imp[t, n] - exp[t, n] = net_kw[t,
n]`` (both >= 0), and ``I[t] = sum_n imp - V[t]``, ``X[t] = sum_n exp - V[t]`` with the P2P volume V >= 0 (so V <=
min(sum imp, sum exp)). A flat fee costs ``p2p_fee_per_kwh * V * dt_h``: the LP trades all it can in a step
where the fee is below the step's retail / feed-in spread and nothing where it is above, and
``OptimalPolicy`` bids so that the market does the same (crossing bids, or grid-only bids that never cross);
the acted-out cost equals the objective. A distance fee prices pairwise flows ``F[t, i, j] >= 0`` (buyer i,
seller j, ``sum_j F <= imp_i``, ``sum_i F <= exp_j``, ``V = sum F``) at the pair's rate. That is a relaxation of
the market, which allocates pro rata and clears each step's pooled volume whole: every policy's fees are at
least the LP's for its dispatch, so ``lower_bound`` (the objective) stays a lower bound on every policy, and
``cost`` is what acting the schedule out costs (trading P2P in the steps where that beats the pro-rata fee).
The fee's payer only moves money inside the community; the LP does not depend on it.

Separate meters (``separate_meters=True``; the household MPC of ``p2p_marl.baselines.mpc``): every participant
pays retail for its own meter's import and is paid the feed-in tariff for its export, ``I[t] = sum_n imp[t, n]``,
``X[t] = sum_n exp[t, n]``, with no community exchange (and no P2P volume, so no fee). Without the network, whose
rows couple the households, the LP is then a sum of independent programs, one per household on its own load, PV
and battery: what each household solves alone. ``cost`` and ``lower_bound`` are then that plan's bill at separate
meters (no P2P trade, no loss charge; not a bound on the community's cost), and ``grid_import_kw`` and
``grid_export_kw`` the meters' summed import and export. ``actions`` bids truthfully in the steps where P2P trade
is worth a fee (the step's retail / feed-in spread above ``p2p_fee_per_kwh``, above the dearest pair's with a
distance fee: tariffs and fees are public), so that the market matches the neighbours whose plans cross, and bids
that never cross elsewhere.

Power smoothing (``power_smoothing_per_kwh > 0``; MPC as a teacher, ``p2p_marl.algos.imitation``): the LP's
optimum is often not unique. Energy bought at one off-peak price costs the same at any off-peak step, and an
evening peak's discharge is worth the same in any of its steps, so HiGHS returns one vertex of a face of equal
plans: full power in a few steps, chosen by pivoting, not by the state. A plan that replans every step then
jumps between such plans, which a policy fitted to its first steps cannot follow. A convex piecewise-linear cost
on every battery's charge and discharge trades a little of the bill for spread power: each is split into
``POWER_SEGMENTS`` equal segments of its power limit, the k-th costing ``k * power_smoothing_per_kwh`` per kWh (at
the meter), so that the LP prefers power at the segments' breakpoints spread over many steps, as a quadratic cost
would, and stays an LP (ties within a segment remain). A small smoothing (0.002 against tariff spreads of 0.05)
moves MPC's bills by a percent or two either way (``tests/test_mpc.py``); larger ones cost more of the bill.
``cost`` is the plan's bill without the smoothing's cost. ``lower_bound`` stays a bound on the optimum without
smoothing: the objective less what the smoothing's costs could be worth by the LP's reduced costs (a Lagrangian
bound, from the same duals; the mixed-integer fallback, which has none, subtracts the most the smoothing could
cost). It is then looser than without smoothing, and ``cost - lower_bound`` no longer says how far the plan is
from optimal.

Shared community battery (``shared_battery_kwh > 0``, see ``p2p_marl.sim.community``): one more battery of the
same model (columns c, d, e with its own capacity and power limit, its own settlement and wear), whose power
enters the balance and, at its bus, the network rows (``core.flow_rows``); with a fee it is one more meter.
Its bill is the community's, so the objective is unchanged. ``OptimalPolicy`` dispatches it through the core's
``operator_action`` (``OptimalSchedule.operator_actions``: its setpoint, and retail bids while it charges,
feed-in asks while it discharges, like a household), whatever ``shared_battery_control`` says.

Loss charges (``loss_allocation``, ``p2p_marl.sim.fees.loss_charges``): the I^2 R losses are quadratic in the
flows, and the LP leaves them out. Their charge is never negative, so the objective (``lower_bound``) stays a lower
bound on every policy's cost; ``cost`` adds the charge that acting the schedule out incurs (``loss_charge``,
computed with the environment's own power flow, losses and allocation on the schedule's dispatch), which is what
the environment charges it, to round-off. The schedule is then optimal for the cost without the loss charge, not
with it: ``cost - lower_bound`` bounds how far from optimal it can be.

The settlement's refill price per stored kWh exceeds its surplus credit, so at most one of the two is non-zero,
and the term is exactly the environment's ``end_settlement``.

Network (``network=True``; LinDistFlow with the feeder's own matrices; the reactive load
``Q = core.reactive_kvar(...)``, ``load_kw * q_per_p`` unless the profiles carry their own, is fixed, not a
decision):

* Voltage at every bus ``v[t] = v_slack - net_kw[t] @ sens_p - Q[t] @ sens_q`` (``net_kw`` with the curtailment).
  Slacks ``under, over >= 0`` with
  ``v + under - over`` in [v_min_pu, v_max_pu] cost ``voltage_penalty_per_pu_h * dt_h`` per p.u.; at the optimum
  ``under + over`` is the band excess, so this term *is* the environment's voltage penalty.
* Lines (``P_l = net_kw @ downstream[:, l]``) and the transformer (``P = I - X``, ``Q = sum Q``): the environment
  charges ``overload_penalty_per_kvah * dt_h * max(hypot(P, Q) - rating, 0)``, convex in P because Q is fixed.
  Its epigraph is written with tangent cuts ``overload_kva >= a * P - b``: first at ``P = +-P_max``, ``P_max =
  sqrt(rating^2 - Q^2)`` (where the overload starts: the limit is exactly ``|P| <= P_max`` while nothing
  overloads), then, while the solution overloads anything, a cut at the solution's own P is added and the LP is
  solved again from its basis (Kelley's cutting planes). Every cut underestimates the penalty, so each round's
  objective is a lower bound on the optimum, and the schedule's true cost an upper one; rounds stop when the two
  agree to ``CUT_RELATIVE_GAP``. A limit that no dispatch can meet is therefore penalised as in the
  environment, not infeasible (where the reactive load alone exceeds a rating, the first cut is the constant
  ``Q - rating``).
* Passive loads (``Feeder.passive_bus``, a SimBench grid's commercial and agricultural loads) are not decisions:
  their profiles' power enters v0, the line flows and the transformer flow as constants.
* Rows that cannot bind are left out: a voltage, line or transformer limit that holds even with every battery at
  full charge or discharge power gets no row (this keeps the LP of a feeder with headroom small).

A battery cannot charge and discharge in the same step in the environment (one signed setpoint), but the LP
may: doing both burns ``(1 - charge_efficiency * discharge_efficiency)`` of the energy. With PV curtailment in
the model that never pays where batteries wear (``degradation_cost_per_kwh > 0``): spilling PV relieves an
over-voltage or an export overload for the lost feed-in revenue alone, and burning costs that revenue plus the
wear. Without a degradation cost the two tie, and the LP may return the burning schedule. Then the day is solved
again as a mixed-integer program with one binary per battery and step (charge or discharge), exactly the set of
schedules the environment can act out; branch and bound stops at ``MIP_RELATIVE_GAP`` and ``lower_bound`` keeps
the proven bound. Such a program can take minutes: ``mip_time_limit_s`` turns that into an
``OptimalSolveError``. No day of the shipped configs needs it (``bench/bench_lp.py`` counts them, N = 200 on the
default feeder included).

The constraint matrix is built from numpy index arrays in one vectorised pass per block (no loop over steps or
households) and handed to HiGHS (highspy) column-wise.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np
import scipy.sparse as sp

from p2p_marl.lp import LPBuilder, quiet_highs
from p2p_marl.progress import track
from p2p_marl.sim.auction import BUY, SELL, SIDE_SIGN, clear_sides
from p2p_marl.sim.battery import feasible_power
from p2p_marl.sim.community import ACTION_DIM, CommunityCore
from p2p_marl.sim.feeder import line_losses_kw, power_flow_arrays
from p2p_marl.sim.fees import loss_charges, p2p_fees

# A battery is taken to charge and discharge at once if both exceed this (kW): well above HiGHS's
# feasibility tolerance (1e-7), far below any power that changes a bill.
SIMULTANEOUS_TOLERANCE_KW = 1e-6
# The mixed-integer fallback stops at this relative gap between its schedule's cost and its proven lower bound.
MIP_RELATIVE_GAP = 1e-6
# Cutting planes stop when the true overload penalty exceeds the LP's by at most this share of the cost
# (about where HiGHS's own 1e-7 tolerances stall further rounds).
CUT_RELATIVE_GAP = 1e-7
MAX_CUT_ROUNDS = 100
# Power smoothing splits each charge and discharge column into this many segments (see the module docstring).
POWER_SEGMENTS = 4
MAX_POWER_SMOOTHING_PER_KWH = 1.0  # money per kWh: far above any tariff spread, a bound for typos


class OptimalSolveError(RuntimeError):
    """HiGHS did not report an optimal solution for a community-day."""


@dataclass(frozen=True)
class DispatchProblem:
    """What a dispatch is planned on: steps ``first_step`` .. T - 1 of profile day ``day``."""

    day: int
    first_step: int
    load_kw: np.ndarray  # (T - first_step, N) as known when planning: the truth, or forecasts (MPC)
    pv_kw: np.ndarray  # (T - first_step, N)
    energy_kwh: np.ndarray  # (N,) stored at the start of first_step
    start_energy_kwh: np.ndarray  # (N,) stored at the episode's start: what the end settlement refers to
    shared_energy_kwh: float = 0.0  # the shared battery's (if the community has one), at first_step ...
    shared_start_energy_kwh: float = 0.0  # ... and at the episode's start
    # (3, N) or None: first_step's charge, discharge and curtailed PV (kW) fixed, the rest planned around them
    # (another controller's step judged by the plan, ``p2p_marl.evaluation.step_regret``); NaN leaves an entry
    # to the plan
    fixed_first_kw: np.ndarray | None = None

    def check(self, core: CommunityCore) -> None:
        """``ValueError`` unless the problem fits ``core``: a day of its profiles, steps up to the episode's end,
        one value per household, a fixed first step that the batteries can play from ``energy_kwh`` (charging or
        discharging, within their power and state of charge) and that curtails no more than the PV planned on."""
        _check_day(core, self.day)
        steps, n_agents = core.config.steps_per_episode, core.n_agents
        if not 0 <= self.first_step < steps:
            raise ValueError(f"first_step must lie in [0, {steps - 1}], got {self.first_step}")
        for name, shape in (("load_kw", (steps - self.first_step, n_agents)),
                            ("pv_kw", (steps - self.first_step, n_agents)), ("energy_kwh", (n_agents,)),
                            ("start_energy_kwh", (n_agents,))):
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"{name} must have shape {shape} (the steps from first_step={self.first_step} "
                                 f"to the episode's end, households), got {np.shape(getattr(self, name))}")
        if self.fixed_first_kw is not None:
            fixed = np.asarray(self.fixed_first_kw, dtype=np.float64)
            if fixed.shape != (3, n_agents):
                raise ValueError(f"fixed_first_kw must have shape (3, {n_agents}) (charge, discharge and curtailed "
                                 f"kW per household), got {fixed.shape}")
            battery = core.battery
            max_charge_kw, _ = feasible_power(battery.max_kw, self.energy_kwh, battery, core.dt_h)
            _, max_discharge_kw = feasible_power(-battery.max_kw, self.energy_kwh, battery, core.dt_h)
            upper = np.stack([max_charge_kw, max_discharge_kw, self.pv_kw[0]])
            given = ~np.isnan(fixed)
            if not (np.all(np.isfinite(fixed[given])) and np.all(fixed[given] >= 0.0)
                    and np.all(fixed[given] <= (upper * (1 + 1e-9) + 1e-9)[given])):
                raise ValueError("fixed_first_kw must lie in [0, what each battery can charge or discharge from "
                                 "energy_kwh] (0 without a battery) and [0, the step's PV] (curtailed), or be NaN "
                                 f"(planned), got {fixed.tolist()}")
            both = np.flatnonzero(np.minimum(fixed[0], fixed[1]) > SIMULTANEOUS_TOLERANCE_KW)
            if both.size:
                raise ValueError(f"fixed_first_kw charges and discharges the batteries of households {both.tolist()} "
                                 "at once: a step plays one setpoint")

    @classmethod
    def whole_day(cls, core: CommunityCore, day: int, start_kwh: np.ndarray | None = None) -> "DispatchProblem":
        """The perfect-foresight problem of a whole episode on ``day``, from ``start_kwh`` (N,) stored, by default
        the evaluation start ``soc_initial``."""
        steps = core.config.steps_per_episode
        if start_kwh is None:
            start_kwh = core.config.soc_initial * core.battery.capacity_kwh
        shared_kwh = core.config.soc_initial * core.config.shared_battery_kwh
        return cls(day, 0, core.profiles.load_kw[day, :steps], core.profiles.pv_kw[day, :steps], start_kwh,
                   start_kwh, shared_kwh, shared_kwh)


@dataclass(frozen=True, eq=False)
class OptimalSchedule:
    """The optimal dispatch of one community-day (see the module docstring).

    ``cost`` (money) is the community cost of acting the schedule out in the environment, network penalties
    included; ``lower_bound`` is the proven bound on the optimum (equal to ``cost`` up to ``CUT_RELATIVE_GAP``
    for a plain LP unless ``MAX_CUT_ROUNDS`` ran out, up to ``MIP_RELATIVE_GAP`` for the mixed-integer fallback;
    looser with power smoothing). At separate meters both are the plan's bill there instead (see the module
    docstring).
    """

    problem: DispatchProblem  # what was planned on; the arrays below cover its steps
    network: bool
    cost: float
    lower_bound: float
    charge_kw: np.ndarray  # (T, N) at the meter; 0 for households without a battery
    discharge_kw: np.ndarray  # (T, N)
    curtailed_kw: np.ndarray  # (T, N) PV spilled at the inverter; 0 for households without PV
    end_settlement: float  # money: the settlement of the stored energy's change within ``cost``
    grid_import_kw: np.ndarray  # (T,) community import
    grid_export_kw: np.ndarray  # (T,) community export
    network_penalty: float  # money: the voltage and overload penalties within ``cost``
    overload_kva: np.ndarray  # (T,) summed line and transformer overload (the environment's feeder_overload_kva)
    mixed_integer: bool  # solved again with charge-or-discharge binaries (see the module docstring)
    p2p_trade: np.ndarray  # (T,) bool: the community trades P2P in the step (always, without a P2P fee; at
    # separate meters, where the step's retail / feed-in spread is above the fee)
    p2p_fee: float  # money: the network charges on P2P volume within ``cost``
    loss_charge: float  # money: the loss charges of acting the schedule out, within ``cost`` (not the LP's)
    shared_charge_kw: np.ndarray  # (T,) the shared battery's; 0 without one
    shared_discharge_kw: np.ndarray  # (T,)
    cut_rounds: int  # rounds of overload cuts added after the first solve
    n_columns: int  # size of the model as built, before any cut rows
    n_rows: int
    n_nonzeros: int
    build_s: float  # seconds to build the model and pass it to HiGHS
    solve_s: float  # seconds HiGHS ran, all rounds together

    @property
    def day(self) -> int:
        return self.problem.day

    def household_net_kw(self) -> np.ndarray:
        """(T, N) planned net consumption at each meter, load - PV + curtailed + charge - discharge (kW), on the
        load and PV planned on."""
        return (self.problem.load_kw - self.problem.pv_kw + self.curtailed_kw + self.charge_kw
                - self.discharge_kw)

    def actions(self, battery_max_kw: np.ndarray) -> np.ndarray:
        """(T, N, ACTION_DIM) environment actions that act the schedule out: battery setpoint share
        ``(charge - discharge) / max_kw``, curtailment share ``curtailed / pv``, and price share 1 (bid retail)
        for net buyers, 0 (ask feed-in) for net sellers, so that the market matches all community-internal
        trades (see the module docstring); in steps without P2P trade (``p2p_trade``) the reverse, so that
        nothing crosses. Exact where the planned load and PV are the truth."""
        power_kw = self.charge_kw - self.discharge_kw
        setpoint = np.divide(power_kw, battery_max_kw, out=np.zeros_like(power_kw), where=battery_max_kw > 0)
        pv_kw = self.problem.pv_kw
        curtail = np.divide(self.curtailed_kw, pv_kw, out=np.zeros_like(pv_kw), where=pv_kw > 0)
        buys = self.household_net_kw() > 0
        price = np.where(self.p2p_trade[:, None], buys, ~buys).astype(np.float64)
        return np.stack([setpoint.clip(-1.0, 1.0), price, curtail.clip(0.0, 1.0)], axis=-1)

    def operator_actions(self, shared_max_kw: float) -> np.ndarray:
        """(T, 2) the core's ``operator_action`` that acts the shared battery's schedule out: setpoint share
        ``(charge - discharge) / shared_max_kw`` and price share as in ``actions`` (bid retail while charging)."""
        power_kw = self.shared_charge_kw - self.shared_discharge_kw
        buys = power_kw > 0
        price = np.where(self.p2p_trade, buys, ~buys).astype(np.float64)
        return np.stack([(power_kw / shared_max_kw).clip(-1.0, 1.0), price], axis=-1)


def _couple(model: LPBuilder, rows: np.ndarray, steps: np.ndarray, elements: np.ndarray, matrix: np.ndarray,
            columns: np.ndarray, sign: float) -> None:
    """Add ``sign * sum_m matrix[m, elements[k]] * columns[steps[k], m]`` to each ``rows[k]``.

    ``matrix`` (M, n_elements) maps the households of the (T, M) ``columns`` (batteries or PV) to buses or lines
    (a sensitivity or path matrix); only its non-zeros become coefficients, so a row touches only the households
    on its lateral.
    """
    by_element = sp.csc_matrix(matrix)
    counts = np.diff(by_element.indptr)[elements]
    # Positions of every selected element's non-zeros in the CSC arrays, without a Python loop.
    first = np.repeat(by_element.indptr[elements] - np.cumsum(counts) + counts, counts)
    position = first + np.arange(counts.sum())
    battery = by_element.indices[position]
    coef = by_element.data[position]
    row, step = np.repeat(rows, counts), np.repeat(steps, counts)
    model.entries(row, columns[step, battery], sign * coef)


@dataclass(frozen=True)
class _Decisions:
    """Column indices of the per-participant decisions that move net power: (T, M) batteries, (T, P) PV."""

    batteries: np.ndarray  # participant index of each battery column (N: the shared battery)
    charge: np.ndarray
    discharge: np.ndarray
    pv_households: np.ndarray  # household index of each curtailment column
    curtailed: np.ndarray

    def couple(self, model: LPBuilder, rows: np.ndarray, steps: np.ndarray, elements: np.ndarray,
               household_matrix: np.ndarray) -> None:
        """Add ``(c - d + k) @ household_matrix[:, elements[k]]`` at step ``steps[k]`` to each ``rows[k]``;
        ``household_matrix`` (P, n_elements) is a sensitivity or path matrix over all participants (households,
        then the shared battery: ``core.flow_rows``)."""
        battery_matrix = household_matrix[self.batteries]
        _couple(model, rows, steps, elements, battery_matrix, self.charge, 1.0)
        _couple(model, rows, steps, elements, battery_matrix, self.discharge, -1.0)
        _couple(model, rows, steps, elements, household_matrix[self.pv_households], self.curtailed, 1.0)


@dataclass(frozen=True)
class _Overloads:
    """Element-steps (line or transformer at a step) whose rating can be exceeded, one entry each."""

    flow: np.ndarray  # column of the element's active power P (kW)
    overload: np.ndarray  # column of its overload (kVA), >= the tangent cuts
    step: np.ndarray  # step of each entry
    q_kvar: np.ndarray  # its fixed reactive power
    rating_kva: np.ndarray


def _tangent_cuts(flow_kw: np.ndarray, q_kvar: np.ndarray, rating_kva: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with ``overload >= a * P - b`` tangent to ``hypot(P, Q) - rating`` at ``P = flow_kw``."""
    apparent = np.hypot(flow_kw, q_kvar)
    slope = np.divide(flow_kw, apparent, out=np.zeros_like(flow_kw), where=apparent > 0)
    return slope, slope * flow_kw - (apparent - rating_kva)


def _add_overload_elements(model: LPBuilder, shape: tuple[int, ...], may_overload: np.ndarray,
                           q_kvar: np.ndarray, rating_kva, price: float) -> tuple[np.ndarray, np.ndarray, _Overloads]:
    """Flow and overload columns and first cuts for the ``may_overload`` entries of a (T, ...) element grid.

    Returns (the selected steps, the selected element indices within a step, the overload bookkeeping); the
    caller ties each flow column to the batteries.
    """
    selected = np.nonzero(may_overload)
    step = selected[0]
    element = selected[1] if len(shape) > 1 else np.zeros_like(step)
    q = q_kvar[selected]
    rating = np.broadcast_to(rating_kva, shape)[selected]
    count = step.size
    meetable = q < rating
    flow = model.columns((count,), 0.0, -np.inf, np.inf)
    overload = model.columns((count,), price, np.where(meetable, 0.0, q - rating), np.inf)
    # First cuts at P = +-P_max, where the overload starts (the limit |P| <= P_max while nothing overloads).
    p_max_kw = np.sqrt(np.maximum(rating**2 - q**2, 0.0))[meetable]
    for sign in (1.0, -1.0):
        slope, offset = _tangent_cuts(sign * p_max_kw, q[meetable], rating[meetable])
        cuts = model.rows((int(meetable.sum()),), -np.inf, offset)
        model.entries(cuts, flow[meetable], slope)
        model.entries(cuts, overload[meetable], -1.0)
    return step, element, _Overloads(flow, overload, step, q, rating)


@dataclass(frozen=True)
class _Model:
    builder: LPBuilder
    decisions: _Decisions
    grid_import: np.ndarray  # (T,)
    grid_export: np.ndarray
    voltage_slack: np.ndarray  # column indices of the voltage slacks
    end_shortfall: np.ndarray  # (M,) stored energy below the start at the end (empty without the settlement)
    end_surplus: np.ndarray
    overloads: _Overloads
    integer_columns: np.ndarray | None
    p2p_traded: np.ndarray  # columns of the P2P volume that bears a fee (empty without a fee)
    smoothing: np.ndarray  # the power segments' columns (empty without power smoothing)


def _add_power_segments(model: LPBuilder, power: np.ndarray, max_kw: np.ndarray, price_per_kwh: float,
                        dt_h: float) -> np.ndarray:
    """Split the power columns ``power`` (T, M) into ``POWER_SEGMENTS`` segments of ``max_kw / POWER_SEGMENTS``
    each, the k-th (from 1) costing ``k * price_per_kwh`` per kWh; returns the segments' columns."""
    width_kw = max_kw / POWER_SEGMENTS
    segments = np.stack([model.columns(power.shape, k * price_per_kwh * dt_h, 0.0, width_kw)
                         for k in range(1, POWER_SEGMENTS + 1)])
    total = model.rows(power.shape, 0.0, 0.0)  # power - sum of its segments = 0
    model.entries(total, power, 1.0)
    model.entries(total[None], segments, -1.0)
    return segments


def _build_model(core: CommunityCore, problem: DispatchProblem, network: bool, mixed_integer: bool,
                 separate_meters: bool, power_smoothing_per_kwh: float) -> _Model:
    cfg, battery, feeder, dt_h = core.config, core.battery, core.feeder, core.dt_h
    load_kw, pv_kw = problem.load_kw, problem.pv_kw
    steps = load_kw.shape[0]
    prices = slice(problem.first_step, problem.first_step + steps)
    base_kw = load_kw - pv_kw  # (T, N) net consumption with idle batteries and all PV used
    q_kvar = core.reactive_kvar(load_kw, problem.day, prices)
    batteries = np.flatnonzero((battery.capacity_kwh > 0) & (battery.max_kw > 0))
    pv_households = np.flatnonzero(pv_kw.max(axis=0) > 0)
    capacity_kwh = battery.capacity_kwh[batteries]
    max_kw = battery.max_kw[batteries]
    start_kwh = problem.start_energy_kwh[batteries]
    stored_kwh = problem.energy_kwh[batteries]
    market_base_kw = base_kw  # (T, P) each market participant's net with idle batteries and all PV used
    if core.has_shared_battery:  # participant N, the last battery column: the shared battery
        batteries = np.append(batteries, core.n_agents)
        capacity_kwh = np.append(capacity_kwh, cfg.shared_battery_kwh)
        max_kw = np.append(max_kw, cfg.shared_battery_kw)
        start_kwh = np.append(start_kwh, problem.shared_start_energy_kwh)
        stored_kwh = np.append(stored_kwh, problem.shared_energy_kwh)
        market_base_kw = np.hstack([base_kw, np.zeros((steps, 1))])
    rows = core.flow_rows  # the power flow's rows of every participant
    shape = (steps, batteries.size)

    power_lower_kw, power_upper_kw = np.zeros((2, *shape)), np.broadcast_to(max_kw, (2, *shape)).copy()
    curtailed_lower_kw, curtailed_upper_kw = np.zeros((steps, pv_households.size)), pv_kw[:, pv_households].copy()
    if problem.fixed_first_kw is not None:
        fixed_kw = np.asarray(problem.fixed_first_kw, dtype=np.float64)
        households = batteries[batteries < core.n_agents]  # a shared battery stays planned
        for lower_kw, upper_kw, fixed_step_kw in (
                (power_lower_kw[:, 0, :households.size], power_upper_kw[:, 0, :households.size],
                 fixed_kw[:2, households]),
                (curtailed_lower_kw[0], curtailed_upper_kw[0], fixed_kw[2, pv_households])):
            given = ~np.isnan(fixed_step_kw)
            lower_kw[given] = upper_kw[given] = fixed_step_kw[given]

    model = LPBuilder()
    degradation = cfg.degradation_cost_per_kwh * dt_h
    charge = model.columns(shape, degradation, power_lower_kw[0], power_upper_kw[0])
    discharge = model.columns(shape, degradation, power_lower_kw[1], power_upper_kw[1])
    energy = model.columns(shape, 0.0, battery.soc_min * capacity_kwh, battery.soc_max * capacity_kwh)
    curtailed = model.columns((steps, pv_households.size), 0.0, curtailed_lower_kw, curtailed_upper_kw)
    decisions = _Decisions(batteries, charge, discharge, pv_households, curtailed)
    smoothing = np.zeros(0, dtype=np.int64)
    if power_smoothing_per_kwh > 0.0:
        smoothing = np.concatenate([_add_power_segments(model, power, max_kw, power_smoothing_per_kwh, dt_h).ravel()
                                    for power in (charge, discharge)])
    grid_import = model.columns((steps,), core.retail_per_kwh[prices] * dt_h, 0.0, np.inf)
    grid_export = model.columns((steps,), -core.feed_in_per_kwh[prices] * dt_h, 0.0, np.inf)

    # SoC dynamics: e[t] - e[t-1] - eta_c dt c[t] + dt / eta_d d[t] = (e_initial at t = 0, else 0)
    initial_kwh = np.where(np.arange(steps)[:, None] == 0, stored_kwh, 0.0)
    dynamics = model.rows(shape, initial_kwh, initial_kwh)
    model.entries(dynamics, energy, 1.0)
    model.entries(dynamics[1:], energy[:-1], -1.0)
    model.entries(dynamics, charge, -battery.charge_efficiency * dt_h)
    model.entries(dynamics, discharge, dt_h / battery.discharge_efficiency)

    # End-of-episode settlement: e[T-1] + shortfall - surplus = e_initial
    no_columns = np.zeros(0, dtype=np.int64)
    end_shortfall = end_surplus = no_columns
    if cfg.settle_end_energy and batteries.size:
        end_shortfall = model.columns((batteries.size,), core.end_refill_price_per_kwh / battery.charge_efficiency,
                                      0.0, np.inf)
        end_surplus = model.columns((batteries.size,),
                                    -core.end_surplus_price_per_kwh * battery.discharge_efficiency, 0.0, np.inf)
        settlement = model.rows((batteries.size,), start_kwh, start_kwh)
        model.entries(settlement, energy[-1], 1.0)
        model.entries(settlement, end_shortfall, 1.0)
        model.entries(settlement, end_surplus, -1.0)

    # Community balance: I - X - sum (c - d + k) = sum (load - pv)
    balance = model.rows((steps,), base_kw.sum(axis=1), base_kw.sum(axis=1))
    model.entries(balance, grid_import, 1.0)
    model.entries(balance, grid_export, -1.0)
    model.entries(balance[:, None], charge, -1.0)
    model.entries(balance[:, None], discharge, 1.0)
    model.entries(balance[:, None], curtailed, -1.0)

    p2p_traded = no_columns
    if separate_meters or cfg.p2p_fee_per_kwh > 0.0:
        p2p_traded = _add_meters(model, core, decisions, market_base_kw, grid_import, grid_export,
                                 p2p=not separate_meters)

    voltage_slack = no_columns
    overloads = _Overloads(no_columns, no_columns, no_columns, np.zeros(0), np.zeros(0))
    if network:
        # Voltage band with priced slacks: v0 - (c - d + k) @ sens_p + under - over in [v_min, v_max]
        sens_p = feeder.voltage_sens_p_pu_per_kw  # (N, n_bus), >= 0
        # Idle batteries and all PV used, the passive loads' fixed power superposed (none: zero columns).
        passive_kw, passive_kvar = core.passive_power(problem.day, prices) or (np.zeros((steps, 0)),) * 2
        v0_pu, _, line_base_kw, _, _, _ = power_flow_arrays(feeder, base_kw, q_kvar, None, passive_kw, passive_kvar)
        # The most the decisions can move each bus: up by discharging, down by charging and curtailing.
        battery_swing_pu = max_kw @ rows.voltage_sens_p_pu_per_kw[batteries]
        curtail_swing_pu = pv_kw[:, pv_households] @ sens_p[pv_households]
        step, bus = np.nonzero((v0_pu - battery_swing_pu - curtail_swing_pu < cfg.v_min_pu)
                               | (v0_pu + battery_swing_pu > cfg.v_max_pu))
        voltage_slack = model.columns((2, step.size), cfg.voltage_penalty_per_pu_h * dt_h, 0.0, np.inf)
        voltage = model.rows((step.size,), cfg.v_min_pu - v0_pu[step, bus], cfg.v_max_pu - v0_pu[step, bus])
        decisions.couple(model, voltage, step, bus, -rows.voltage_sens_p_pu_per_kw)
        model.entries(voltage, voltage_slack[0], 1.0)
        model.entries(voltage, voltage_slack[1], -1.0)

        # Lines: flow P_l - (c - d + k) @ downstream = (load - pv) @ downstream, where it could overload.
        price = cfg.overload_penalty_per_kvah * dt_h
        line_q_kvar = q_kvar @ feeder.downstream + passive_kvar @ feeder.passive_downstream
        reach_kw = (np.abs(line_base_kw) + max_kw @ rows.downstream[batteries]
                    + pv_kw[:, pv_households] @ feeder.downstream[pv_households])
        may_overload = np.hypot(reach_kw, line_q_kvar) > feeder.line_rating_kva
        step, line, lines = _add_overload_elements(model, line_base_kw.shape, may_overload, line_q_kvar,
                                                   feeder.line_rating_kva, price)
        flow_rows = model.rows((step.size,), line_base_kw[step, line], line_base_kw[step, line])
        model.entries(flow_rows, lines.flow, 1.0)
        decisions.couple(model, flow_rows, step, line, -rows.downstream)

        # Transformer: flow P - I + X = the passive loads' net power.
        trafo_q_kvar = q_kvar.sum(axis=1) + passive_kvar.sum(axis=1)
        trafo_base_kw = passive_kw.sum(axis=1)
        reach_kw = np.abs(base_kw.sum(axis=1) + trafo_base_kw) + max_kw.sum() + pv_kw.sum(axis=1)
        may_overload = np.hypot(reach_kw, trafo_q_kvar) > feeder.transformer_kva
        step, _, trafo = _add_overload_elements(model, (steps,), may_overload, trafo_q_kvar,
                                                feeder.transformer_kva, price)
        flow_rows = model.rows((step.size,), trafo_base_kw[step], trafo_base_kw[step])
        model.entries(flow_rows, trafo.flow, 1.0)
        model.entries(flow_rows, grid_import[step], -1.0)
        model.entries(flow_rows, grid_export[step], 1.0)
        overloads = _Overloads(*(np.concatenate([getattr(lines, f), getattr(trafo, f)])
                                 for f in ("flow", "overload", "step", "q_kvar", "rating_kva")))

    integer_columns = None
    if mixed_integer:  # charge_kw <= max_kw * z, discharge_kw <= max_kw * (1 - z), z binary
        integer_columns = model.columns(shape, 0.0, 0.0, 1.0)
        charge_cap = model.rows(shape, -np.inf, 0.0)
        model.entries(charge_cap, charge, 1.0)
        model.entries(charge_cap, integer_columns, -max_kw)
        discharge_cap = model.rows(shape, -np.inf, max_kw)
        model.entries(discharge_cap, discharge, 1.0)
        model.entries(discharge_cap, integer_columns, max_kw)
    return _Model(model, decisions, grid_import, grid_export, voltage_slack, end_shortfall, end_surplus, overloads,
                  integer_columns, p2p_traded, smoothing)


def _add_meters(model: LPBuilder, core: CommunityCore, decisions: _Decisions, base_kw: np.ndarray,
                grid_import: np.ndarray, grid_export: np.ndarray, p2p: bool) -> np.ndarray:
    """Model each meter's import and export and, with ``p2p``, the P2P volume that a fee is charged on; returns
    its columns, none without ``p2p`` (separate meters; see the module docstring)."""
    cfg, dt_h = core.config, core.dt_h
    steps, n_agents = base_kw.shape
    # Each meter's import and export: imports - exports - (c - d + k) = load - pv.
    imports = model.columns((steps, n_agents), 0.0, 0.0, np.inf)
    exports = model.columns((steps, n_agents), 0.0, 0.0, np.inf)
    meters = model.rows((steps, n_agents), base_kw, base_kw)
    model.entries(meters, imports, 1.0)
    model.entries(meters, exports, -1.0)
    model.entries(meters[:, decisions.batteries], decisions.charge, -1.0)
    model.entries(meters[:, decisions.batteries], decisions.discharge, 1.0)
    model.entries(meters[:, decisions.pv_households], decisions.curtailed, -1.0)
    fee_matrix = core.p2p_fee_matrix_per_kwh
    if not p2p:
        traded = np.zeros((steps, 0, 0), dtype=np.int64)
    elif fee_matrix is None:  # flat: the volume V alone; grid import and export >= 0 cap it at min(D, S)
        traded = model.columns((steps, 1, 1), cfg.p2p_fee_per_kwh * dt_h, 0.0, np.inf)
    else:  # by distance: flows [t, buyer i, seller j] within each buyer's import and each seller's export
        traded = model.columns((steps, n_agents, n_agents), fee_matrix * dt_h, 0.0, np.inf)
        for cap, side, axis in ((model.rows((steps, n_agents), -np.inf, 0.0), imports, 2),
                                (model.rows((steps, n_agents), -np.inf, 0.0), exports, 1)):
            model.entries(np.expand_dims(cap, axis), traded, 1.0)
            model.entries(cap, side, -1.0)
    # Grid import = sum of imports - V, grid export = sum of exports - V (no V at separate meters).
    for grid, side in ((grid_import, imports), (grid_export, exports)):
        rows = model.rows((steps,), 0.0, 0.0)
        model.entries(rows, grid, 1.0)
        model.entries(rows[:, None], side, -1.0)
        model.entries(rows[:, None, None], traded, 1.0)
    return traded.ravel()


def _acted_out_market(core: CommunityCore, problem: DispatchProblem, market_net_kw: np.ndarray
                      ) -> tuple[np.ndarray, float, float, np.ndarray]:
    """(the steps in which trading P2P is worth its fee (T,) bool, the community's grid bill and fees when the
    schedule is acted out so, those fees, and the P2P energy each participant trades then (2, T, P)) for
    ``market_net_kw`` (T, P), the participants' planned net (households, then the shared battery).

    Under ``OptimalSchedule.actions``' bids every mechanism clears the pooled volumes (the short side whole, the
    long side pro rata), so each step's choice is all of them or none; without a fee it is all.
    """
    cfg, dt_h = core.config, core.dt_h
    steps = market_net_kw.shape[0]
    prices = slice(problem.first_step, problem.first_step + steps)
    retail, feed_in = core.retail_per_kwh[prices], core.feed_in_per_kwh[prices]
    side_kwh = np.maximum(SIDE_SIGN * market_net_kw, 0.0) * dt_h  # (2, T, P), the steps as a batch
    traded_kwh = clear_sides(side_kwh, np.zeros_like(market_net_kw), retail, feed_in, "mid_market", 0.5)[0]
    fee = p2p_fees(traded_kwh, cfg.p2p_fee_per_kwh, core.p2p_fee_matrix_per_kwh, cfg.p2p_fee_payer).sum(axis=1)
    volume_kwh = traded_kwh[BUY].sum(axis=1)
    trade = (retail - feed_in) * volume_kwh > fee
    kept_kwh = np.where(trade, volume_kwh, 0.0)
    bill = (retail * (side_kwh[BUY].sum(axis=1) - kept_kwh) - feed_in * (side_kwh[SELL].sum(axis=1) - kept_kwh)
            + np.where(trade, fee, 0.0))
    return trade, float(bill.sum()), float(fee[trade].sum()), traded_kwh * trade[:, None]


def _acted_out_loss_charge(core: CommunityCore, problem: DispatchProblem, market_net_kw: np.ndarray,
                           traded_kwh: np.ndarray) -> float:
    """The community's loss charges (money) when the schedule's ``market_net_kw`` (T, P) is acted out with P2P
    trades ``traded_kwh`` (2, T, P): the environment's power flow, losses and allocation, steps as a batch."""
    steps, n_agents = market_net_kw.shape[0], core.n_agents
    prices = slice(problem.first_step, problem.first_step + steps)
    q_kvar = np.zeros_like(market_net_kw)  # the shared battery runs at unity power factor
    q_kvar[:, :n_agents] = core.reactive_kvar(problem.load_kw, problem.day, prices)
    voltage_pu, _, _, line_flow_kva, _, _ = power_flow_arrays(core.feeder, market_net_kw, q_kvar, core.flow_rows,
                                                              *core.passive_power(problem.day, prices))
    loss_kwh = line_losses_kw(core.feeder, line_flow_kva, voltage_pu) * core.dt_h
    charges = loss_charges(loss_kwh, core.retail_per_kwh[prices][:, None], market_net_kw[:, :n_agents] * core.dt_h,
                           traded_kwh[:, :, :n_agents], core.config.loss_allocation)
    return float(charges.sum())


def _run(highs: highspy.Highs, day: int, network: bool, mixed_integer: bool, time_limit_s: float) -> float:
    """Run HiGHS, raise unless optimal; returns the seconds it ran."""
    start = time.perf_counter()
    highs.run()
    seconds = time.perf_counter() - start
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        hint = (f"; the LP charges and discharges batteries at once to relieve the network, and the mixed-integer "
                f"program that forbids it did not finish within mip_time_limit_s={time_limit_s}: raise it, or "
                "lower voltage_penalty_per_pu_h / overload_penalty_per_kvah" if mixed_integer else "")
        raise OptimalSolveError(f"HiGHS did not solve the optimal dispatch of day {day} to optimality "
                                f"(network={network}, mixed_integer={mixed_integer}): "
                                f"{highs.modelStatusToString(status)}{hint}")
    return seconds


def _solve(core: CommunityCore, problem: DispatchProblem, network: bool, mixed_integer: bool,
           mip_time_limit_s: float, separate_meters: bool, power_smoothing_per_kwh: float) -> OptimalSchedule:
    day = problem.day
    start = time.perf_counter()
    model = _build_model(core, problem, network, mixed_integer, separate_meters, power_smoothing_per_kwh)
    lp, cost_vector, n_nonzeros = model.builder.highs_lp(model.integer_columns)
    highs = quiet_highs()
    if mixed_integer:
        highs.setOptionValue("mip_rel_gap", MIP_RELATIVE_GAP)
        highs.setOptionValue("time_limit", float(mip_time_limit_s))
    highs.passModel(lp)
    build_s = time.perf_counter() - start

    overloads = model.overloads
    overload_price = core.config.overload_penalty_per_kvah * core.dt_h
    solve_s = 0.0
    for cut_round in range(MAX_CUT_ROUNDS + 1):
        solve_s += _run(highs, day, network, mixed_integer, mip_time_limit_s)
        x = np.asarray(highs.getSolution().col_value)
        info = highs.getInfo()
        objective = float(info.objective_function_value)
        flow_kw = x[overloads.flow]
        true_overload_kva = np.maximum(np.hypot(flow_kw, overloads.q_kvar) - overloads.rating_kva, 0.0)
        underestimate_kva = np.maximum(true_overload_kva - x[overloads.overload], 0.0)
        gap = overload_price * underestimate_kva.sum()
        if gap <= CUT_RELATIVE_GAP * max(1.0, abs(objective)) or cut_round == MAX_CUT_ROUNDS:
            break
        cut = np.flatnonzero(underestimate_kva > 0)
        slope, offset = _tangent_cuts(flow_kw[cut], overloads.q_kvar[cut], overloads.rating_kva[cut])
        highs.addRows(cut.size, np.full(cut.size, -np.inf), offset, 2 * cut.size,
                      np.arange(0, 2 * cut.size, 2, dtype=np.int32),
                      np.stack([overloads.flow[cut], overloads.overload[cut]], axis=1).ravel().astype(np.int32),
                      np.stack([slope, -np.ones(cut.size)], axis=1).ravel())

    decisions = model.decisions
    steps = decisions.charge.shape[0]
    n_agents, n_participants = core.n_agents, core.flow_rows.downstream.shape[0]

    def per_participant(columns: np.ndarray, participants: np.ndarray) -> np.ndarray:
        out = np.zeros((steps, n_participants))
        out[:, participants] = x[columns]
        return out

    charge_kw = per_participant(decisions.charge, decisions.batteries)
    discharge_kw = per_participant(decisions.discharge, decisions.batteries)
    curtailed_kw = per_participant(decisions.curtailed, decisions.pv_households)[:, :n_agents]
    households = slice(0, n_agents)
    smoothing = model.smoothing
    segment_cost, segment_kw = cost_vector[smoothing], np.asarray(lp.col_upper_)[smoothing]
    smoothing_cost = float(segment_cost @ x[smoothing])
    if mixed_integer:
        smoothing_worth = float(segment_cost @ segment_kw)
    else:  # dropping a segment's cost moves its reduced cost r to r - c: the dual bound falls by at most this
        reduced_cost = np.asarray(highs.getSolution().col_dual)[smoothing]
        smoothing_worth = float(segment_kw @ np.minimum(segment_cost, np.maximum(segment_cost - reduced_cost, 0.0)))
    lower_bound = (float(info.mip_dual_bound) if mixed_integer else objective) - smoothing_worth
    cost = objective - smoothing_cost + float(gap)
    p2p_trade, p2p_fee, loss_charge = np.ones(steps, dtype=bool), 0.0, 0.0
    loss_allocation = core.config.loss_allocation
    if separate_meters:
        prices = slice(problem.first_step, problem.first_step + steps)
        fee_matrix = core.p2p_fee_matrix_per_kwh
        fee_per_kwh = core.config.p2p_fee_per_kwh if fee_matrix is None else float(fee_matrix.max())
        p2p_trade = core.retail_per_kwh[prices] - core.feed_in_per_kwh[prices] > fee_per_kwh
    elif model.p2p_traded.size or loss_allocation != "none":
        # (T, P) each participant's planned net: the households at their meters, then the shared battery.
        market_net_kw = charge_kw - discharge_kw
        market_net_kw[:, households] = (problem.load_kw - problem.pv_kw + curtailed_kw + charge_kw[:, households]
                                        - discharge_kw[:, households])
        trade, acted_bill, acted_fee, traded_kwh = _acted_out_market(core, problem, market_net_kw)
        if model.p2p_traded.size:
            # The LP may route each buyer's P2P energy to its nearest sellers or trade part of a step's volume;
            # acted out, the market allocates pro rata and trades all or nothing: cost is what the environment
            # charges.
            market = np.concatenate([model.grid_import, model.grid_export, model.p2p_traded])
            p2p_trade, p2p_fee = trade, acted_fee
            cost += acted_bill - float(cost_vector[market] @ x[market])
        if loss_allocation != "none":
            loss_charge = _acted_out_loss_charge(core, problem, market_net_kw, traded_kwh)
            cost += loss_charge
    voltage_penalty = float(cost_vector[model.voltage_slack].ravel() @ x[model.voltage_slack].ravel())
    return OptimalSchedule(
        problem=problem, network=network, cost=cost, lower_bound=lower_bound,
        charge_kw=charge_kw[:, households], discharge_kw=discharge_kw[:, households], curtailed_kw=curtailed_kw,
        end_settlement=float(cost_vector[model.end_shortfall] @ x[model.end_shortfall]
                             + cost_vector[model.end_surplus] @ x[model.end_surplus]),
        grid_import_kw=x[model.grid_import], grid_export_kw=x[model.grid_export],
        network_penalty=voltage_penalty + overload_price * true_overload_kva.sum(),
        overload_kva=np.bincount(overloads.step, weights=true_overload_kva, minlength=steps),
        mixed_integer=mixed_integer, p2p_trade=p2p_trade, p2p_fee=p2p_fee, loss_charge=loss_charge,
        shared_charge_kw=charge_kw[:, n_agents:].sum(axis=1),
        shared_discharge_kw=discharge_kw[:, n_agents:].sum(axis=1),
        cut_rounds=cut_round, n_columns=lp.num_col_, n_rows=lp.num_row_, n_nonzeros=n_nonzeros, build_s=build_s,
        solve_s=solve_s)


def check_power_smoothing(power_smoothing_per_kwh: Any) -> None:
    """``ValueError`` unless ``power_smoothing_per_kwh`` is a number in [0, MAX_POWER_SMOOTHING_PER_KWH]."""
    if (isinstance(power_smoothing_per_kwh, bool) or not isinstance(power_smoothing_per_kwh, (int, float))
            or not 0.0 <= power_smoothing_per_kwh <= MAX_POWER_SMOOTHING_PER_KWH):
        raise ValueError(f"power_smoothing_per_kwh must be a number in [0, {MAX_POWER_SMOOTHING_PER_KWH:g}] "
                         f"(money per kWh), got {power_smoothing_per_kwh!r}")


def _check_day(core: CommunityCore, day) -> int:
    if isinstance(day, bool) or not isinstance(day, (int, np.integer)) or not 0 <= day < core.profiles.n_days:
        raise ValueError(f"day must be a day index in [0, {core.profiles.n_days - 1}], got {day!r}")
    return int(day)


def solve_optimal_day(core: CommunityCore, day: int, network: bool = True, mip_time_limit_s: float = 60.0
                      ) -> OptimalSchedule:
    """The minimum-cost dispatch of ``core``'s community on profile day ``day`` (see the module docstring).

    ``network=False`` drops the feeder (no voltage, line or transformer terms: the environment may then add
    penalties the schedule ignores). ``mip_time_limit_s`` bounds the mixed-integer fallback only. Raises
    ``OptimalSolveError`` (naming the day) if HiGHS reports anything but an optimal solution.
    """
    return solve_dispatch(core, DispatchProblem.whole_day(core, _check_day(core, day)), network, mip_time_limit_s)


def solve_dispatch(core: CommunityCore, problem: DispatchProblem, network: bool = True,
                   mip_time_limit_s: float = 60.0, separate_meters: bool = False,
                   power_smoothing_per_kwh: float = 0.0) -> OptimalSchedule:
    """The minimum-cost dispatch of ``problem`` on ``core``'s community: ``solve_optimal_day`` for any horizon
    and any view of the load and PV. The schedule's arrays cover the problem's steps; its ``cost`` is the cost
    the plan expects. ``separate_meters`` prices every meter alone at retail and feed-in, and
    ``power_smoothing_per_kwh`` > 0 breaks the optimum's ties towards spread battery power (see the module
    docstring)."""
    problem.check(core)
    if isinstance(mip_time_limit_s, bool) or not isinstance(mip_time_limit_s, (int, float)) or mip_time_limit_s <= 0:
        raise ValueError(f"mip_time_limit_s must be a number of seconds > 0, got {mip_time_limit_s!r}")
    check_power_smoothing(power_smoothing_per_kwh)
    solve = functools.partial(_solve, core, problem, network, mip_time_limit_s=mip_time_limit_s,
                              separate_meters=separate_meters, power_smoothing_per_kwh=power_smoothing_per_kwh)
    schedule = solve(mixed_integer=False)
    simultaneous_kw = max(np.minimum(schedule.charge_kw, schedule.discharge_kw).max(initial=0.0),
                          np.minimum(schedule.shared_charge_kw, schedule.shared_discharge_kw).max(initial=0.0))
    if simultaneous_kw <= SIMULTANEOUS_TOLERANCE_KW:
        return schedule
    exact = solve(mixed_integer=True)
    return dataclasses.replace(exact, build_s=schedule.build_s + exact.build_s,
                               solve_s=schedule.solve_s + exact.solve_s)


class OptimalPolicy:
    """Acts out the perfect-foresight optimum of each community's day (a ``Policy``).

    ``reset(core)`` solves one program per distinct day in ``core.days`` (except days given to ``remember``);
    ``act`` then plays the schedule's ``actions``, and ``act_operator`` its dispatch of the shared battery.
    """

    name = "optimal"

    def __init__(self, network: bool = True, progress: bool = False):
        self.network = network
        self.progress = progress
        self.schedules: list[OptimalSchedule] = []
        self._core: CommunityCore | None = None
        self._days = np.zeros(0, dtype=np.int64)
        self._actions = np.zeros((0, 0, 0, ACTION_DIM))  # (B, T, N, ACTION_DIM)
        self._operator_actions = np.zeros((0, 0, 2))  # (B, T, 2); empty without a shared battery
        self._known_config = None
        self._known: dict[int, OptimalSchedule] = {}

    def remember(self, config, schedules: dict[int, OptimalSchedule]) -> None:
        """Schedules already solved (day -> schedule) for the environment of ``config`` (an ``EnvConfig``),
        e.g. the reference LPs of the days being evaluated: ``reset`` on a core of that config plays them
        instead of solving those days again."""
        wrong = sorted(day for day, schedule in schedules.items() if schedule.network != self.network)
        if wrong:
            raise ValueError(f"schedules of days {wrong} were solved with network={not self.network}, this "
                             f"policy plans with network={self.network}")
        self._known_config, self._known = config, dict(schedules)

    def reset(self, core: CommunityCore) -> None:
        days = np.array(core.days, dtype=np.int64)
        known = self._known if core.config == self._known_config else {}
        to_solve = [int(day) for day in np.unique(days) if int(day) not in known]
        solved = {**known, **{day: solve_optimal_day(core, day, self.network)
                              for day in track(to_solve, len(to_solve), "optimal dispatch", "days",
                                               enabled=self.progress)}}
        self.schedules = [solved[int(day)] for day in days]
        actions = [schedule.actions(core.battery.max_kw) for schedule in self.schedules]
        self._core, self._days, self._actions = core, days, np.stack(actions)
        if core.has_shared_battery:
            self._operator_actions = np.stack([schedule.operator_actions(core.config.shared_battery_kw)
                                               for schedule in self.schedules])

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        self._check_planned(core, "act")
        return self._actions[:, core.t]

    def act_operator(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        """The shared battery's planned action (B, 2), the core's ``operator_action``."""
        self._check_planned(core, "act_operator")
        return self._operator_actions[:, core.t]

    def _check_planned(self, core: CommunityCore, method: str) -> None:
        if core is not self._core or not np.array_equal(core.days, self._days):
            raise RuntimeError(f"OptimalPolicy.{method}: the core's days differ from the planned ones; "
                               "call policy.reset(core) after core.reset()")
