"""PettingZoo's and gymnasium's own conformance suites on every view of the environment, and its action checks."""

import re
import types

import gymnasium
import numpy as np
import pettingzoo
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import (api_test, max_cycles_test, parallel_api_test, parallel_seed_test, seed_test,
                             state_test)

import p2p_marl
from p2p_marl.config import EXTRA_FEATURES

SMALL = dict(n_agents=4, n_days=20)


@pytest.mark.parametrize("action_mode", ["continuous", "discrete"])
def test_parallel_api(action_mode):
    parallel_api_test(p2p_marl.parallel_env(action_mode=action_mode, **SMALL), num_cycles=60)


ONE_NUMBER = [name for name in EXTRA_FEATURES if name != "community_window"]  # one observed number each


@pytest.mark.parametrize("observed, more", [({"forecast_bins": 12}, 24),
                                             ({"extra_features": ONE_NUMBER}, len(ONE_NUMBER)),
                                             ({"forecast_bins": 4, "extra_features": list(EXTRA_FEATURES)},
                                              8 + len(ONE_NUMBER) + 8)])
def test_parallel_api_with_more_observed_features(observed, more):
    """forecast_bins adds observation and state features, extra_features observation features: the spaces grow
    with them."""
    env = p2p_marl.parallel_env(**observed, **SMALL)
    assert env.observation_space("prosumer_0").shape == (19 + more,)
    parallel_api_test(env, num_cycles=60)
    env.reset(seed=0)
    assert env.state_space.contains(env.state())
    central = gymnasium.make(p2p_marl.GYMNASIUM_ID, **observed, **SMALL)
    check_env(central.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("action_mode", ["continuous", "discrete"])
def test_aec_api(action_mode):
    api_test(p2p_marl.env(action_mode=action_mode, **SMALL), num_cycles=60)


def test_parallel_seed():
    parallel_seed_test(lambda: p2p_marl.parallel_env(**SMALL), num_cycles=60)


def test_aec_seed():
    seed_test(lambda: p2p_marl.env(**SMALL), num_cycles=60)


def test_max_cycles():
    module = types.ModuleType("p2p_small")
    module.parallel_env = lambda max_cycles: p2p_marl.parallel_env(max_cycles=max_cycles, **SMALL)
    module.env = lambda max_cycles: p2p_marl.env(max_cycles=max_cycles, **SMALL)
    max_cycles_test(module)


def test_state():
    env = p2p_marl.parallel_env(**SMALL)
    env.reset(seed=0)
    assert env.state_space.contains(env.state())
    state_test(p2p_marl.env(**SMALL), env)


def test_registries():
    par = pettingzoo.make("parallel", p2p_marl.PETTINGZOO_ID, n_agents=3, n_days=10)
    obs, _ = par.reset(seed=1)
    assert set(obs) == {"prosumer_0", "prosumer_1", "prosumer_2"}
    aec = pettingzoo.make("aec", p2p_marl.PETTINGZOO_ID, n_agents=3, n_days=10)
    aec.reset(seed=1)
    assert aec.agent_selection == "prosumer_0"
    central = gymnasium.make(p2p_marl.GYMNASIUM_ID, n_agents=3, n_days=10)
    obs, _ = central.reset(seed=1)
    assert obs.shape == (3 * len(p2p_marl.sim.OBS_FEATURES),)


def test_gymnasium_central_env_checker():
    check_env(p2p_marl.CommunityCentralEnv(**SMALL), skip_render_check=True)


def test_gymnasium_vector_entry_point_matches_core():
    vec = gymnasium.make_vec(p2p_marl.GYMNASIUM_ID, num_envs=8, vectorization_mode="vector_entry_point", **SMALL)
    obs, _ = vec.reset(seed=3)
    assert obs.shape == (8, 4 * len(p2p_marl.sim.OBS_FEATURES))
    assert vec.observation_space.contains(obs)
    vec.action_space.seed(0)
    steps = vec.unwrapped.config.steps_per_episode
    for t in range(steps):
        obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
        assert reward.shape == (8,) and not terminated.any()
        assert np.allclose(reward, -info["cost"].sum(axis=1))
        assert truncated.all() == (t == steps - 1)
    obs, reward, terminated, truncated, _ = vec.step(vec.action_space.sample())  # next-step autoreset
    assert np.all(reward == 0) and not truncated.any()
    assert vec.observation_space.contains(obs)


def test_infos_carry_documented_keys():
    env = p2p_marl.parallel_env(**SMALL)
    env.reset(seed=0)
    actions = {a: env.action_space(a).sample() for a in env.agents}
    _, rewards, _, _, infos = env.step(actions)
    required = {"load_kwh", "pv_kwh", "battery_charge_kwh", "battery_discharge_kwh", "soc", "bid_price",
                "p2p_buy_kwh", "p2p_sell_kwh", "grid_import_kwh", "grid_export_kwh", "clearing_price", "cost",
                "voltage_pu", "penalty"}
    for agent, info in infos.items():
        assert required <= set(info)
        assert all(isinstance(v, float) and np.isfinite(v) for v in info.values())
        assert 0.0 <= info["soc"] <= 1.0
        assert rewards[agent] == pytest.approx(-info["cost"])



def valid_actions(env) -> dict[str, np.ndarray]:
    return {agent: env.action_space(agent).sample() for agent in env.agents}


@pytest.mark.parametrize("malformed, got", [
    (lambda dim: np.zeros(dim + 1), r"shape \(\d+,\)"),
    (lambda dim: 0.5, r"shape \(\)"),
    (lambda dim: np.zeros((1, dim)), r"shape \(1, \d+\)"),
])
def test_a_malformed_action_names_its_agent(malformed, got):
    env = p2p_marl.parallel_env(n_agents=3)
    env.reset(seed=0)
    dim = env.action_space("prosumer_1").shape[0]
    actions = valid_actions(env)
    actions["prosumer_1"] = malformed(dim)
    with pytest.raises(ValueError, match=rf"^action of prosumer_1 must hold {dim} numbers .*got {got}"):
        env.step(actions)


@pytest.mark.parametrize("not_real, got", [
    (lambda action: ["charge", *action[1:]], r"\['charge'"),
    (lambda action: [str(value) for value in action], r"\['"),  # digits in strings are not parsed
    (lambda action: np.asarray(action) + 1j, r"\[.*j.* of dtype complex"),  # nor is the imaginary part dropped
    (lambda action: [action[0], [action[1]], action[2]], r"\["),  # ragged
    (lambda action: [None, *action[1:]], r"\[None"),
    (lambda action: torch.tensor(action, requires_grad=True),
     r"tensor\(.*\) \(Can't call numpy\(\) on Tensor that requires grad")])
def test_an_action_of_anything_but_real_numbers_names_its_agent(not_real, got):
    env = p2p_marl.parallel_env(n_agents=3)
    env.reset(seed=0)
    actions = valid_actions(env)
    actions["prosumer_2"] = not_real(actions["prosumer_2"])
    with pytest.raises(ValueError, match=rf"^action of prosumer_2 must be (a rectangular array of )?real numbers, "
                                         rf"got {got}"):
        env.step(actions)


def test_boolean_integer_and_float32_actions_play_as_the_float64_numbers_they_are():
    played = []
    for dtype in (bool, np.int64, np.float32, np.float64):
        env = p2p_marl.parallel_env(n_agents=3)
        env.reset(seed=0)
        _, rewards, _, _, _ = env.step({agent: np.array([1, 0, 1], dtype=dtype) for agent in env.agents})
        played.append(rewards)
    assert all(rewards == played[-1] for rewards in played)


def test_actions_for_unknown_agents_are_refused():
    env = p2p_marl.parallel_env(n_agents=3)
    env.reset(seed=0)
    actions = valid_actions(env)
    actions["prosumer_3"] = env.action_space("prosumer_0").sample()  # a fourth household that does not exist
    with pytest.raises(ValueError, match=r"actions given for unknown agents \['prosumer_3'\]"):
        env.step(actions)


def test_a_missing_action_or_actions_that_are_not_a_dict_are_refused():
    env = p2p_marl.parallel_env(n_agents=3)
    env.reset(seed=0)
    actions = valid_actions(env)
    del actions["prosumer_1"]
    with pytest.raises(ValueError, match=r"^missing actions for agents \['prosumer_1'\]$"):
        env.step(actions)
    with pytest.raises(ValueError, match=r"^actions must be a dict of agent -> action, got list$"):
        env.step(list(valid_actions(env).values()))


def test_the_other_views_day_option_is_refused():
    """The other view's day key would be ignored (a random day played); each view names the one it takes."""
    parallel = p2p_marl.parallel_env(**SMALL)
    central = gymnasium.make("p2p_marl/CommunityCentral-v0", **SMALL)
    vector = p2p_marl.CommunityCentralVectorEnv(num_envs=2, **SMALL)
    for env, wrong, right in ((parallel, "days", "day"), (central, "days", "day"), (vector, "day", "days")):
        with pytest.raises(ValueError, match=rf"reset option '{wrong}' is not read by this view, which takes "
                                             rf"{{'{right}': ...}}"):
            env.reset(seed=0, options={wrong: [3]})
    assert parallel.reset(seed=0, options={"day": 3})[1]["prosumer_0"]["day"] == 3
    with pytest.raises(ValueError, match=r"days must be a whole day index"):
        parallel.reset(seed=0, options={"day": 3.7})
    assert list(vector.reset(seed=0, options={"days": [3, 4]})[1]["day"]) == [3, 4]


def test_the_central_views_refuse_an_action_of_another_shape():
    """An (3, N) array has the flat action's size; reshaped it would scramble the households' actions."""
    central = gymnasium.make("p2p_marl/CommunityCentral-v0", **SMALL)
    central.reset(seed=0)
    for action in (np.zeros((3, 4)), np.zeros(13)):
        with pytest.raises(ValueError, match=rf"action must have shape \(12,\): .*; got "
                                             rf"{re.escape(str(action.shape))}"):
            central.step(action)
    vector = p2p_marl.CommunityCentralVectorEnv(num_envs=2, **SMALL)
    vector.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(2, 12\): .*; got \(12, 2\)"):
        vector.step(np.zeros((12, 2)))


def test_the_discrete_view_refuses_actions_that_are_not_a_dict():
    env = p2p_marl.parallel_env(action_mode="discrete", **SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"^actions must be a dict of agent -> discrete action, got list$"):
        env.step([3, 3, 3, 3])
