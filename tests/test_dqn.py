"""DQN with parameter sharing: replay buffer, the day's end as terminal, the TD fixed point, agent ids,
checkpoints, validation."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_marl.algos.dqn import DQN, DQNConfig, ReplayBuffer
from p2p_marl.algos.qlearning import QLearning, QLearningConfig
from p2p_marl.baselines.rules import SelfConsumption
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.envs import discrete_action_table
from p2p_marl.sim.community import ACTION_HIGH, ACTION_LOW, CommunityCore
from p2p_marl.training.value_based import ActionGrid

TINY_ENV = EnvConfig(n_agents=3, max_cycles=8, n_days=20)
SMALL = {"num_envs": 4, "batch_size": 32, "buffer_size": 4000, "hidden_sizes": [16, 16]}


def test_replay_buffer_wraps_around_and_round_trips():
    buffer = ReplayBuffer(capacity=5, in_dim=2, device=torch.device("cpu"))

    def add(first: int, count: int, terminal: bool) -> None:
        ids = torch.arange(first, first + count, dtype=torch.float32)
        buffer.add(torch.stack([ids, -ids], dim=1), ids.long(), ids, ids[:, None].repeat(1, 2), terminal)

    add(0, 3, terminal=False)
    add(3, 4, terminal=True)
    assert (buffer.size, buffer.position) == (5, 2)
    assert buffer.reward.tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]  # 0 and 1 overwritten by 5 and 6
    assert buffer.terminal.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    x, action, reward, next_x, terminal = buffer.sample(64, np.random.default_rng(0))
    assert set(reward.tolist()) == {2.0, 3.0, 4.0, 5.0, 6.0}
    assert torch.equal(x[:, 0], reward) and torch.equal(action, reward.long())

    copy = ReplayBuffer(capacity=5, in_dim=2, device=torch.device("cpu"))
    copy.load_state_dict(buffer.state_dict())
    assert (copy.size, copy.position) == (5, 2) and torch.equal(copy.x, buffer.x)
    with pytest.raises(ValueError, match="does not fit"):
        ReplayBuffer(capacity=3, in_dim=2, device=torch.device("cpu")).load_state_dict(buffer.state_dict())


def test_each_value_based_learner_acts_on_its_own_grid_not_the_environments():
    env = EnvConfig(n_agents=3, max_cycles=8, n_days=20, n_price_levels=2, n_curtail_levels=3)
    core = CommunityCore(env, batch_size=2)
    obs = core.reset(days=core.test_days[:2])
    fixed = {"follow_net_load_action": False}
    learners = {(13, 3, 2): DQN(env, DQNConfig(**SMALL, **fixed), seed=0),
                (4, 1, 2): DQN(env, DQNConfig(**SMALL, **fixed, n_battery_levels=4, n_price_levels=1), seed=0),
                (5, 1, 1): QLearning(env, QLearningConfig(follow_net_load_action=False), seed=0)}
    for levels, learner in learners.items():
        table = discrete_action_table(*levels)
        np.testing.assert_array_equal(learner.action_grid.table, table)
        assert learner.n_actions == len(table)
        actions = learner.policy().act(core, obs).reshape(-1, 1, 3)
        assert (actions == table[None]).all(axis=-1).any(axis=-1).all()  # every action is a row of the table


@pytest.mark.parametrize("learner, n_actions", [
    # the defaults: 13 battery levels x 3 prices x 2 curtailments, and the net-load level x 3 x 2
    (lambda: DQN(TINY_ENV, DQNConfig(**SMALL, learning_starts=0), seed=0), 78 + 6),
    (lambda: QLearning(TINY_ENV, QLearningConfig(num_envs=4), seed=0), 5 + 1),
])
def test_both_learners_train_and_act_with_the_follow_net_load_action(learner, n_actions):
    learner = learner()
    assert learner.n_actions == n_actions
    assert np.isfinite(learner.iterate()["community_cost"])
    core = CommunityCore(TINY_ENV, batch_size=2)
    obs = core.reset(days=core.test_days[:2])
    actions = learner.policy().act(core, obs)
    assert actions.shape == (2, 3, 3) and ((actions >= ACTION_LOW) & (actions <= ACTION_HIGH)).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_price_levels=st.integers(1, 3), n_curtail_levels=st.integers(1, 2))
def test_the_follow_net_load_action_is_the_self_consumption_rules_battery(seed, n_price_levels, n_curtail_levels):
    core = CommunityCore(EnvConfig(n_agents=4, max_cycles=8, n_days=20), batch_size=3)
    rng = np.random.default_rng(seed)
    core.reset(days=core.test_days[:3])
    for _ in range(rng.integers(8)):  # some step of the day, with a battery state of its own
        core.step(rng.uniform(ACTION_LOW, ACTION_HIGH, (3, 4, 3)))
    obs = core.observe()
    grid = ActionGrid(5, n_price_levels, n_curtail_levels, follow_net_load=True)
    fixed = discrete_action_table(5, n_price_levels, n_curtail_levels)
    assert len(grid) == len(fixed) + n_price_levels * n_curtail_levels
    indices = rng.integers(len(grid), size=(3, 4))
    actions = grid.actions(core, obs, indices)
    follows = indices >= len(fixed)
    rule = SelfConsumption().act(core, obs)
    np.testing.assert_array_equal(actions[..., 0][follows], rule[..., 0][follows])
    np.testing.assert_array_equal(actions[~follows], fixed[indices[~follows]])
    # The following actions keep the price and curtailment levels of the fixed grid, in its order.
    np.testing.assert_array_equal(actions[..., 1:][follows], fixed[indices[follows] - len(fixed)][:, 1:])


def test_only_the_last_step_of_the_day_is_terminal():
    learner = DQN(TINY_ENV, DQNConfig(**SMALL, learning_starts=10**6), seed=0)
    learner.iterate()
    households_per_step = 4 * 3
    assert learner.buffer.size == 8 * households_per_step
    terminal = learner.buffer.terminal[:learner.buffer.size].reshape(8, households_per_step)
    assert terminal[:-1].sum() == 0 and terminal[-1].all()


@pytest.mark.parametrize("terminal, expected_q", [(True, 1.0), (False, 1.0 / (1.0 - 0.5))])
def test_td_target_bootstraps_except_at_the_days_end(terminal, expected_q):
    """Reward 1 in a state that leads to itself: Q = 1 if the step ends the day, else 1 / (1 - gamma)."""
    learner = DQN(TINY_ENV, DQNConfig(**SMALL, gamma=0.5, learning_rate=0.01, learning_starts=0,
                                      target_update_interval=1), seed=0)
    n_actions = learner.n_actions
    # n_actions "communities" of one household, all with the same input, each taking another action.
    x = torch.rand(1, 1, learner.core.obs_dim, generator=torch.Generator().manual_seed(0)).expand(n_actions, 1, -1)
    actions = np.arange(n_actions).reshape(-1, 1)
    for _ in range(400):
        learner.learn(x, actions, np.ones((n_actions, 1)), x, terminal)
    q = learner.q(x[0]).detach()
    assert q.numpy() == pytest.approx(np.full((1, n_actions), expected_q), abs=0.05)


def test_agent_id_input_fits_only_the_trained_community_size():
    learner = DQN(TINY_ENV, DQNConfig(**SMALL, agent_id_input=True), seed=0)
    assert learner.q.net[0].in_features == learner.core.obs_dim + 3
    policy = learner.policy()
    core = CommunityCore(TINY_ENV, batch_size=2)
    assert policy.act(core, core.reset(days=core.test_days[:2])).shape == (2, 3, 3)
    bigger = CommunityCore(TINY_ENV.replace(n_agents=4), batch_size=1)
    with pytest.raises(ValueError, match="trained with agent_id_input for 3 households"):
        policy.act(bigger, bigger.reset())


def test_training_and_a_checkpoint_round_trip_continue_identically():
    config = DQNConfig(**SMALL, learning_starts=32, target_update_interval=5, epsilon_decay_steps=100)
    uninterrupted = DQN(TINY_ENV, config, seed=1)
    metrics = [uninterrupted.iterate() for _ in range(4)]
    first = DQN(TINY_ENV, config, seed=1)
    first_metrics = [first.iterate() for _ in range(2)]
    resumed = DQN(TINY_ENV, config, seed=7)
    resumed.load_state_dict(first.state_dict())
    assert first_metrics + [resumed.iterate() for _ in range(2)] == metrics
    for resumed_param, param in zip(resumed.q.parameters(), uninterrupted.q.parameters()):
        assert torch.equal(resumed_param, param)
    assert "td_loss" in metrics[-1] and np.isfinite(metrics[-1]["td_loss"])


def test_greedy_policy_is_a_frozen_copy():
    learner = DQN(TINY_ENV, DQNConfig(**SMALL, learning_starts=0), seed=0)
    policy = learner.policy()
    core = CommunityCore(TINY_ENV, batch_size=2)
    obs = core.reset(days=core.test_days[:2])
    before = policy.q_function.q_values(policy.q_function.encode(core, obs))
    learner.iterate()
    np.testing.assert_array_equal(policy.q_function.q_values(policy.q_function.encode(core, obs)), before)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), gamma=st.floats(0.5, 1.0))
def test_double_q_values_the_online_networks_choice_with_the_target_network(seed, gamma):
    plain = DQN(TINY_ENV, DQNConfig(**SMALL, gamma=gamma), seed=0)
    double = DQN(TINY_ENV, DQNConfig(**SMALL, gamma=gamma, double_q=True), seed=0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a target network that differs from the online one, as between two target updates
        for learner in (plain, double):
            for param in learner.target.parameters():
                param.add_(0.5 * torch.randn(param.shape, generator=generator))
        double.target.load_state_dict(plain.target.state_dict())
    in_dim = plain.buffer.x.shape[1]
    next_x = torch.rand((64, in_dim), generator=generator) * 2.0 - 1.0
    reward = torch.randn(64, generator=generator)
    terminal = (torch.rand(64, generator=generator) < 0.2).float()

    online_q, target_q = double.q(next_x).detach(), double.target(next_x).detach()
    chosen = online_q.argmax(dim=1)
    expected_double = reward + gamma * (1.0 - terminal) * target_q[torch.arange(64), chosen]
    expected_plain = reward + gamma * (1.0 - terminal) * target_q.max(dim=1).values
    torch.testing.assert_close(double.td_target(reward, next_x, terminal), expected_double)
    torch.testing.assert_close(plain.td_target(reward, next_x, terminal), expected_plain)
    # The target network's own maximum bounds its value of any choice: Double DQN never targets higher.
    assert (double.td_target(reward, next_x, terminal) <= plain.td_target(reward, next_x, terminal) + 1e-6).all()
    assert torch.equal(double.td_target(reward, next_x, torch.ones(64)), reward)  # the day's end: reward alone


@settings(max_examples=30, deadline=None)
@given(n_step=st.integers(1, 6), day_steps=st.integers(1, 8), gamma=st.floats(0.0, 1.0), seed=st.integers(0, 2**31))
def test_n_step_transitions_sum_the_next_rewards_and_end_with_the_day(n_step, day_steps, gamma, seed):
    learner = DQN(TINY_ENV, DQNConfig(**SMALL, gamma=gamma, n_step=n_step, learning_starts=10**9), seed=0)
    rng = np.random.default_rng(seed)
    households, in_dim = 4, learner.buffer.x.shape[1]
    inputs = torch.as_tensor(rng.uniform(-1, 1, (day_steps + 1, 1, households, in_dim)), dtype=torch.float32)
    actions = rng.integers(learner.n_actions, size=(day_steps, 1, households))
    rewards = rng.normal(size=(day_steps, 1, households))
    for t in range(day_steps):
        learner.learn(inputs[t], actions[t], rewards[t], inputs[t + 1], terminal=t == day_steps - 1)

    buffer = learner.buffer
    assert buffer.size == day_steps * households  # one transition per step and household, none left pending
    for t in range(day_steps):
        rows = slice(t * households, (t + 1) * households)
        end = min(t + n_step, day_steps)  # the return stops at the day's end: then terminal, no bootstrap
        expected = sum(gamma ** (k - t) * rewards[k, 0] for k in range(t, end))
        np.testing.assert_allclose(buffer.reward[rows].numpy(), expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(buffer.x[rows], inputs[t, 0]) and buffer.action[rows].tolist() == actions[t, 0].tolist()
        assert torch.equal(buffer.next_x[rows], inputs[end, 0])
        assert buffer.terminal[rows].tolist() == [float(t + n_step >= day_steps)] * households
    # The bootstrap discounts by gamma^n_step: the target of a non-terminal transition.
    next_x, reward = buffer.next_x[:households], buffer.reward[:households]
    bootstrap = learner.target(next_x).max(dim=1).values.detach()
    torch.testing.assert_close(learner.td_target(reward, next_x, torch.zeros(households)),
                               reward + gamma ** n_step * bootstrap)


@pytest.mark.parametrize("changes, message", [
    ({"learning_rate": -0.001}, "dqn.learning_rate=-0.001 is out of range; allowed (0.0, 1.0]"),
    ({"tau": 0.0}, "dqn.tau=0.0 is out of range; allowed (0.0, 1.0]"),
    ({"batch_size": 0}, "dqn.batch_size=0 is out of range"),
    ({"hidden_sizes": []}, "dqn.hidden_sizes must be a non-empty list"),
    ({"agent_id_input": "yes"}, "dqn.agent_id_input must be true or false"),
    ({"double_q": "no"}, "dqn.double_q must be true or false"),
    ({"n_step": 0}, "dqn.n_step=0 is out of range; allowed [1, 1000]"),
    ({"epsilon_start": 0.1, "epsilon_end": 0.2}, "dqn.epsilon_end=0.2 must not exceed"),
    ({"n_battery_levels": 1}, "dqn.n_battery_levels=1 is out of range; allowed [2, 101]"),
    ({"n_price_levels": 2.5}, "dqn.n_price_levels must be an integer"),
    ({"follow_net_load_action": 1}, "dqn.follow_net_load_action must be true or false"),
    ({"infeasible_penalty_per_kwh": -1.0}, "dqn.infeasible_penalty_per_kwh=-1.0 is out of range; allowed [0.0, 10"),
    ({"lr_end_fraction": 1.5}, "dqn.lr_end_fraction=1.5 is out of range; allowed [0.0, 1.0]"),
    ({"lr_decay_steps": 0}, "dqn.lr_decay_steps=0 is out of range; allowed [1, 10000000000000]"),
    ({"penalty_reward": "own"}, "dqn.penalty_reward must be one of ['share', 'community'], got 'own'"),
    ({"penalty_weight": 0.0}, "dqn.penalty_weight=0.0 is out of range; allowed (0.0, 1000.0]"),
])
def test_bad_hyperparameters_name_the_key(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        DQNConfig(**changes)


@pytest.mark.parametrize("learner, config", [
    (DQN, DQNConfig(num_envs=4, learning_starts=2, batch_size=8, hidden_sizes=[8])),
    (QLearning, QLearningConfig()),
])
def test_the_infeasible_penalty_lowers_the_training_return_and_leaves_the_play_alone(learner, config):
    """The same seed with and without the penalty plays the same first, mostly random, episode (the same community
    cost) and learns from a lower return: random setpoints run into full or empty batteries."""
    metrics = [learner(TINY_ENV, dataclasses.replace(config, infeasible_penalty_per_kwh=price), seed=0).iterate()
               for price in (0.0, 0.05)]
    assert metrics[1]["community_cost"] == metrics[0]["community_cost"]
    assert metrics[1]["episode_return"] < metrics[0]["episode_return"]


def _replayed_rewards(**changes) -> tuple[np.ndarray, float]:
    """The replay's rewards and the community cost after one mostly random day of seed 0 on the default feeder
    (whose voltage band binds) with ``changes``."""
    learner = DQN(EnvConfig(n_agents=6), DQNConfig(**SMALL, learning_starts=10_000, **changes), seed=0)
    cost = learner.iterate()["community_cost"]
    return learner.buffer.reward[:learner.buffer.size].cpu().numpy(), cost


def test_the_replay_stores_the_training_reward_of_penalty_reward():
    """The same day with the network penalty as billed and as the community's whole: the same play, and rewards
    that differ by each household's share less the community's penalty, never higher, lower where the feeder
    bound; twice the weight takes the community's whole penalty once more, the same from each household."""
    (share, share_cost), (community, community_cost) = (_replayed_rewards(penalty_reward=how)
                                                         for how in ("share", "community"))
    assert community_cost == share_cost
    gap = community - share
    assert np.all(gap <= 1e-6) and gap.min() < -1e-4
    assert np.mean(gap == 0.0) > 0.5  # most steps keep the feeder within its limits: nothing to bear there
    doubled, _ = _replayed_rewards(penalty_reward="community", penalty_weight=2.0)
    assert np.all(doubled <= community + 1e-6) and (doubled < community - 1e-4).any()
    borne = (doubled - community).reshape(-1, 6)  # a row: the six households of one community and step
    np.testing.assert_allclose(borne, borne[:, :1].repeat(6, axis=1), atol=1e-6)


def test_the_learning_rate_decays_linearly_and_a_zero_rate_freezes_the_network():
    """Each gradient step's rate is set from the community-steps taken so far, its own step's included."""
    steps_per_iteration = 4 * TINY_ENV.max_cycles
    config = DQNConfig(**SMALL, learning_starts=8, lr_end_fraction=0.0, lr_decay_steps=2 * steps_per_iteration)
    learner = DQN(TINY_ENV, config, seed=0)
    learner.iterate()  # its last gradient step after 32 of the 64 decay steps
    assert learner.optimizer.param_groups[0]["lr"] == 0.5 * config.learning_rate
    learner.iterate()
    assert learner.optimizer.param_groups[0]["lr"] == 0.0
    before = [p.detach().clone() for p in learner.q.parameters()]
    learner.iterate()
    assert all(torch.equal(a, b) for a, b in zip(before, learner.q.parameters()))
    constant = DQN(TINY_ENV, DQNConfig(**SMALL, learning_starts=8, lr_end_fraction=1.0), seed=0)
    constant.iterate()
    assert constant.optimizer.param_groups[0]["lr"] == constant.config.learning_rate
