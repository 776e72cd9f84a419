"""MADDPG on tiny communities: metrics, replay, config checks and learning (the Learner contract it shares with
MAPPO, i.e. policy, determinism, resume and YAML, is in test_deep_learners.py)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from p2p_marl.algos.maddpg import MADDPG, DayReplay, MADDPGConfig
from p2p_marl.baselines.optimal import OptimalPolicy
from p2p_marl.baselines.rules import GridOnly
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.sim.community import CommunityCore

TINY = EnvConfig(n_agents=3, n_days=8, dt_h=2.0, max_cycles=4)
SMALL = MADDPGConfig(num_envs=4, buffer_days=16, batch_size=8, gradient_steps=3, learning_starts=20,
                     hidden_sizes=[16, 16], n_step=2, policy_delay=2, target_noise_std=0.2, noise_correlation=0.5)
METRICS = ("episode_return", "community_cost", "critic_loss", "actor_loss", "q_value", "exploration",
           "buffer_days", "steps_per_second", "learning_rate_scale")


@pytest.mark.parametrize("changes", [{"actor_agent_id": False, "critic_agent_id": False}, {},
                                     {"actor_others_current": True, "actor_joint_gradient": True,
                                      "actor_q_normalised": True}])
def test_iterate_logs_finite_metrics_once_learning_starts(changes):
    learner = MADDPG(TINY, dataclasses.replace(SMALL, **changes), seed=0)
    warm_up = learner.iterate()  # 4 communities x 4 steps < learning_starts: random actions, no update
    assert math.isnan(warm_up["critic_loss"]) and warm_up["buffer_days"] == 4
    actor_before = [p.detach().clone() for p in learner.actor.parameters()]
    metrics = learner.iterate()
    assert set(METRICS) <= set(metrics)
    assert all(math.isfinite(value) for value in metrics.values()), metrics
    assert learner.env_steps == 2 * SMALL.num_envs * TINY.steps_per_episode
    assert learner.updates == SMALL.gradient_steps
    # policy_delay=2: the second of the three updates stepped the actor, to finite weights
    assert any(not torch.equal(p, before) for p, before in zip(learner.actor.parameters(), actor_before))
    assert all(torch.isfinite(p).all() for p in learner.actor.parameters())


@pytest.mark.parametrize("agent_id", [False, True])
def test_critic_in_parts_is_the_critic_on_each_agents_whole_input(agent_id):
    """The critic's first layer is evaluated in parts (the shared observations once per community-step); it must
    be the same function as the network on each agent's concatenated input (o_i, a_i, o_1..o_N, a_1..a_N
    [, one-hot i]), for the value targets' shared action profile and the actor's per-agent ones alike."""
    learner = MADDPG(TINY, dataclasses.replace(SMALL, critic_agent_id=agent_id), seed=0)
    generator = torch.Generator().manual_seed(0)
    n_samples, n_agents = 5, TINY.n_agents
    obs = torch.rand(n_samples, n_agents, learner.core.obs_dim, generator=generator)

    def whole_input(joint: torch.Tensor) -> torch.Tensor:
        identity = torch.eye(n_agents)
        return torch.stack([torch.cat([obs[:, i], joint[:, i, i], obs.flatten(1), joint[:, i].flatten(1),
                                       *([identity[i].expand(n_samples, -1)] if agent_id else [])], dim=1)
                            for i in range(n_agents)], dim=1)

    per_agent_profiles = 2.0 * torch.rand(n_samples, n_agents, n_agents, 3, generator=generator) - 1.0
    shared_profile = per_agent_profiles[:, :1].expand(-1, n_agents, -1, -1)
    with torch.no_grad():
        for joint in (per_agent_profiles, shared_profile):
            np.testing.assert_allclose(learner._q(learner.critic, obs, joint),
                                       learner.critic(whole_input(joint)).squeeze(-1), rtol=1e-5, atol=1e-6)


def test_replay_keeps_the_newest_days_and_sums_n_step_rewards():
    replay = DayReplay(capacity_days=3, steps=4, n_agents=2, obs_dim=1)
    for first_day in (0, 2):  # five days into room for three: days 2, 3, 4 stay
        days = np.arange(first_day, first_day + 2 + (first_day == 2))
        obs = np.broadcast_to((days[None, :] * 10 + np.arange(5)[:, None])[..., None, None], (5, len(days), 2, 1))
        rewards = np.broadcast_to(np.arange(1.0, 5.0)[:, None, None], (4, len(days), 2))
        replay.add(obs, np.zeros((4, len(days), 2, 3)), rewards)
    assert replay.size == 3 and sorted(replay.obs[:, 0, 0, 0] // 10) == [2, 3, 4]
    obs, _, reward, later, terminal = replay.sample(256, np.random.default_rng(0), n_step=3, gamma=0.5)
    step = obs[:, 0, 0] % 10
    # rewards are step + 1: e.g. from step 1, 2 + 0.5 * 3 + 0.25 * 4; from step 3 only 4 (the day ends)
    expected = {0: 1 + 0.5 * 2 + 0.25 * 3, 1: 2 + 0.5 * 3 + 0.25 * 4, 2: 3 + 0.5 * 4, 3: 4.0}
    np.testing.assert_allclose(reward[:, 0], [expected[s] for s in step])
    np.testing.assert_array_equal(later[:, 0, 0] % 10, np.minimum(step + 3, 4))
    np.testing.assert_array_equal(terminal, step + 3 >= 4)
    assert set(step) == {0, 1, 2, 3}


def test_load_rejects_a_buffer_of_another_shape():
    state = MADDPG(TINY, SMALL, seed=0).state_dict()
    other = MADDPG(TINY, SMALL, seed=0)
    other.replay = DayReplay(SMALL.buffer_days, TINY.steps_per_episode, TINY.n_agents, 5)  # 5 features, not 19
    with pytest.raises(ValueError, match="replay buffer"):
        other.replay.load_state_dict(state["replay"])


@pytest.mark.parametrize("key, value, match", [
    ("num_envs", 0, r"maddpg\.num_envs=0 is out of range; allowed \[1"),
    ("tau", 0.0, r"maddpg\.tau=0\.0 is out of range; allowed \(0\.0"),
    ("batch_size", 2.5, r"maddpg\.batch_size must be an integer"),
    ("noise_correlation", 1.0, r"maddpg\.noise_correlation=1\.0 is out of range"),
    ("lr_end_fraction", 1.5, r"maddpg\.lr_end_fraction=1\.5 is out of range; allowed \[0\.0, 1\.0\]"),
    ("lr_decay_steps", 0, r"maddpg\.lr_decay_steps=0 is out of range; allowed \[1"),
    ("hidden_sizes", [0], r"maddpg\.hidden_sizes must be a non-empty list"),
    ("cooperative_weight", -0.1, r"maddpg\.cooperative_weight must be null or a number in \[0\.0, 1\.0\]"),
    ("critic_agent_id", 1, r"maddpg\.critic_agent_id must be true or false"),
    ("trade_reward", "bill", r"maddpg\.trade_reward must be one of \['price', 'marginal'\], got 'bill'"),
    ("penalty_reward", "total", r"maddpg\.penalty_reward must be one of \['share', 'community'\], got 'total'"),
    ("critic_warmup_iterations", -1, r"maddpg\.critic_warmup_iterations=-1 is out of range; allowed \[0"),
    ("actor_q_normalised", "yes", r"maddpg\.actor_q_normalised must be true or false"),
    ("actor_others_current", 1, r"maddpg\.actor_others_current must be true or false"),
    ("actor_joint_gradient", "no", r"maddpg\.actor_joint_gradient must be true or false"),
    ("actor_joint_gradient", True, r"maddpg\.actor_joint_gradient=true differentiates the other agents' current "
                                   r"actions: it needs maddpg\.actor_others_current=true"),
    ("device", "gpu", r"maddpg\.device must be 'cpu'"),
    ("name", "ddpg", r"maddpg\.name must be 'maddpg'"),
])
def test_bad_hyperparameters_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        MADDPGConfig(**{key: value})


def test_a_constant_rate_stays_at_the_configured_rates():
    """(The decay itself is tested with MAPPO's in test_mappo.py.)"""
    learner = MADDPG(TINY, SMALL, seed=0)
    assert learner.iterate()["learning_rate_scale"] == 1.0
    assert learner.actor_optimizer.param_groups[0]["lr"] == SMALL.actor_lr
    assert learner.critic_optimizer.param_groups[0]["lr"] == SMALL.critic_lr


def test_critic_warmup_updates_the_critic_alone_for_its_iterations():
    """During critic_warmup_iterations the actor and its target stay as they started while the critic and its
    target learn; the iteration after them moves the actor."""
    learner = MADDPG(TINY, dataclasses.replace(SMALL, learning_starts=0, critic_warmup_iterations=2), seed=0)

    def snapshot(net: torch.nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in net.parameters()]

    def same(before: list[torch.Tensor], net: torch.nn.Module) -> bool:
        return all(torch.equal(a, b) for a, b in zip(before, net.parameters()))

    nets = (learner.actor, learner.target_actor, learner.critic, learner.target_critic)
    actor, target_actor, critic, target_critic = (snapshot(net) for net in nets)
    for _ in range(2):
        metrics = learner.iterate()
        assert math.isnan(metrics["actor_loss"]) and math.isfinite(metrics["critic_loss"])
    assert same(actor, learner.actor) and same(target_actor, learner.target_actor)
    assert not same(critic, learner.critic) and not same(target_critic, learner.target_critic)
    assert math.isfinite(learner.iterate()["actor_loss"])
    assert not same(actor, learner.actor) and not same(target_actor, learner.target_actor)


def test_the_normalised_q_term_is_the_q_term_over_its_mean_magnitude():
    """TD3+BC's balance: with actor_q_normalised the actor's gradient is the plain Q term's divided by the
    minibatch's mean |Q|, on the same weights and minibatch (no action penalty, no clipping in the way)."""
    config = dataclasses.replace(SMALL, action_l2=0.0, max_grad_norm=1e9)
    gradients, losses = {}, {}
    for normalised in (False, True):
        learner = MADDPG(TINY, dataclasses.replace(config, actor_q_normalised=normalised), seed=0)
        generator = torch.Generator().manual_seed(1)
        n_agents, obs_dim = learner.core.n_agents, learner.core.obs_dim
        obs = torch.rand((8, n_agents, obs_dim), generator=generator)
        joint = (2 * torch.rand((8, 1, n_agents, 3), generator=generator) - 1).expand(-1, n_agents, -1, -1)
        with torch.no_grad():  # Q with each agent's own action from the actor, the others' from the minibatch
            own_action = learner.actor(learner._actor_input(obs)).unsqueeze(1)
            own = torch.eye(n_agents, dtype=torch.bool)[None, :, :, None]
            q = learner._q(learner.critic, obs, torch.where(own, own_action, joint))
        learner.actor_optimizer.step = lambda: None  # keep the gradient, not the step
        stats = {"actor_loss": []}
        learner._update_actor(obs, joint, stats)
        gradients[normalised] = torch.cat([p.grad.flatten() for p in learner.actor.parameters()])
        losses[normalised] = stats["actor_loss"][0]
    assert losses[False] == pytest.approx(-q.mean().item(), rel=1e-5)
    assert losses[True] == pytest.approx(-(q.mean() / q.abs().mean()).item(), rel=1e-5)
    torch.testing.assert_close(gradients[True] * q.abs().mean(), gradients[False], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("joint_gradient", [False, True])
def test_the_others_act_as_the_current_actor_in_its_update_with_actor_others_current(joint_gradient):
    """MAAC's and FACMAC's sampling: the actor's Q term takes every agent's action from the current actor, so the
    replayed actions play no part in its loss or gradient. Without actor_joint_gradient the others' actions are
    not differentiated (each agent ascends its own Q through its own action only), so the gradient is not that of
    the whole joint action; with it (a FACMAC-style centralised policy gradient) it is exactly that."""
    config = dataclasses.replace(SMALL, action_l2=0.0, max_grad_norm=1e9, actor_others_current=True,
                                 actor_joint_gradient=joint_gradient)
    learner = MADDPG(TINY, config, seed=0)
    learner.actor_optimizer.step = lambda: None  # keep the gradient, not the step
    generator = torch.Generator().manual_seed(1)
    n_agents, obs_dim = learner.core.n_agents, learner.core.obs_dim
    obs = torch.rand((8, n_agents, obs_dim), generator=generator)

    def actor_step(joint: torch.Tensor) -> tuple[float, torch.Tensor]:
        stats = {"actor_loss": []}
        learner._update_actor(obs, joint, stats)
        return stats["actor_loss"][0], torch.cat([p.grad.flatten() for p in learner.actor.parameters()])

    replayed = [(2 * torch.rand((8, 1, n_agents, 3), generator=generator) - 1).expand(-1, n_agents, -1, -1)
                for _ in range(2)]
    (loss, gradient), (other_loss, other_gradient) = (actor_step(joint) for joint in replayed)
    current = learner.actor(learner._actor_input(obs)).unsqueeze(1).expand(-1, n_agents, -1, -1)
    with torch.no_grad():
        q = learner._q(learner.critic, obs, current)
    assert loss == other_loss == pytest.approx(-q.mean().item(), rel=1e-5)
    torch.testing.assert_close(gradient, other_gradient)
    learner.actor.zero_grad()
    (-learner._q(learner.critic, obs, current).mean()).backward()  # through every agent's action
    joint_gradient_of_q = torch.cat([p.grad.flatten() for p in learner.actor.parameters()])
    if joint_gradient:
        torch.testing.assert_close(gradient, joint_gradient_of_q)
    else:
        assert not torch.allclose(gradient, joint_gradient_of_q, rtol=1e-3, atol=1e-6)


def _warm_up_rewards(**changes) -> np.ndarray:
    """The replay's rewards after the random warm-up days of seed 0 on the default feeder with ``changes``."""
    learner = MADDPG(EnvConfig(n_agents=6), dataclasses.replace(SMALL, learning_starts=10_000, **changes), 0)
    learner.iterate()
    return learner.replay.rewards[:learner.replay.size]


def test_the_replay_stores_the_training_reward_of_penalty_reward():
    """The same random warm-up days with the penalty as billed and as the community's whole: the replay's rewards
    differ by each household's share less the community's penalty, never higher, lower where the feeder bound."""
    gap = _warm_up_rewards(penalty_reward="community") - _warm_up_rewards(penalty_reward="share")
    assert np.all(gap <= 1e-6) and gap.min() < -1e-4
    assert np.mean(gap == 0.0) > 0.5  # most steps keep the feeder within its limits: nothing to bear there


def test_the_replay_stores_the_training_reward_of_trade_reward():
    """The same random warm-up days with P2P trades valued at the clearing price and at the community's marginal
    price: the replay's rewards differ on steps with P2P trades, and their sum over the households does not."""
    marginal, price = _warm_up_rewards(trade_reward="marginal"), _warm_up_rewards(trade_reward="price")
    assert np.abs(marginal - price).max() > 1e-4
    np.testing.assert_allclose(marginal.sum(axis=-1), price.sum(axis=-1), atol=1e-5)


def test_noise_end_above_start_is_rejected():
    with pytest.raises(ConfigError, match=r"maddpg\.noise_std_end=0\.5 must not exceed noise_std_start=0\.1"):
        MADDPGConfig(noise_std_start=0.1, noise_std_end=0.5)


def test_learns_to_beat_grid_only_on_a_known_day():
    """One winter day of three prosumers (little PV) with a high evening peak price: the untrained policy
    leaves the batteries idle (cost near grid-only); stored energy is settled at the end of the day, so what
    saves is buying cheap night energy for the peak and refilling before midnight. The bar, a quarter of the
    optimal saving, cannot be met without learning to use the batteries (in 80 iterations seeds 0 and 1 reach
    0.55 and 0.45 of it, the time-of-use rule 0.30)."""
    env = EnvConfig(n_agents=3, prosumer_share=1.0, n_days=8, dt_h=2.0, day=0, retail_peak_per_kwh=0.4)
    core = CommunityCore(env, batch_size=1)
    day = np.array([0])
    grid_only = rollout(core, GridOnly(), day)["cost"].sum()
    optimal = rollout(core, OptimalPolicy(), day)["cost"].sum()
    config = MADDPGConfig(num_envs=8, learning_starts=1000, gradient_steps=32, n_step=4, tau=0.02,
                          noise_std_start=0.5, noise_std_end=0.1, noise_decay_steps=20_000)
    learner = MADDPG(env, config, seed=0)
    untrained = rollout(core, learner.policy(), day)["cost"].sum()
    for _ in range(80):
        learner.iterate()
    trained = rollout(core, learner.policy(), day)["cost"].sum()
    bar = grid_only - 0.25 * (grid_only - optimal)
    assert untrained > bar
    assert trained < bar, (grid_only, optimal, untrained, trained)
