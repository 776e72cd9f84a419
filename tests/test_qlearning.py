"""Tabular Q-learning: the discretisation, the averaged table update, the day's end, checkpoints, validation."""

from __future__ import annotations

import re

import numpy as np
import pytest

from p2p_marl.algos.qlearning import QLearning, QLearningConfig
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import OBS_FEATURES, CommunityCore

TINY_ENV = EnvConfig(n_agents=3, max_cycles=8, n_days=20)


def split_state(state: np.ndarray, config: QLearningConfig) -> tuple[np.ndarray, ...]:
    """(time_bin, soc_bin, net_bin, has_battery) of state indices, inverting the documented layout."""
    n_soc, n_net = len(config.soc_edges) + 1, len(config.net_load_edges_kw) + 1
    has_battery = state % 2
    net_bin = state // 2 % n_net
    soc_bin = state // (2 * n_net) % n_soc
    time_bin = state // (2 * n_net * n_soc)
    return time_bin, soc_bin, net_bin, has_battery


@pytest.mark.parametrize("n_time_bins", [24, 48, 7])
def test_time_bin_follows_the_clock(n_time_bins):
    config = QLearningConfig(n_time_bins=n_time_bins)
    learner = QLearning(EnvConfig(n_agents=3, n_days=20), config, seed=0)
    core = learner.core
    obs, steps = core.reset(), []
    while not core.done:
        steps.append((core.t, split_state(learner.q.encode(core, obs), config)[0]))
        obs, *_ = core.step(np.zeros((core.batch_size, 3, 3)))
    for t, time_bin in steps:
        assert (time_bin == t * n_time_bins // 48).all(), t


def test_soc_net_load_and_battery_bins():
    config = QLearningConfig()
    learner = QLearning(TINY_ENV, config, seed=0)
    core = learner.core
    obs = np.zeros((1, 4, len(OBS_FEATURES)))
    obs[..., OBS_FEATURES.index("time_cos")] = 1.0  # midnight
    obs[..., OBS_FEATURES.index("soc")] = [0.1, 0.5, 0.95, 0.0]
    obs[..., OBS_FEATURES.index("has_battery")] = [1, 1, 1, 0]
    net_load_kw = np.array([-3.0, -0.3, 0.05, 1.0])
    obs[..., OBS_FEATURES.index("load")] = np.maximum(net_load_kw, 0) / core.power_scale_kw
    obs[..., OBS_FEATURES.index("pv")] = np.maximum(-net_load_kw, 0) / core.power_scale_kw
    time_bin, soc_bin, net_bin, has_battery = split_state(learner.q.encode(core, obs), config)
    assert time_bin.tolist() == [[0, 0, 0, 0]]
    assert soc_bin.tolist() == [[0, 2, 4, 0]]  # edges 0.2, 0.4, 0.6, 0.8
    assert net_bin.tolist() == [[0, 2, 3, 5]]  # edges -2, -0.5, -0.1, 0.1, 0.5, 2 kW
    assert has_battery.tolist() == [[1, 1, 1, 0]]


def test_update_averages_each_entrys_td_errors_and_stops_at_the_days_end():
    config = QLearningConfig(learning_rate=0.5, gamma=0.9)
    learner = QLearning(TINY_ENV, config, seed=0)
    values, visits = learner.q.values, learner.q.visits
    # Next state 7 has been visited in action 2 only: its value is that entry, whatever the others hold.
    values[7, :] = 100.0
    values[7, 2], visits[7, 2] = -1.0, 1
    x = np.array([[3, 3, 5]])  # two households in state 3, one in state 5
    actions = np.array([[1, 1, 0]])
    reward = np.array([[-1.0, -3.0, -2.0]])
    next_x = np.array([[7, 7, 7]])

    learner.learn(x, actions, reward, next_x, terminal=False)
    # Entry (3, 1): the mean of its two targets, (-1 - 0.9) and (-3 - 0.9): a first visit takes the whole step.
    assert values[3, 1] == pytest.approx(-2.0 - 0.9)
    assert values[5, 0] == pytest.approx(-2.0 - 0.9)
    assert visits[3, 1] == 2 and visits[5, 0] == 1

    learner.learn(x, actions, reward, next_x, terminal=True)
    # At the day's end the target is the reward alone; the second visit of (5, 0) moves it half-way
    # (max(learning_rate, 1 / 2)), the third and fourth of (3, 1) by max(0.5, 2 / 4).
    assert values[5, 0] == pytest.approx(-2.9 + 0.5 * (-2.0 + 2.9))
    assert values[3, 1] == pytest.approx(-2.9 + 0.5 * (-2.0 + 2.9))
    assert visits[3, 1] == 4 and visits[5, 0] == 2


def test_early_visits_average_their_targets_then_the_step_is_the_learning_rate():
    learner = QLearning(TINY_ENV, QLearningConfig(learning_rate=0.1), seed=0)
    targets = [-4.0, -2.0, -3.0, -5.0] + [-1.0] * 30
    for k, target in enumerate(targets, start=1):
        learner.learn(np.array([[2]]), np.array([[0]]), np.array([[target]]), np.array([[2]]), terminal=True)
        if k <= 10:  # 1 / k >= 0.1: the running mean of the targets so far
            assert learner.q.values[2, 0] == pytest.approx(np.mean(targets[:k]))
    mean_of_ten = np.mean(targets[:10])
    assert learner.q.values[2, 0] == pytest.approx(-1.0 + (mean_of_ten + 1.0) * 0.9 ** 24)


def test_untried_actions_are_never_greedy():
    learner = QLearning(TINY_ENV, QLearningConfig(), seed=0)
    learner.q.values[4, :] = 5.0
    learner.q.values[4, 3], learner.q.visits[4, 3] = -2.0, 3
    assert learner.q.q_values(np.array([4])).argmax(axis=-1).tolist() == [3]


def test_training_and_a_checkpoint_round_trip_continue_identically():
    config = QLearningConfig(num_envs=4, epsilon_decay_steps=200)
    uninterrupted = QLearning(TINY_ENV, config, seed=3)
    metrics = [uninterrupted.iterate() for _ in range(4)]
    first = QLearning(TINY_ENV, config, seed=3)
    first_metrics = [first.iterate() for _ in range(2)]
    resumed = QLearning(TINY_ENV, config, seed=99)  # the state, not the seed, decides what follows
    resumed.load_state_dict(first.state_dict())
    assert first_metrics + [resumed.iterate() for _ in range(2)] == metrics
    np.testing.assert_array_equal(resumed.q.values, uninterrupted.q.values)
    assert resumed.env_steps == uninterrupted.env_steps == 4 * 4 * 8
    assert metrics[-1]["exploration"] < metrics[0]["exploration"]


def test_greedy_policy_is_a_frozen_copy():
    learner = QLearning(TINY_ENV, QLearningConfig(num_envs=2), seed=0)
    learner.iterate()
    policy = learner.policy()
    frozen = policy.q_function.values.copy()
    learner.iterate()
    np.testing.assert_array_equal(policy.q_function.values, frozen)
    core = CommunityCore(TINY_ENV, batch_size=2)
    obs = core.reset(days=core.test_days[:2])
    assert policy.act(core, obs).shape == (2, 3, 3)


@pytest.mark.parametrize("changes, message", [
    ({"learning_rate": -0.1}, "qlearning.learning_rate=-0.1 is out of range; allowed (0.0, 1.0]"),
    ({"gamma": 1.5}, "qlearning.gamma=1.5 is out of range"),
    ({"num_envs": 2.5}, "qlearning.num_envs must be an integer"),
    ({"epsilon_start": 0.1, "epsilon_end": 0.2}, "qlearning.epsilon_end=0.2 must not exceed"),
    ({"soc_edges": [0.5, 0.2]}, "qlearning.soc_edges must be a list of strictly increasing"),
    ({"name": "dqn"}, "qlearning.name must be 'qlearning'"),
    ({"n_price_levels": 0}, "qlearning.n_price_levels=0 is out of range; allowed [1, 101]"),
    ({"follow_net_load_action": "yes"}, "qlearning.follow_net_load_action must be true or false"),
])
def test_bad_hyperparameters_name_the_key(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        QLearningConfig(**changes)
