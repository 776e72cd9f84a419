"""The feeder safety filter (p2p_marl.sim.safety_filter) in both its views, the policy wrapper
(p2p_marl.baselines.safety_filter) and the environment option (EnvConfig.safety_filter), checked from outside: the
filtered step is played by the simulator, whose own feeder KPIs say whether it stayed within the limits."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pettingzoo.test import parallel_api_test

import p2p_marl
from p2p_marl.algos.nets import training_env
from p2p_marl.baselines.rules import GridOnly, RandomActions
from p2p_marl.baselines.safety_filter import SafetyFilter
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.evaluation.compare import load_policies, reference_costs, rollout_days
from p2p_marl.evaluation.config import EvaluateConfig, register_configs, to_evaluate_config
from p2p_marl.evaluation.kpis import VIOLATION_TOLERANCE, day_kpis
from p2p_marl.sim.battery import feasible_power
from p2p_marl.sim.community import ACTION_HIGH, ACTION_LOW, FEEDER_KPI_KEYS, CommunityCore
from p2p_marl.sim.safety_filter import idle_step_outside_limits
from conftest import compose_config, meter_net_kwh
from test_simbench import preset

DEFAULT_COMMUNITY = EnvConfig(n_agents=10, prosumer_share=0.6)  # community_10: its feeder binds on sunny days
CORE = CommunityCore(DEFAULT_COMMUNITY, batch_size=12)
FULL_START = dict(n_agents=10, prosumer_share=0.6, train_soc_initial_min=0.9, train_soc_initial_max=0.9)


def sunny_test_days(core):
    """The test days, most PV first: where an idle community's export lifts the feeder above its band."""
    return core.test_days[np.argsort(-core.profiles.pv_kw[core.test_days].sum(axis=(1, 2)))]


SUNNY_TEST_DAYS = sunny_test_days(CORE)


class _Fixed:
    """A policy that plays the actions it is given."""

    name = "fixed"

    def __init__(self, actions):
        self.actions = actions

    def reset(self, core):
        pass

    def act(self, core, obs):
        return self.actions


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), warm_up_steps=st.integers(0, 40), extreme=st.booleans())
def test_on_the_default_feeder_every_filtered_step_is_in_the_band_and_safe_steps_are_left_alone(seed, warm_up_steps,
                                                                                              extreme):
    """Over random states and actions on community_10, whose feeder binds on the export side: the overvoltage is
    always repaired (curtailing and charging can always take an export back), by moves that only take exports
    back where the export side alone breaks (random actions in the evening can also pull the other lateral under
    the band in the same step; then imports are taken back too, and the step is repaired all the same); the price
    shares and every community already within the limits are untouched; actions stay in the box. (The import
    side and the ratings: the next test.)"""
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
    *_, before = copy.deepcopy(core).step(actions)
    *_, after = core.step(filtered)

    assert np.all(filtered >= ACTION_LOW) and np.all(filtered <= ACTION_HIGH)
    np.testing.assert_array_equal(filtered[..., 1], actions[..., 1])
    safe = ~_outside_limits(before)
    np.testing.assert_array_equal(filtered[safe], actions[safe])
    assert safety.interventions == int((~safe).sum())
    assert not _outside_limits(after).any()
    export_side_only = ~safe & (before["feeder_undervoltage_pu"][:, 0] <= VIOLATION_TOLERANCE) & (
        before["feeder_overload_kva"][:, 0] <= VIOLATION_TOLERANCE)
    assert np.all(meter_net_kwh(after)[export_side_only] >= meter_net_kwh(before)[export_side_only] - 1e-9)


def _outside_limits(infos):
    """(B,) whether the simulator's feeder KPIs of a step show a violation beyond the rounding tolerance."""
    return np.any([infos[key][:, 0] > VIOLATION_TOLERANCE for key in FEEDER_KPI_KEYS], axis=0)


WEAK_FEEDERS = {  # (environment, the KPI the idle community breaks there, days: None = drawn from the training split)
    # the transformer tapped low: the evening peak pulls the far buses under the band
    "undervoltage": (EnvConfig(**FULL_START, v_slack_pu=0.97), "feeder_undervoltage_pu", None),
    "line overload": (EnvConfig(**FULL_START, line_rating_kva=6.0), "feeder_overload_kva", None),
    "transformer overload": (EnvConfig(**FULL_START, transformer_kva=8.0), "feeder_overload_kva", None),
    # SimBench's rural grid with its agricultural loads outside the market (the passive loads' flows)
    "SimBench rural1": (preset("simbench_rural1"), "feeder_overload_kva", "sunny"),
}


@pytest.mark.parametrize("feeder", sorted(WEAK_FEEDERS))
def test_on_weak_feeders_a_filtered_day_stays_within_every_limit(feeder):
    """Idle batteries that start nearly full on feeders that break on the import side or on their ratings: the
    filter discharges and gives PV back where that helps, and no step of the day leaves the limits."""
    env, broken_kpi, days = WEAK_FEEDERS[feeder]
    core = CommunityCore(env, batch_size=8)
    obs = core.reset(seed=0) if days is None else core.reset(days=sunny_test_days(core)[:core.batch_size])
    safety, broken_before = SafetyFilter(GridOnly()), 0.0
    while not core.done:
        action = GridOnly().act(core, obs)
        *_, before = copy.deepcopy(core).step(action)
        obs, _, _, after = core.step(safety.act(core, obs))
        assert not _outside_limits(after).any()
        broken_before += before[broken_kpi].sum()
        import_side = (before["feeder_undervoltage_pu"][:, 0] > 0) & (before["feeder_overvoltage_pu"][:, 0] == 0)
        assert np.all(meter_net_kwh(after)[import_side] <= meter_net_kwh(before)[import_side] + 1e-9)
    assert broken_before > 0 and safety.interventions > 0  # the idle community did break this limit


@pytest.mark.parametrize("feeder", sorted(WEAK_FEEDERS))
def test_the_steps_where_the_feeder_binds_with_idle_batteries_are_grid_onlys_violation_steps(feeder):
    """``idle_step_outside_limits``, asked before each step, says which of grid-only's steps the simulator then
    finds outside the limits; the day and the hour decide it, whatever the batteries hold."""
    env, _, days = WEAK_FEEDERS[feeder]
    core = CommunityCore(env, batch_size=8)
    obs = core.reset(seed=0) if days is None else core.reset(days=sunny_test_days(core)[:core.batch_size])
    core.energy_kwh = np.random.default_rng(0).uniform(core.battery.min_energy_kwh, core.battery.max_energy_kwh,
                                                       core.energy_kwh.shape)
    flagged = []
    while not core.done:
        predicted = idle_step_outside_limits(core)
        obs, _, _, infos = core.step(GridOnly().act(core, obs))
        np.testing.assert_array_equal(predicted, _outside_limits(infos))
        flagged.append(predicted)
    assert 0 < np.mean(flagged) < 1  # the feeder binds at some steps of these days, not at all


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
    # Without its network penalty the idle community pays less (it also trades: those the filter turns from
    # exporters into importers buy with the asks they made as sellers).
    assert kpis["grid_only+safety_filter"]["community_cost"].mean() < kpis["grid_only"]["community_cost"].mean()


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


FILTERED_COMMUNITY = DEFAULT_COMMUNITY.replace(safety_filter=True)
FILTERED_CORE = CommunityCore(FILTERED_COMMUNITY, batch_size=12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), warm_up_steps=st.integers(0, 40), extreme=st.booleans())
def test_the_environment_option_settles_what_the_wrapper_plays(seed, warm_up_steps, extreme):
    """With env.safety_filter the step itself filters: over random states and actions on community_10, every
    step stays within the limits, settles what the policy wrapper would have played (which the environment's
    filter then lets through untouched), and reports energy moved in exactly the communities whose actions the
    wrapper moved."""
    core = copy.deepcopy(FILTERED_CORE)
    rng = np.random.default_rng(seed)
    obs = core.reset(seed=seed)
    for _ in range(warm_up_steps):
        obs, _, _, infos = core.step(rng.uniform(ACTION_LOW, ACTION_HIGH, size=(core.batch_size, core.n_agents, 3)))
        assert not _outside_limits(infos).any()
    actions = rng.uniform(ACTION_LOW, ACTION_HIGH, size=(core.batch_size, core.n_agents, 3))
    if extreme:
        actions[..., 0], actions[..., 2] = -1.0, 0.0
    wrapped = SafetyFilter(_Fixed(actions)).act(core, obs)
    replay = copy.deepcopy(core)
    *_, played = core.step(actions)
    *_, replayed = replay.step(wrapped)

    assert not _outside_limits(played).any()
    for key in core.info_keys:
        if key != "safety_filter_kwh":
            np.testing.assert_allclose(played[key], replayed[key], rtol=0, atol=1e-9, err_msg=key)
    np.testing.assert_array_equal(replayed["safety_filter_kwh"], 0.0)
    assert np.all(played["safety_filter_kwh"] >= 0)
    moved = np.any(wrapped != actions, axis=(1, 2))
    np.testing.assert_array_equal(played["safety_filter_kwh"].sum(axis=1) > 0, moved)


def test_a_rule_through_the_environment_option_or_the_wrapper_settles_the_same_days():
    """A whole day of a rule on the sunny test days: the environment option and the wrapper settle the same bills
    and energies, and the references (grid-only, the optimum) are the same with and without the option."""
    days = SUNNY_TEST_DAYS[:4]
    policy = RandomActions(seed=3)
    wrapped = rollout_days(DEFAULT_COMMUNITY, SafetyFilter(RandomActions(seed=3)), days)
    in_env = rollout_days(FILTERED_COMMUNITY, policy, days)
    for key in wrapped:
        np.testing.assert_allclose(in_env[key], wrapped[key], rtol=0, atol=1e-9, err_msg=key)
    assert in_env["safety_filter_kwh"].sum() > 0 and "safety_filter_kwh" not in wrapped
    plain, filtered = reference_costs(DEFAULT_COMMUNITY, days), reference_costs(FILTERED_COMMUNITY, days)
    for key in ("grid_only", "optimal", "grid_only_bills"):
        np.testing.assert_array_equal(plain[key], filtered[key])


def test_the_environment_option_is_checked_and_passes_the_pettingzoo_suite():
    with pytest.raises(ConfigError, match="safety_filter must be true or false, got 'yes'"):
        EnvConfig(safety_filter="yes")
    with pytest.raises(ConfigError, match=r"safety_filter=true with shared_battery_kwh=20.0"):
        EnvConfig(n_agents=4, shared_battery_kwh=20.0, shared_battery_kw=5.0, safety_filter=True)
    # A learner's narrowed training band would be the filter's band too, in training only.
    with pytest.raises(ConfigError, match=r"mappo.voltage_margin_pu=0.0075 with env.safety_filter=true"):
        training_env(FILTERED_COMMUNITY, None, 0.0075, "mappo")
    assert training_env(FILTERED_COMMUNITY, None) is FILTERED_COMMUNITY
    with pytest.raises(ConfigError, match=r"env.safety_filter=true already plays every method through it"):
        EvaluateConfig(env=FILTERED_COMMUNITY, safety_filter=True)
    assert "safety_filter_kwh" in CommunityCore(FILTERED_COMMUNITY).info_keys
    assert "safety_filter_kwh" not in CORE.info_keys
    env = p2p_marl.parallel_env(n_agents=4, n_days=20, safety_filter=True)
    parallel_api_test(env, num_cycles=60)
    env.reset(seed=0)
    _, _, _, _, infos = env.step({agent: env.action_space(agent).sample() for agent in env.agents})
    assert all(infos[agent]["safety_filter_kwh"] >= 0 for agent in env.agents)


def test_a_step_that_no_move_can_help_is_not_counted_as_an_intervention():
    """Empty batteries under the evening peak of a feeder tapped low: the far buses sink under the band, and
    nothing the filter may move helps (the batteries cannot discharge, curtailing PV only adds import). The
    actions pass unchanged and ``interventions`` stays 0, as the environment's own filter counts steps by the
    power it moved."""
    core = CommunityCore(EnvConfig(v_slack_pu=0.97, train_soc_initial_min=0.1, train_soc_initial_max=0.1),
                         batch_size=8)
    obs = core.reset(seed=0)
    safety, undervoltage_steps = SafetyFilter(GridOnly()), 0
    while not core.done:
        action = GridOnly().act(core, obs)
        filtered = safety.act(core, obs)
        np.testing.assert_allclose(filtered, action, atol=1e-9)
        obs, _, _, infos = core.step(filtered)
        undervoltage_steps += int((infos["feeder_undervoltage_pu"][:, 0] > 0).sum())
    assert undervoltage_steps > 0 and safety.interventions == 0
