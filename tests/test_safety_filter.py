"""The feeder safety filter (p2p_marl.baselines.safety_filter), checked from outside: the filtered step is played
by the simulator, whose own feeder KPIs say whether it stayed within the limits."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_marl.baselines.rules import GridOnly, RandomActions
from p2p_marl.baselines.safety_filter import SafetyFilter
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.evaluation import report
from p2p_marl.evaluation.compare import load_policies, reference_costs, rollout_days
from p2p_marl.evaluation.config import EvaluateConfig, register_configs, to_evaluate_config
from p2p_marl.evaluation.kpis import VIOLATION_TOLERANCE, day_kpis
from p2p_marl.sim.battery import feasible_power
from p2p_marl.sim.community import ACTION_HIGH, ACTION_LOW, CommunityCore
from conftest import compose_config

DEFAULT_COMMUNITY = EnvConfig(n_agents=10, prosumer_share=0.6)  # community_10: its feeder binds on sunny days
CORE = CommunityCore(DEFAULT_COMMUNITY, batch_size=12)
# The test days with the most PV, where the idle community's export lifts the feeder above its band.
SUNNY_TEST_DAYS = CORE.test_days[np.argsort(-CORE.profiles.pv_kw[CORE.test_days].sum(axis=(1, 2)))]


class _Fixed:
    """A policy that plays the actions it is given."""

    name = "fixed"

    def __init__(self, actions):
        self.actions = actions

    def reset(self, core):
        pass

    def act(self, core, obs):
        return self.actions


def _net_kwh(infos):
    return (infos["load_kwh"] - infos["pv_kwh"] + infos["pv_curtailed_kwh"] + infos["battery_charge_kwh"]
            - infos["battery_discharge_kwh"])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), warm_up_steps=st.integers(0, 40), extreme=st.booleans())
def test_a_filtered_step_stays_in_the_band_or_moves_towards_it_and_leaves_safe_steps_alone(seed, warm_up_steps,
                                                                                          extreme):
    """Over random states and actions: overvoltage is always repaired (curtailment and charging can always take
    the export back), undervoltage never grows, nothing overloads, every move goes in the repair's direction,
    the price shares and every community already within the limits are untouched, the actions stay in the box."""
    core = copy.deepcopy(CORE)
    rng = np.random.default_rng(seed)
    obs = core.reset(seed=seed)
    for _ in range(warm_up_steps):
        obs, *_ = core.step(rng.uniform(ACTION_LOW, ACTION_HIGH, size=(core.batch_size, core.n_agents, 3)))
    actions = rng.uniform(ACTION_LOW, ACTION_HIGH, size=(core.batch_size, core.n_agents, 3))
    if extreme:  # everybody exports at full power with no curtailment: the feeder's worst case at noon
        actions[..., 0], actions[..., 2] = -1.0, 0.0
    safety = SafetyFilter(_Fixed(actions))
    filtered = safety.act(core, obs)
    unfiltered_core = copy.deepcopy(core)
    *_, before = unfiltered_core.step(actions)
    *_, after = core.step(filtered)

    assert np.all(filtered >= ACTION_LOW) and np.all(filtered <= ACTION_HIGH)
    np.testing.assert_array_equal(filtered[..., 1], actions[..., 1])
    over, under, overload = (before[key][:, 0] for key in ("feeder_overvoltage_pu", "feeder_undervoltage_pu",
                                                          "feeder_overload_kva"))
    safe = (over == 0) & (under == 0) & (overload == 0)
    np.testing.assert_array_equal(filtered[safe], actions[safe])
    assert safety.interventions == int((~safe).sum())
    assert np.all(after["feeder_overvoltage_pu"] <= VIOLATION_TOLERANCE)
    assert np.all(after["feeder_overload_kva"] <= VIOLATION_TOLERANCE)
    assert np.all(after["feeder_undervoltage_pu"] <= before["feeder_undervoltage_pu"] + VIOLATION_TOLERANCE)
    moved = _net_kwh(after) - _net_kwh(before)
    only_over, only_under = (over > 0) & (under == 0), (under > 0) & (over == 0)
    assert np.all(moved[only_over] >= -1e-9)  # exports taken back, no import added elsewhere
    assert np.all(moved[only_under] <= 1e-9)


def test_the_filter_stores_the_noon_export_before_it_curtails_it():
    """Idle batteries at half charge under the noon export: the filter charges them, and a household's PV is
    curtailed only once its own battery charges as fast as it can (at its bus both moves relieve the feeder
    alike, and curtailing loses the energy)."""
    core = copy.deepcopy(CORE)
    obs = core.reset(days=SUNNY_TEST_DAYS[:core.batch_size])
    safety = SafetyFilter(GridOnly())
    charged_kwh = curtailed_kwh = 0.0
    while not core.done:
        action = safety.act(core, obs)
        max_charge_kw, _ = feasible_power(core.battery.max_kw, core.energy_kwh, core.battery, core.dt_h)
        at_max_charge = action[..., 0] * core.battery.max_kw >= max_charge_kw - 1e-9
        assert np.all((action[..., 2] == 0) | at_max_charge)
        obs, _, _, infos = core.step(action)
        charged_kwh += infos["battery_charge_kwh"].sum()
        curtailed_kwh += infos["pv_curtailed_kwh"].sum()
    assert safety.interventions > 0 and charged_kwh > 0 and curtailed_kwh > 0


def test_a_filtered_benchmark_has_no_violation_days_and_is_its_own_method():
    days = SUNNY_TEST_DAYS[:8]
    references = reference_costs(DEFAULT_COMMUNITY, days)
    policies = load_policies(["grid_only"], [], safety_filter=True)
    assert list(policies) == ["grid_only", "grid_only+safety_filter"]
    kpis = {label: day_kpis(rollout_days(DEFAULT_COMMUNITY, policy, days), DEFAULT_COMMUNITY.dt_h,
                            grid_only_bills=references["grid_only_bills"], optimal_cost=references["optimal"])
            for label, policy in policies.items()}
    assert kpis["grid_only"]["violation_day"].sum() > 0  # these days need the filter
    assert kpis["grid_only+safety_filter"]["violation_day"].sum() == 0
    # Without its network penalty the idle community pays less, whatever the filter's curtailment costs.
    assert kpis["grid_only+safety_filter"]["community_cost"].mean() < kpis["grid_only"]["community_cost"].mean()
    assert report.method_of("grid_only+safety_filter") == "grid_only+safety_filter"


def test_the_filter_refuses_a_community_with_a_shared_battery():
    shared = EnvConfig(n_agents=4, n_days=10, shared_battery_kwh=20.0, shared_battery_kw=5.0)
    with pytest.raises(ValueError, match="shared battery"):
        SafetyFilter(RandomActions(seed=0)).reset(CommunityCore(shared))
    with pytest.raises(ConfigError, match=r"safety_filter=true .* env.shared_battery_kwh=20.0"):
        EvaluateConfig(env=shared, safety_filter=True)


def test_evaluate_composes_the_safety_filter_key():
    register_configs()
    assert to_evaluate_config(compose_config("evaluate", "safety_filter=true")).safety_filter
    assert not to_evaluate_config(compose_config("evaluate")).safety_filter
