"""The perfect-foresight optimum: acted out, the environment charges exactly its cost, and nothing beats it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from p2p_marl.baselines.optimal import OptimalPolicy, OptimalSolveError, solve_optimal_day
from p2p_marl.baselines.rules import (GridOnly, IdleMidPrice, RandomActions, SelfConsumption, TimeOfUse,
                                      ZeroIntelligence)
from p2p_marl.config import EnvConfig, make_config
from p2p_marl.evaluation.kpis import VIOLATION_TOLERANCE, day_kpis
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.sim.community import CommunityCore
from p2p_marl.sim.profiles import ProfileSet

COMMUNITY_10 = Path(__file__).resolve().parents[1] / "configs" / "env" / "community_10.yaml"
COMMUNITY_10_STRONG = COMMUNITY_10.with_name("community_10_strong.yaml")
FEEDER_VIOLATIONS = ("feeder_undervoltage_pu", "feeder_overvoltage_pu", "feeder_overload_kva")


def community_10(**overrides) -> EnvConfig:
    return make_config(EnvConfig(**yaml.safe_load(COMMUNITY_10.read_text())), **overrides)


def community_10_strong(**overrides) -> EnvConfig:
    """The same households on the strong feeder, which never binds."""
    return make_config(EnvConfig(**yaml.safe_load(COMMUNITY_10_STRONG.read_text())), **overrides)


def community_cost(infos: dict[str, np.ndarray]) -> np.ndarray:
    """(B,) the community's summed cost of each day."""
    return infos["cost"].sum(axis=(1, 2))


def act_out(config: EnvConfig, days, network: bool = True) -> tuple[OptimalPolicy, dict[str, np.ndarray]]:
    """Roll the optimum out on ``days`` and check that the environment charges exactly the schedule's cost."""
    days = np.asarray(days)
    core = CommunityCore(config, batch_size=days.size)
    policy = OptimalPolicy(network=network)
    infos = rollout(core, policy, days)
    schedules = policy.schedules
    np.testing.assert_allclose(community_cost(infos), [s.cost for s in schedules], rtol=1e-6, atol=1e-9)
    # The end-of-day settlement is part of that cost, charged at the last step as the LP planned it.
    np.testing.assert_allclose(infos["end_settlement"][:, -1].sum(axis=1), [s.end_settlement for s in schedules],
                               rtol=1e-6, atol=1e-9)
    # The environment executed the planned battery powers (no clipping by SoC or power limits).
    for key, field in (("battery_charge_kwh", "charge_kw"), ("battery_discharge_kwh", "discharge_kw"),
                       ("pv_curtailed_kwh", "curtailed_kw")):
        planned_kwh = np.stack([getattr(s, field) for s in schedules]) * config.dt_h
        np.testing.assert_allclose(infos[key], planned_kwh, atol=1e-8)
    return policy, infos


def assert_no_violation(infos: dict[str, np.ndarray]) -> None:
    """No excess beyond rounding, and so no violation step or day in the KPIs (kpis.VIOLATION_TOLERANCE)."""
    for key in FEEDER_VIOLATIONS:
        assert infos[key].max() < VIOLATION_TOLERANCE, f"{key} = {infos[key].max()}"
    kpis = day_kpis(infos, dt_h=0.25)  # the step's length does not enter the counts
    for kpi in ("violation_day", "voltage_violation_steps", "line_overload_steps"):
        assert kpis[kpi].sum() == 0, kpi


def sunniest_days(config: EnvConfig, count: int) -> np.ndarray:
    profiles = CommunityCore(config).profiles
    return np.argsort(profiles.pv_kw.sum(axis=(1, 2)))[::-1][:count]


def one_household(load_kw: np.ndarray, pv_kw: np.ndarray, **overrides) -> CommunityCore:
    """A single prosumer on its own line of the strong feeder, the same hourly profile on three days."""
    steps = load_kw.size
    profiles = ProfileSet(np.broadcast_to(load_kw[:, None], (3, steps, 1)),
                          np.broadcast_to(pv_kw[:, None], (3, steps, 1)), np.array([True]), np.array([0, 1, 2]),
                          dt_h=24.0 / steps)
    config = make_config(community_10_strong(), n_agents=1, dt_h=24.0 / steps, n_laterals=1, **overrides)
    return CommunityCore(config, profiles=profiles)


# ------------------------------------------------------------------ consistency


@pytest.mark.parametrize("feeder", [community_10, community_10_strong])
def test_acted_out_cost_equals_the_lp_objective_on_train_and_test_days(feeder):
    config = feeder()
    core = CommunityCore(config)
    days = np.concatenate([core.train_days[[0, core.train_days.size // 2, -1]],
                           core.test_days[[0, core.test_days.size // 2, -1]], sunniest_days(config, 1)])
    policy, infos = act_out(config, days)
    assert_no_violation(infos)
    for schedule in policy.schedules:
        assert not schedule.mixed_integer
        assert schedule.cost == pytest.approx(schedule.lower_bound, rel=1e-9)
        assert schedule.charge_kw.shape == (config.steps_per_episode, config.n_agents)
        # Community exchange: I - X is the summed net power, and never both at once.
        net_kw = schedule.household_net_kw().sum(axis=1)
        np.testing.assert_allclose(schedule.grid_import_kw - schedule.grid_export_kw, net_kw, atol=1e-7)
        assert np.minimum(schedule.grid_import_kw, schedule.grid_export_kw).max() <= 1e-7


@pytest.mark.parametrize("market", ["pay_as_bid", "mid_market"])
def test_every_market_clears_the_community_internally(market):
    config = community_10(market=market)
    days = CommunityCore(config).test_days[:2]
    _, infos = act_out(config, days)
    assert_no_violation(infos)


def test_a_shortened_episode_is_planned_over_its_own_steps():
    config = community_10(max_cycles=20)
    policy, _ = act_out(config, CommunityCore(config).test_days[:2])
    assert all(s.charge_kw.shape == (20, config.n_agents) for s in policy.schedules)


# ------------------------------------------------------------------ lower bound


@pytest.mark.parametrize("feeder", [community_10, community_10_strong])
def test_optimum_is_a_lower_bound_on_every_benchmark(feeder):
    config = feeder()
    days = CommunityCore(config).test_days[::4]
    core = CommunityCore(config, batch_size=days.size)
    optimal = community_cost(rollout(core, OptimalPolicy(), days))
    grid_only = community_cost(rollout(core, GridOnly(), days))
    for policy in (GridOnly(), IdleMidPrice(), RandomActions(seed=0), SelfConsumption(), TimeOfUse(),
                   ZeroIntelligence(seed=0)):
        cost = community_cost(rollout(core, policy, days))
        assert np.all(optimal <= cost + 1e-9), f"{policy.name}: {cost - optimal}"
    assert optimal.sum() < grid_only.sum() - 1.0  # batteries and perfect foresight save real money


# ------------------------------------------------------------------ a case checked by hand


def test_one_battery_shifts_exactly_the_peak_load():
    """Flat 1 kW load, retail 0.10 except 0.30 in the four peak hours 17-21, an empty battery charging at 90 %.

    The optimum charges 4 / 0.9 kWh at 0.10 before the peak and discharges 1 kW through the peak:
    cost = 0.10 * 20 h * 1 kW + 0.10 * 4 / 0.9 + 0.01 * (4 / 0.9 + 4) (degradation on the throughput).
    """
    core = one_household(np.ones(24), np.zeros(24), retail_offpeak_per_kwh=0.10, retail_shoulder_per_kwh=0.10,
                         retail_peak_per_kwh=0.30, peak_start_h=17.0, peak_end_h=21.0, battery_kwh=10.0,
                         battery_kw=5.0, charge_efficiency=0.9, discharge_efficiency=1.0, soc_min=0.1,
                         soc_initial=0.1, degradation_cost_per_kwh=0.01)
    schedule = solve_optimal_day(core, 0)
    peak = slice(17, 21)
    charged_kwh = 4.0 / 0.9
    assert schedule.cost == pytest.approx(0.10 * 20 + 0.10 * charged_kwh + 0.01 * (charged_kwh + 4.0), rel=1e-9)
    np.testing.assert_allclose(schedule.discharge_kw[peak, 0], 1.0, atol=1e-9)
    assert schedule.discharge_kw.sum() == pytest.approx(4.0, abs=1e-9)
    assert schedule.charge_kw[:17, 0].sum() == pytest.approx(charged_kwh, abs=1e-9)
    assert schedule.charge_kw[17:, 0].sum() == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(schedule.grid_import_kw[peak], 0.0, atol=1e-9)
    infos = rollout(core, OptimalPolicy(), np.array([0]))
    assert community_cost(infos)[0] == pytest.approx(schedule.cost, rel=1e-9)


# ------------------------------------------------------------------ the network


def test_the_default_feeder_binds_and_the_optimum_pays_for_it():
    """With idle batteries the default feeder leaves its voltage band on at least a fifth of the test days; the
    optimum stays within it, and on some of those days that costs it money (stored or curtailed PV)."""
    config = community_10()
    days = CommunityCore(config).test_days
    idle = rollout(CommunityCore(config, batch_size=days.size), GridOnly(), days)
    binds = np.any([idle[key].sum(axis=(1, 2)) > 0 for key in FEEDER_VIOLATIONS], axis=0)
    assert binds.mean() >= 0.2
    binding_days = days[binds][::3]
    constrained, infos = act_out(config, binding_days)
    assert_no_violation(infos)
    free = OptimalPolicy(network=False)
    free_infos = rollout(CommunityCore(config, batch_size=binding_days.size), free, binding_days)
    lp_constrained = np.array([s.cost for s in constrained.schedules])
    lp_free = np.array([s.cost for s in free.schedules])
    assert np.all(lp_constrained >= lp_free - 1e-9) and np.any(lp_constrained > lp_free + 1e-3)
    assert sum(s.curtailed_kw.sum() for s in constrained.schedules) > 0
    # Acted out, the network-blind schedule pays penalties that leave it behind the constrained optimum.
    assert np.all(community_cost(free_infos) >= lp_constrained - 1e-9)


def test_a_tight_voltage_band_binds_and_is_kept_on_the_strong_feeder():
    """With v_max = 1.041 p.u., the unconstrained optimum exports into an over-voltage on the sunniest days; the
    constrained one shifts its charging into the PV peak and stays in the band."""
    config = community_10_strong(v_max_pu=1.041)
    days = sunniest_days(config, 3)
    constrained, infos = act_out(config, days)
    assert_no_violation(infos)
    free = OptimalPolicy(network=False)
    free_infos = rollout(CommunityCore(config, batch_size=days.size), free, days)
    assert np.all(free_infos["feeder_overvoltage_pu"].sum(axis=(1, 2)) > 0)
    lp_constrained = np.array([s.cost for s in constrained.schedules])
    assert np.all(lp_constrained >= np.array([s.cost for s in free.schedules]) - 1e-9)
    assert np.all(community_cost(free_infos) > lp_constrained)


def test_a_tight_line_rating_binds_and_is_kept():
    """5 kVA lines: the unconstrained optimum charges every battery at once in the night and overloads them."""
    config = community_10(line_rating_kva=5.0)
    days = CommunityCore(config).test_days[:4]
    constrained, infos = act_out(config, days)
    assert_no_violation(infos)
    free = OptimalPolicy(network=False)
    free_infos = rollout(CommunityCore(config, batch_size=days.size), free, days)
    assert np.all(free_infos["feeder_overload_kva"].sum(axis=(1, 2)) > 0)
    lp_constrained = np.array([s.cost for s in constrained.schedules])
    assert np.all(lp_constrained >= np.array([s.cost for s in free.schedules]) - 1e-9)
    assert np.all(community_cost(free_infos) > lp_constrained)


def test_an_unavoidable_overload_is_priced_as_the_environment_prices_it():
    """1 kVA lines overload whatever the batteries do: cutting planes make the LP charge the true penalty."""
    config = community_10(line_rating_kva=1.0)
    policy, infos = act_out(config, CommunityCore(config).test_days[:2])
    for b, schedule in enumerate(policy.schedules):
        assert schedule.cut_rounds > 0 and schedule.overload_kva.sum() > 0
        assert schedule.lower_bound <= schedule.cost <= schedule.lower_bound + 1e-6 * abs(schedule.cost)
        # The environment reports each step's feeder overload on every agent.
        np.testing.assert_allclose(infos["feeder_overload_kva"][b, :, 0], schedule.overload_kva, rtol=1e-6,
                                   atol=1e-9)
        assert schedule.network_penalty > 0


def test_a_battery_never_charges_and_discharges_in_one_step():
    """Without a degradation cost, burning surplus energy by charging and discharging a battery at once ties with
    curtailing it, and the LP may pick the former, which the environment cannot act out; the mixed-integer
    fallback then finds the best schedule it can. (Day 137 of this community is such a tie, found by search.)"""
    config = community_10(n_agents=6, n_laterals=1, degradation_cost_per_kwh=0.0)
    core = CommunityCore(config)
    schedule = solve_optimal_day(core, 137)
    assert schedule.mixed_integer
    assert np.minimum(schedule.charge_kw, schedule.discharge_kw).max() <= 1e-9
    assert schedule.lower_bound <= schedule.cost <= schedule.lower_bound + 1e-6 * abs(schedule.cost)
    infos = rollout(core, OptimalPolicy(), np.array([137]))
    assert community_cost(infos)[0] == pytest.approx(schedule.cost, rel=1e-6, abs=1e-9)
    with pytest.raises(OptimalSolveError, match="day 137 .*mip_time_limit_s"):
        solve_optimal_day(core, 137, mip_time_limit_s=1e-9)


def test_curtailment_makes_the_mixed_integer_fallback_unnecessary_where_batteries_wear():
    """PV curtailment relieves an over-voltage for the lost feed-in revenue alone, cheaper than burning energy
    in a battery that wears: the LP never charges and discharges at once."""
    pv_kw = np.where((np.arange(24) >= 8) & (np.arange(24) < 16), 6.0, 0.0)
    core = one_household(np.full(24, 0.5), pv_kw, segment_km=0.5, battery_kwh=5.0, v_max_pu=1.035,
                         voltage_penalty_per_pu_h=1000.0)
    schedule = solve_optimal_day(core, 0)
    assert not schedule.mixed_integer and schedule.curtailed_kw.sum() > 0
    assert schedule.network_penalty == pytest.approx(0.0, abs=1e-9)
    infos = rollout(core, OptimalPolicy(), np.array([0]))
    assert community_cost(infos)[0] == pytest.approx(schedule.cost, rel=1e-6)


# ------------------------------------------------------------------ misuse


def test_bad_arguments_are_named():
    core = CommunityCore(community_10(n_days=10), batch_size=2)
    with pytest.raises(ValueError, match=r"day must be a day index in \[0, 9\]"):
        solve_optimal_day(core, 10)
    with pytest.raises(ValueError, match="mip_time_limit_s"):
        solve_optimal_day(core, 0, mip_time_limit_s=0.0)
    core.reset(days=np.array([0, 1]))
    policy = OptimalPolicy()
    policy.reset(core)
    obs = core.reset(days=np.array([2, 3]))  # a new episode the policy did not plan
    with pytest.raises(RuntimeError, match=r"call policy.reset\(core\)"):
        policy.act(core, obs)


# ------------------------------------------------------------------ the yardstick


class ConstantAction:
    """Every household plays the same action at every step."""

    def __init__(self, setpoint_share: float, price_share: float = 0.5):
        self.name = f"constant_{setpoint_share:+.2f}"
        self.action = np.array([setpoint_share, price_share, 0.0])

    def reset(self, core: CommunityCore) -> None:
        pass

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.action, (*obs.shape[:2], 3)).copy()


def test_no_constant_action_beats_idle_batteries():
    """Stored energy is settled at the end of the day, so no constant battery setpoint (draining the start energy
    slowly or fast, or filling up) beats idle batteries by more than 1 % of the grid-only bill."""
    config = community_10()
    days = CommunityCore(config).test_days
    core = CommunityCore(config, batch_size=days.size)
    grid_only = community_cost(rollout(core, GridOnly(), days)).mean()
    idle = community_cost(rollout(core, ConstantAction(0.0), days)).mean()
    for setpoint in np.linspace(-1.0, 1.0, 41):
        constant = community_cost(rollout(core, ConstantAction(setpoint), days)).mean()
        assert idle - constant <= 0.01 * grid_only, f"setpoint {setpoint:+.2f}: {constant:.3f} vs idle {idle:.3f}"
