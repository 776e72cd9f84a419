"""Model-predictive control: with the oracle it is the perfect-foresight optimum; with real forecasts it pays for
their errors, never less than the optimum; it plans on the environment's forecaster unless told otherwise."""

import dataclasses

import numpy as np
import pytest

from conftest import write_profile_csv
from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.optimal import DispatchProblem, OptimalPolicy, solve_dispatch, solve_optimal_day
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.demo import binding_day
from p2p_marl.evaluation.config import EvaluateConfig
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.sim.community import CommunityCore
from p2p_marl.sim.profiles import synthetic_profiles

DEFAULT = EnvConfig()


def _costs(config: EnvConfig, policy, days: np.ndarray) -> np.ndarray:
    return rollout(CommunityCore(config, batch_size=len(days)), policy, days)["cost"].sum(axis=(1, 2))


@pytest.fixture(scope="module")
def test_days() -> np.ndarray:
    """Three test days of the default community, one of them a day on which the feeder binds."""
    core = CommunityCore(DEFAULT)
    return np.unique(np.array([*core.test_days[:2], binding_day(DEFAULT, core)]))


@pytest.fixture(scope="module")
def optimal_costs(test_days) -> np.ndarray:
    return _costs(DEFAULT, OptimalPolicy(), test_days)


def test_mpc_with_the_oracle_is_the_perfect_foresight_optimum(test_days, optimal_costs):
    np.testing.assert_allclose(_costs(DEFAULT, MPCPolicy("oracle"), test_days), optimal_costs, rtol=1e-6)


@pytest.mark.parametrize("forecaster", ["persistence", "noisy"])
def test_mpc_with_real_forecasts_never_beats_the_optimum(test_days, optimal_costs, forecaster):
    costs = _costs(DEFAULT, MPCPolicy(forecaster), test_days)
    assert np.all(costs >= optimal_costs - 1e-6 * np.abs(optimal_costs))
    assert np.any(costs > optimal_costs + 1e-3)  # forecast errors cost something on some day


def test_mpc_plans_on_the_environments_forecaster_by_default(test_days):
    days = test_days[:1]
    noisy_env = DEFAULT.replace(forecaster="noisy", forecast_nrmse=0.9, forecast_nrmse_next=0.3)
    own = _costs(noisy_env, MPCPolicy(), days)
    np.testing.assert_array_equal(own, _costs(noisy_env, MPCPolicy("noisy"), days))
    assert not np.array_equal(own, _costs(noisy_env, MPCPolicy("persistence"), days))
    assert MPCPolicy().name == "mpc" and MPCPolicy("persistence").name == "mpc_persistence"


def test_a_dispatch_problem_from_the_middle_of_the_day_continues_the_optimum():
    """Principle of optimality: re-planning the rest of an optimal day from where its schedule stands gives the
    rest of the optimal cost."""
    core = CommunityCore(DEFAULT)
    day = int(core.test_days[0])
    whole = solve_optimal_day(core, day)
    first = 20
    battery = core.battery
    energy_kwh = DEFAULT.soc_initial * battery.capacity_kwh
    for t in range(first):
        energy_kwh = energy_kwh + (battery.charge_efficiency * whole.charge_kw[t]
                                   - whole.discharge_kw[t] / battery.discharge_efficiency) * core.dt_h
    start = DEFAULT.soc_initial * battery.capacity_kwh
    rest = solve_dispatch(core, DispatchProblem(day, first, core.profiles.load_kw[day, first:],
                                                core.profiles.pv_kw[day, first:], energy_kwh, start))
    assert rest.charge_kw.shape == (core.steps_per_episode - first, DEFAULT.n_agents)
    rest_of_whole = _costs_from_step(core, whole, first)
    assert rest.cost == pytest.approx(rest_of_whole, rel=1e-6)


def _costs_from_step(core: CommunityCore, schedule, first: int) -> float:
    """The cost of playing ``schedule`` counted from step ``first`` on."""
    policy = OptimalPolicy()
    policy.remember(core.config, {schedule.day: schedule})
    infos = rollout(CommunityCore(core.config), policy, np.array([schedule.day]))
    return float(infos["cost"][0, first:].sum())


def test_mpc_plans_on_a_forecast_file(tmp_path, test_days):
    """A file of perfect forecasts makes MPC the optimum; a file of zeros (no load, no PV foreseen) costs more."""
    profiles = synthetic_profiles(4, 0.5, n_days=5, prosumer_share=1.0, seed=2)
    data, perfect, blind = (tmp_path / name for name in ("data.csv", "perfect.csv", "blind.csv"))
    write_profile_csv(data, profiles)
    write_profile_csv(perfect, profiles)
    write_profile_csv(blind, dataclasses.replace(profiles, load_kw=0 * profiles.load_kw, pv_kw=0 * profiles.pv_kw))
    env = EnvConfig(n_agents=4, data_csv=str(data))
    day = np.array([3])
    costs = {}
    for name, path in (("perfect", perfect), ("blind", blind)):
        costs[name] = _costs(env.replace(forecaster="file", forecast_csv=str(path)), MPCPolicy("file"), day)
    optimum = _costs(env, OptimalPolicy(), day)
    np.testing.assert_allclose(costs["perfect"], optimum, rtol=1e-6)
    assert costs["blind"][0] > optimum[0] + 1e-3


def test_a_dispatch_problem_that_does_not_fit_the_core_is_refused():
    core = CommunityCore(DEFAULT)
    problem = DispatchProblem.whole_day(core, 3)
    with pytest.raises(ValueError, match=r"first_step must lie in \[0, 47\], got 48"):
        solve_dispatch(core, dataclasses.replace(problem, first_step=48))
    with pytest.raises(ValueError, match=r"load_kw must have shape \(38, 10\) \(the steps from first_step=10"):
        solve_dispatch(core, dataclasses.replace(problem, first_step=10))
    with pytest.raises(ValueError, match=r"forecast_settings take forecast_\* keys of EnvConfig only"):
        MPCPolicy("noisy", forecast_settings={"battery_kwh": 20.0})


def test_mpc_file_needs_the_file_forecaster():
    with pytest.raises(ConfigError, match=r"methods lists mpc_file, which plans on the forecasts of "
                                          r"env.forecast_csv, but env.forecaster='persistence'"):
        EvaluateConfig(methods=["grid_only", "mpc_file"])
    with pytest.raises(ValueError, match=r"unknown forecaster 'tomorrow'"):
        MPCPolicy("tomorrow")
