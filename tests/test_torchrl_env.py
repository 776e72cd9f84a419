"""The native TorchRL environment (``p2p_marl.integrations.torchrl.P2PTorchRLEnv``) against ``CommunityCore``.

Every rollout here is replayed on a core of the same batch size, reset with the same seed and stepped with the
same actions; observations, rewards, the state and every info entry must equal the core's cast to float32
exactly. Skips when TorchRL is not installed (``pip install -e .[torchrl]``).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torchrl")
import torch  # noqa: E402
from torchrl.envs.utils import check_env_specs, step_mdp  # noqa: E402

from p2p_marl.config import ConfigError, make_config  # noqa: E402
from p2p_marl.envs import discrete_action_table  # noqa: E402
from p2p_marl.integrations.torchrl import GROUP, P2PTorchRLEnv, make_torchrl_env  # noqa: E402
from p2p_marl.sim.community import ACTION_HIGH, ACTION_LOW, INFO_KEYS, OBS_FEATURES, CommunityCore  # noqa: E402

SMALL = dict(n_agents=4, n_days=20)
B = 3
SEED = 7


def f32(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values).astype(np.float32))


def random_actions(n_steps: int, seed: int = 0) -> np.ndarray:
    """(T, B, N, 3) float32 actions in the action box."""
    rng = np.random.default_rng(seed)
    return rng.uniform(ACTION_LOW, ACTION_HIGH, (n_steps, B, SMALL["n_agents"], 3)).astype(np.float32)


def replay_on_core(actions: np.ndarray, seed: int = SEED, **config) -> list[dict]:
    """What the core gives for ``actions`` (T, B, N, 3), resetting (seeded the first time) at each day's end."""
    core = CommunityCore(make_config(**SMALL, **config), batch_size=B)
    obs, steps = core.reset(seed=seed), []
    for action in actions:
        if core.done:
            obs = core.reset()
        days, state = core.days.copy(), core.state()
        next_obs, reward, done, infos = core.step(action.astype(np.float64))
        steps.append(dict(obs=obs, state=state, days=days, next_obs=next_obs, next_state=core.state(),
                          reward=reward, done=done, infos=infos))
        obs = next_obs
    return steps


def assert_rollout_equals_core(td, steps: list[dict]) -> None:
    """``td`` (B, T) from ``env.rollout`` against ``replay_on_core``'s T steps."""
    n = SMALL["n_agents"]
    assert td.batch_size == (B, len(steps))
    for t, want in enumerate(steps):
        got, nxt = td[:, t], td[:, t]["next"]
        assert torch.equal(got[GROUP, "observation"], f32(want["obs"]))
        assert torch.equal(got["state"], f32(want["state"]))
        assert torch.equal(nxt[GROUP, "observation"], f32(want["next_obs"]))
        assert torch.equal(nxt["state"], f32(want["next_state"]))
        assert torch.equal(nxt[GROUP, "reward"], f32(want["reward"])[..., None])
        assert set(nxt[GROUP, "info"].keys()) == {"day", *want["infos"]}  # every key the core reports
        for key in want["infos"]:
            assert torch.equal(nxt[GROUP, "info", key], f32(want["infos"][key])), key
        assert torch.equal(nxt[GROUP, "info", "day"], torch.from_numpy(np.repeat(want["days"][:, None], n, 1)))
        for key in ("done", "terminated"):
            assert (nxt[key] == want["done"]).all() and (nxt[GROUP, key] == want["done"]).all()
        assert not nxt["truncated"].any() and not nxt[GROUP, "truncated"].any()


def replay_policy(actions: torch.Tensor):
    """A rollout policy writing ``actions[t]`` at its t-th call."""
    calls = iter(range(len(actions)))

    def policy(td):
        td[GROUP, "action"] = actions[next(calls)]
        return td

    return policy


@pytest.mark.parametrize("action_mode", ["continuous", "discrete"])
def test_specs_pass_torchrl_checks_and_have_the_multi_agent_layout(action_mode):
    env = make_torchrl_env(action_mode=action_mode, batch_size=B, seed=SEED, **SMALL)
    check_env_specs(env, break_when_any_done="both")
    n, cfg = SMALL["n_agents"], make_config(**SMALL)
    assert env.batch_size == (B,) and env.group_map == {GROUP: [f"prosumer_{i}" for i in range(n)]}
    obs_spec = env.full_observation_spec
    assert obs_spec[GROUP, "observation"].shape == (B, n, len(OBS_FEATURES))
    assert obs_spec[GROUP, "observation"].dtype == torch.float32
    assert obs_spec["state"].shape == (B, env.core.state_dim)
    assert set(obs_spec[GROUP, "info"].keys()) == {"day", *INFO_KEYS}
    assert env.full_reward_spec[GROUP, "reward"].shape == (B, n, 1)
    for key in ("done", "terminated", "truncated"):
        assert env.full_done_spec[key].shape == (B, 1) and env.full_done_spec[GROUP, key].shape == (B, n, 1)
    action = env.full_action_spec[GROUP, "action"]
    if action_mode == "continuous":
        assert action.shape == (B, n, 3)
        assert torch.equal(action.space.low[0, 0], f32(ACTION_LOW))
        assert torch.equal(action.space.high[0, 0], f32(ACTION_HIGH))
    else:
        table = discrete_action_table(cfg.n_battery_levels, cfg.n_price_levels, cfg.n_curtail_levels)
        assert action.shape == (B, n) and action.space.n == len(table)


@pytest.mark.parametrize("config", [{}, {"safety_filter": True, "loss_allocation": "p2p_volume"},
                                    {"shared_battery_kwh": 20.0, "shared_battery_kw": 10.0}])
def test_rollout_equals_the_core_over_two_days_with_the_reset_between(config):
    """With the infos of the safety filter, loss charges and a shared battery where the environment has them."""
    steps = make_config(**SMALL).steps_per_episode
    actions = random_actions(2 * steps)
    env = make_torchrl_env(batch_size=B, seed=SEED, **SMALL, **config)
    td = env.rollout(2 * steps, policy=replay_policy(torch.from_numpy(actions)), break_when_any_done=False)
    want = replay_on_core(actions, **config)
    assert_rollout_equals_core(td, want)
    assert not np.array_equal(want[0]["days"], want[steps]["days"])  # the second day was drawn anew
    assert torch.equal(td[:, 0][GROUP, "info", "day"][:, 0], torch.from_numpy(want[0]["days"]))


def test_step_by_step_equals_the_core_with_discrete_actions_and_a_short_episode():
    config = dict(action_mode="discrete", max_cycles=6)
    cfg = make_config(**SMALL, **config)
    table = discrete_action_table(cfg.n_battery_levels, cfg.n_price_levels, cfg.n_curtail_levels)
    index = np.random.default_rng(1).integers(0, len(table), (cfg.steps_per_episode, B, SMALL["n_agents"]))
    want = replay_on_core(table[index], **config)
    env = make_torchrl_env(batch_size=B, **SMALL, **config)
    td, tds = env.reset(seed=SEED), []
    for t in range(cfg.steps_per_episode):
        td[GROUP, "action"] = torch.from_numpy(index[t])
        td = env.step(td)
        tds.append(td.clone())
        td = step_mdp(td, reward_keys=env.reward_keys, action_keys=env.action_keys, done_keys=env.done_keys)
    assert_rollout_equals_core(torch.stack(tds, dim=1), want)
    assert td["done"].all()


def test_seeding_reproduces_days_and_rollouts():
    def rollout(env, seed=None):
        torch.manual_seed(0)  # rollout(policy=None) draws its random actions from torch's generator
        if seed is not None:
            env.set_seed(seed)
        return env.rollout(10)

    first = rollout(make_torchrl_env(batch_size=B, seed=3, **SMALL))
    env = make_torchrl_env(batch_size=B, **SMALL)
    again = rollout(env, seed=3)
    assert (first == again).all()
    assert (rollout(env, seed=3) == first).all()  # set_seed on a used env starts over
    torch.manual_seed(0)
    assert (env.rollout(10, auto_reset=False, tensordict=env.reset(seed=3)) == first).all()  # reset(seed=)
    other = rollout(env, seed=4)
    assert not torch.equal(other[GROUP, "info", "day"], first[GROUP, "info", "day"])
    # A seed applies to one reset: the next reset continues the seeded sequence, whichever way the seed came.
    seeded = make_torchrl_env(batch_size=B, seed=3, **SMALL)
    seeded.reset(seed=4)
    assert torch.equal(seeded.reset()[GROUP, "info", "day"], env.reset()[GROUP, "info", "day"])


def test_bad_actions_raise_naming_the_agent():
    env = make_torchrl_env(batch_size=B, seed=SEED, **SMALL)
    td = env.reset()
    action = torch.rand(B, SMALL["n_agents"], 3)
    action[1, 2, 0] = float("nan")
    td[GROUP, "action"] = action
    with pytest.raises(ValueError, match=r"agent 2 \(community 1\) is not finite"):
        env.step(td)
    env = make_torchrl_env(batch_size=B, seed=SEED, action_mode="discrete", **SMALL)
    td = env.reset()
    index = torch.zeros(B, SMALL["n_agents"], dtype=torch.int64)
    index[0, 3] = 999
    td[GROUP, "action"] = index
    with pytest.raises(ValueError, match=r"discrete action of agent 3 \(community 0\)"):
        env.step(td)
    for not_an_index in (torch.zeros(B, SMALL["n_agents"]), torch.zeros(B, SMALL["n_agents"], dtype=torch.bool)):
        td[GROUP, "action"] = not_an_index
        with pytest.raises(ValueError, match=r"^discrete actions must be integers in \[0, \d+\], got dtype "):
            env.step(td)


def test_communities_reset_together():
    env = make_torchrl_env(batch_size=B, seed=SEED, **SMALL)
    td = env.reset()
    td["_reset"] = torch.tensor([[True], [False], [True]])
    with pytest.raises(RuntimeError, match="share one clock"):
        env.reset(td)


def test_construction_options():
    env = make_torchrl_env(num_envs=2, info=False, **SMALL)
    assert isinstance(env, P2PTorchRLEnv) and env.batch_size == (2,)
    check_env_specs(env)
    assert "info" not in env.rollout(2)[GROUP].keys()
    assert make_torchrl_env(**SMALL).batch_size == (1,)
    with_profile = make_torchrl_env(num_envs=2, forecast_bins=4, **SMALL)  # the forecast window's shape added
    check_env_specs(with_profile)
    assert with_profile.full_observation_spec[GROUP, "observation"].shape == (2, SMALL["n_agents"],
                                                                               len(OBS_FEATURES) + 8)
    with pytest.raises(ValueError, match="disagree"):
        make_torchrl_env(batch_size=2, num_envs=3, **SMALL)
    with pytest.raises(ValueError, match="batch_size"):
        make_torchrl_env(batch_size=0, **SMALL)
    with pytest.raises(ConfigError, match="n_agent"):
        make_torchrl_env(n_agent=3)
