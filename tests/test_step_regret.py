"""The regret of a step by MPC's reckoning: a plan whose first step is fixed plays that step and costs at least
the free plan, the free plan's own step costs nothing more; with perfect forecasts a day's regrets and its loss to
bids that do not cross add up to the controller's cost above the optimum exactly (the plans telescope); the judge
never changes what is played."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import table_cells
from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.optimal import DispatchProblem, solve_dispatch
from p2p_marl.baselines.policy import PolicyWrapper
from p2p_marl.baselines.rules import IdleMidPrice, RandomActions, TimeOfUse
from p2p_marl.config import EnvConfig
from p2p_marl.demo import binding_day
from p2p_marl.evaluation import step_regret
from p2p_marl.evaluation.compare import evaluate_policy, reference_costs, rollout_days
from p2p_marl.evaluation.step_regret import RegretShadow, bid_loss, costliest_share
from p2p_marl.sim.community import CommunityCore

DEFAULT = EnvConfig()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def noon_problem() -> tuple[CommunityCore, DispatchProblem]:
    """The default community's binding day planned from noon, with perfect foresight, from half-full batteries."""
    core = CommunityCore(DEFAULT)
    day, first_step = binding_day(DEFAULT, core), 24
    energy_kwh = 0.5 * core.battery.capacity_kwh
    return core, DispatchProblem(day, first_step, core.profiles.load_kw[day, first_step:48],
                                 core.profiles.pv_kw[day, first_step:48], energy_kwh, energy_kwh)


@settings(max_examples=15, deadline=None)
@given(shares=st.lists(st.floats(-1.0, 1.0), min_size=10, max_size=10),
       curtailed=st.lists(st.floats(0.0, 1.0), min_size=10, max_size=10))
def test_a_fixed_first_step_is_played_and_never_beats_the_free_plan(noon_problem, shares, curtailed):
    core, problem = noon_problem
    battery = core.battery
    # Half-full batteries can follow any setpoint within their power for one half-hour step.
    power_kw = np.array(shares) * battery.max_kw
    fixed_kw = np.stack([np.maximum(power_kw, 0.0), np.maximum(-power_kw, 0.0), np.array(curtailed) * problem.pv_kw[0]])
    free = solve_dispatch(core, problem)
    fixed = solve_dispatch(core, dataclasses.replace(problem, fixed_first_kw=fixed_kw))
    np.testing.assert_allclose(np.stack([fixed.charge_kw[0], fixed.discharge_kw[0], fixed.curtailed_kw[0]]), fixed_kw,
                               atol=1e-7)
    assert fixed.cost >= free.cost - 1e-6 * abs(free.cost)


def test_the_free_plans_own_first_step_costs_nothing_more(noon_problem):
    core, problem = noon_problem
    free = solve_dispatch(core, problem)
    own_kw = np.stack([free.charge_kw[0], free.discharge_kw[0], free.curtailed_kw[0]])
    assert solve_dispatch(core, dataclasses.replace(problem, fixed_first_kw=own_kw)).cost == pytest.approx(
        free.cost, rel=1e-9, abs=1e-9)


def _fixed(charge_kw=0.0, discharge_kw=0.0, curtailed_kw=0.0) -> np.ndarray:
    return np.stack([np.full(10, charge_kw), np.full(10, discharge_kw), np.full(10, curtailed_kw)])


@pytest.mark.parametrize("fixed_kw, match", [
    (np.zeros((2, 10)), r"shape \(3, 10\)"),
    (_fixed(np.inf), "must lie in"),  # NaN is allowed: planned
    (_fixed(-1.0), "must lie in"),
    (_fixed(99.0), "must lie in"),  # above the batteries' power
    (_fixed(curtailed_kw=99.0), "must lie in"),  # above the step's PV
])
def test_a_bad_fixed_first_step_is_refused(noon_problem, fixed_kw, match):
    core, problem = noon_problem
    with pytest.raises(ValueError, match=match):
        solve_dispatch(core, dataclasses.replace(problem, fixed_first_kw=fixed_kw))


def test_nan_leaves_an_entry_of_the_fixed_step_to_the_plan(noon_problem):
    """The batteries fixed to idle, the curtailment planned: the plan curtails as it likes, and costs between the
    free plan and the one with curtailment fixed to none."""
    core, problem = noon_problem
    idle_kw = _fixed()
    idle_kw[2] = np.nan
    free, idle = (solve_dispatch(core, dataclasses.replace(problem, fixed_first_kw=fixed))
                  for fixed in (None, idle_kw))
    np.testing.assert_allclose(idle.charge_kw[0], 0.0, atol=1e-9)
    np.testing.assert_allclose(idle.discharge_kw[0], 0.0, atol=1e-9)
    nothing_curtailed = solve_dispatch(core, dataclasses.replace(problem, fixed_first_kw=_fixed()))
    assert free.cost - 1e-6 <= idle.cost <= nothing_curtailed.cost + 1e-6


def test_a_fixed_first_step_beyond_the_state_of_charge_or_both_ways_is_refused(noon_problem):
    core, problem = noon_problem
    both_ways = _fixed()
    both_ways[:2, core.battery.max_kw > 0] = 1.0
    with pytest.raises(ValueError, match=r"charges and discharges the batteries of households \[2, 3, 4, 5, 6, 7\]"):
        solve_dispatch(core, dataclasses.replace(problem, fixed_first_kw=both_ways))
    full = dataclasses.replace(problem, energy_kwh=core.battery.max_energy_kwh.copy())
    with pytest.raises(ValueError, match="what each battery can charge"):
        solve_dispatch(core, dataclasses.replace(full, fixed_first_kw=_fixed(charge_kw=1.0)))
    # A list is an array like any other; charging nothing from full batteries is a step they can play.
    assert np.isfinite(solve_dispatch(core, dataclasses.replace(full, fixed_first_kw=_fixed().tolist())).cost)


@pytest.fixture(scope="module")
def two_days() -> np.ndarray:
    core = CommunityCore(DEFAULT)
    return np.array([core.test_days[0], binding_day(DEFAULT, core)])


@pytest.mark.parametrize("controller", [TimeOfUse, lambda: RandomActions(seed=3)], ids=["time_of_use", "random"])
def test_with_perfect_forecasts_regrets_and_bid_loss_are_the_cost_above_the_optimum(two_days, controller):
    """Q of each step is the step's cost at one meter plus the optimal rest from where it leads, which the next
    step's V plans: the regrets telescope to the day's cost minus V of its start, the optimum, less what the bids
    that did not cross lost. Random actions curtail, hit the batteries' limits and bid anything."""
    oracle = DEFAULT.replace(forecaster="oracle")
    references = reference_costs(oracle, two_days)
    shadow = RegretShadow(controller())
    infos = rollout_days(oracle, shadow, two_days)
    above_optimum = infos["cost"].sum(axis=(1, 2)) - references["optimal"]
    np.testing.assert_allclose(shadow.regrets.sum(axis=0) + bid_loss(infos), above_optimum, rtol=1e-6, atol=1e-6)
    assert np.all(above_optimum > 0.5)  # the controller loses something to tell apart
    if controller is not TimeOfUse:  # truthful bids at one price: they cross wherever a trade is possible
        assert np.all(bid_loss(infos) > 0.1)


@pytest.mark.parametrize("controller", [MPCPolicy, lambda: RandomActions(seed=3)], ids=["mpc", "random"])
def test_mpcs_own_steps_have_no_regret_and_the_judge_changes_nothing(two_days, controller):
    shadow = RegretShadow(controller())
    judged = evaluate_policy(DEFAULT, shadow, two_days)
    for key, values in evaluate_policy(DEFAULT, controller(), two_days).items():
        np.testing.assert_array_equal(judged[key], values, err_msg=key)
    # Fixing more never plans cheaper: Q >= Q_battery >= V.
    assert np.all(shadow.regrets >= shadow.battery_regrets - 1e-6) and shadow.battery_regrets.min() > -1e-6
    if controller is MPCPolicy:
        assert np.abs(shadow.regrets).max() < 1e-6
    else:
        assert shadow.battery_regrets.sum(axis=0).min() > 1.0
        assert np.any(shadow.regrets > shadow.battery_regrets + 0.01)  # random curtailment costs something


def test_mpcs_ties_are_far_apart_in_setpoints_and_cost_nothing(two_days):
    """Why the regret and not a distance: MPC that breaks its plans' ties towards spread power (the taught
    MADDPG's teacher) plays setpoints far from the plain MPC's, and the plain MPC counts each of its steps exactly
    as good as its own."""

    class BesidePlainMPC(PolicyWrapper):
        def __init__(self, policy):
            super().__init__(policy, policy.name)
            self.plain, self.setpoint_gaps = MPCPolicy(), []

        def reset(self, core):
            super().reset(core)
            self.plain.reset(core)

        def act(self, core, obs):
            action = self.policy.act(core, obs)
            gap = action[..., 0] - self.plain.act(core, obs)[..., 0]
            self.setpoint_gaps.append(gap[:, core.battery.max_kw > 0])
            return action

    smoothed = BesidePlainMPC(MPCPolicy(power_smoothing_per_kwh=0.002))
    shadow = RegretShadow(smoothed)
    evaluate_policy(DEFAULT, shadow, two_days)
    assert np.sqrt(np.mean(np.square(smoothed.setpoint_gaps))) > 0.1  # of the rated power
    assert np.abs(shadow.regrets).max() < 1e-6


@pytest.mark.parametrize("changes", [{"safety_filter": True}, {"shared_battery_kwh": 20.0, "shared_battery_kw": 10.0}],
                         ids=["safety_filter", "shared_battery"])
def test_the_judge_refuses_a_core_that_plays_another_step_than_the_plans_fix(changes):
    with pytest.raises(ValueError, match="use a core without them"):
        evaluate_policy(DEFAULT.replace(**changes), RegretShadow(IdleMidPrice()), np.array([0]))


def test_the_judge_names_a_non_finite_action_and_an_episode_not_played():
    class NaNBattery(IdleMidPrice):
        def act(self, core, obs):
            action = super().act(core, obs)
            action[..., 0] = np.nan
            return action

    with pytest.raises(ValueError, match="played a non-finite action at step 0"):
        evaluate_policy(DEFAULT, RegretShadow(NaNBattery()), np.array([0]))
    with pytest.raises(RuntimeError, match="has judged no step since reset"):
        RegretShadow(IdleMidPrice()).regrets


def test_costliest_share_cases():
    assert costliest_share(np.ones((10, 2)), 0.1) == pytest.approx(0.1)  # a little everywhere
    assert costliest_share(np.array([[0.0, 0.0], [3.0, 0.0]]), 0.25) == pytest.approx(1.0)  # one step holds it
    assert costliest_share(np.array([[4.0, 1.0], [3.0, 2.0]]), 0.5) == pytest.approx(0.7)
    assert np.isnan(costliest_share(np.full((4, 2), 1e-15)))  # MPC's own: rounding only
    # A step slightly below zero (the cuts' tolerance) counts as none.
    assert costliest_share(np.array([[1.0, -1e-9], [1.0, 0.0]]), 0.5) == pytest.approx(1.0)


def test_step_regret_table_and_plot(tmp_path):
    """On one test day: every controller's row; MPC's regret 0 and its gap to itself 0, the rules' and the floor's
    regret and gap positive (how near each other depends on the forecasts' errors: exact with the oracle, above)."""
    step_regret.main(["--max-days", "1", "--out", str(tmp_path)])
    assert (tmp_path / "step_regret.png").read_bytes().startswith(PNG_SIGNATURE)
    table, by_period = ([table_cells(line) for line in part.splitlines()[2:]]
                        for part in (tmp_path / "step_regret.md").read_text().strip().split("\n\n"))
    rows = table
    assert [row[:2] for row in rows] == [[name, "1"] for name in step_regret.CONTROLLERS]
    by_method = {row[0]: row for row in rows}
    assert by_method["mpc_persistence"][4:8] == ["+0.00", "0.00", "0.00", "n/a"]
    assert all(float(row[8]) >= 0.0 for row in rows)  # bid loss
    for method in ("rule_time_of_use", "idle_mid_price", "random"):
        gap, regret, battery_regret = (float(cell) for cell in by_method[method][4:7])
        assert regret > 0.5 and gap > 0.5 and regret >= battery_regret >= 0.0
    # The periods of the day add up to the whole day's regret, the table's (to the cents' rounding).
    assert [row[0] for row in by_period] == list(step_regret.CONTROLLERS)
    for row, day_row in zip(by_period, table):
        assert row[-1] == day_row[5]
        assert sum(float(cell) for cell in row[1:-1]) == pytest.approx(float(row[-1]), abs=0.03)


def test_step_regret_needs_mpc_as_the_reference():
    config = EnvConfig(n_agents=3, dt_h=3.0, n_days=20)
    with pytest.raises(ValueError, match="must hold mpc_persistence"):
        step_regret.step_regret(config, np.array([0]), {"idle_mid_price": IdleMidPrice()})


def test_a_bad_run_directory_stops_step_regret_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match=r"step_regret: error: checkpoints\[0\]='nowhere' does not exist"):
        step_regret.main(["nowhere", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
