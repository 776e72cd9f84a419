"""The adapters to other RL stacks against the core, and short training runs through each of them.

Each adapter is built, played for a day with seeded random actions and compared with ``CommunityCore`` given the
same seed and actions: same rewards, and shapes as documented (the native TorchRL environment has its own file,
test_torchrl_env.py). Tests of an optional extra (RLlib, TorchRL,
BenchMARL) skip when it is not installed. The examples in ``examples/`` run here with small arguments.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
import pytest
import yaml
from gymnasium.wrappers.vector import RecordEpisodeStatistics

import p2p_marl
from conftest import load_script
from p2p_marl.config import ConfigError, make_config
from p2p_marl.sim.community import ACTION_HIGH, ACTION_LOW, INFO_KEYS, OBS_FEATURES, CommunityCore

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(n_agents=4, n_days=20)
SEED = 7


def load_example(name: str):
    return load_script(ROOT / "examples" / f"{name}.py", name)


def random_actions(n_steps: int, n_agents: int, seed: int = 0) -> np.ndarray:
    """(T, N, 3) float32 actions in the action box (float32: what every adapter feeds the core)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(ACTION_LOW, ACTION_HIGH, (n_steps, n_agents, len(ACTION_LOW))).astype(np.float32)


def core_day(actions: np.ndarray, seed: int = SEED, **config) -> tuple[np.ndarray, np.ndarray]:
    """Rewards (T, N) and the day played by a one-community core reset with ``seed``."""
    core = CommunityCore(make_config(**config), batch_size=1)
    core.reset(seed=seed)
    rewards = [core.step(actions[t][None].astype(np.float64))[1][0] for t in range(len(actions))]
    return np.array(rewards), core.days


# ----------------------------------------------------------------------------------------- gymnasium vector API
def test_vector_entry_point_steps_like_gymnasium_sync_vector_env():
    """gymnasium 1.2.2 ships no vector-env checker; the reference is its SyncVectorEnv over the single-env view.

    With a fixed day every community replays the same day after each autoreset, so the two must agree on every
    observation, reward and done flag, through two episodes and the next-step autoresets between them.
    """
    kwargs = dict(SMALL, max_cycles=5, day=3)
    vec = gymnasium.make_vec(p2p_marl.GYMNASIUM_ID, num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    sync = gymnasium.make_vec(p2p_marl.GYMNASIUM_ID, num_envs=3, vectorization_mode="sync", **kwargs)
    assert vec.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"]
    assert (vec.observation_space, vec.action_space) == (sync.observation_space, sync.action_space)
    assert (vec.single_observation_space, vec.single_action_space) == (sync.single_observation_space,
                                                                       sync.single_action_space)
    obs_vec, _ = vec.reset(seed=1)
    obs_sync, _ = sync.reset(seed=1)
    np.testing.assert_array_equal(obs_vec, obs_sync)
    vec.action_space.seed(2)
    for _ in range(2 * (5 + 1)):
        action = vec.action_space.sample()
        got, want = vec.step(action), sync.step(action)
        for value_vec, value_sync in zip(got[:4], want[:4]):
            np.testing.assert_array_equal(value_vec, value_sync)
        assert vec.observation_space.contains(got[0])
        if "cost" in want[4]:
            np.testing.assert_array_equal(got[4]["cost"], want[4]["cost"])


def test_vector_env_is_seed_deterministic_and_counts_episodes_with_gymnasium_wrappers():
    def play(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vec = RecordEpisodeStatistics(gymnasium.make_vec(p2p_marl.GYMNASIUM_ID, num_envs=4,
                                                         vectorization_mode="vector_entry_point", **SMALL))
        obs, _ = vec.reset(seed=seed)
        vec.action_space.seed(seed)
        total = np.zeros(4)
        for _ in range(vec.unwrapped.config.steps_per_episode):
            obs, reward, _, truncated, info = vec.step(vec.action_space.sample())
            total += reward
        assert truncated.all() and info["_episode"].all()
        np.testing.assert_allclose(info["episode"]["r"], total)
        return obs, total, vec.unwrapped.core.days

    first, again, other = play(3), play(3), play(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])


# ----------------------------------------------------------------------------------------- stable-baselines3
def test_sb3_ppo_trains_the_central_view_reproducibly():
    example = load_example("sb3_central_ppo")
    args = ["--n-agents", "3", "--n-days", "20", "--timesteps", "192", "--eval-days", "2", "--seed", "1"]
    first = example.main(args)
    assert all(np.isfinite(first))
    assert example.main(args) == first


# ----------------------------------------------------------------------------------------- RLlib
def test_rllib_env_matches_core():
    pytest.importorskip("ray.rllib")
    from p2p_marl.integrations.rllib import make_env

    env = make_env(SMALL)
    agents = [f"prosumer_{i}" for i in range(SMALL["n_agents"])]
    assert sorted(env.observation_space.keys()) == sorted(agents)
    steps = env.par_env.unwrapped.config.steps_per_episode
    actions = random_actions(steps, len(agents))
    want, _ = core_day(actions, **SMALL)
    obs, _ = env.reset(seed=SEED)
    for t in range(steps):
        obs, rewards, terminateds, truncateds, infos = env.step({a: actions[t, i] for i, a in enumerate(agents)})
        assert all(obs[a].shape == (len(OBS_FEATURES),) for a in agents)
        np.testing.assert_array_equal([rewards[a] for a in agents], want[t])
        assert truncateds["__all__"] == (t == steps - 1) and not terminateds["__all__"]


def test_rllib_ppo_iteration_on_two_local_workers():
    pytest.importorskip("ray.rllib")
    returns = load_example("rllib_ppo").main(["--iterations", "1", "--num-env-runners", "2",
                                              "--train-batch-size", "192", "--env-override", "n_days=20"])
    assert len(returns) == 1 and np.isfinite(returns[0])


# ----------------------------------------------------------------------------------------- TorchRL
# The native batched TorchRL environment has its own file: tests/test_torchrl_env.py.


# ----------------------------------------------------------------------------------------- BenchMARL
def test_benchmarl_task_yamls_equal_the_env_configs():
    """The BenchMARL task configs mirror configs/env/ (BenchMARL tasks must ship inside the package)."""
    task_dir = ROOT / "p2p_marl" / "integrations" / "benchmarl_conf" / "task" / "p2p_marl"
    tasks = sorted(path.name for path in task_dir.glob("*.yaml"))
    assert tasks == sorted(path.name for path in (ROOT / "configs" / "env").glob("*.yaml"))
    for name in tasks:
        assert yaml.safe_load((task_dir / name).read_text()) == yaml.safe_load(
            (ROOT / "configs" / "env" / name).read_text()), name


def test_benchmarl_task_builds_validated_envs():
    pytest.importorskip("benchmarl")
    from p2p_marl.integrations.benchmarl import P2PMarlTask

    task = P2PMarlTask.COMMUNITY_50.get_from_yaml()
    assert task.env_config.n_agents == 50 and task.max_steps(None) == 48
    with pytest.raises(ConfigError, match="n_agent"):
        P2PMarlTask.COMMUNITY_10.get_task({"n_agent": 3})
    make_env = P2PMarlTask.COMMUNITY_10.get_task(SMALL).get_env_fun(num_envs=2, continuous_actions=False, seed=0,
                                                                    device="cpu")
    env, sibling = make_env(), make_env()
    assert env.batch_size == (2,)  # vectorised like a VMAS task: num_envs communities in one environment
    assert task.group_map(env) == {"prosumer": [f"prosumer_{i}" for i in range(4)]}
    # BenchMARL reads the specs of one community (unbatched), as from VMAS.
    assert task.action_spec(env)["prosumer", "action"].shape == (4,)  # categorical: one index per household
    assert set(task.observation_spec(env).keys(True, True)) == {("prosumer", "observation")}
    assert task.observation_spec(env)["prosumer", "observation"].shape == (4, len(OBS_FEATURES))
    assert set(task.info_spec(env)["prosumer", "info"].keys()) == {"day", *INFO_KEYS}
    assert task.state_spec(env)["state"].shape == (env.core.state_dim,)
    assert task.action_mask_spec(env) is None
    # Should BenchMARL build more than one environment from the function, they are seeded apart.
    days, sibling_days = env.reset()["prosumer", "info", "day"], sibling.reset()["prosumer", "info", "day"]
    assert not (days == sibling_days).all()


@pytest.mark.parametrize("algorithm", ["mappo", "maddpg"])
def test_benchmarl_trains(algorithm, tmp_path):
    pytest.importorskip("benchmarl")
    experiment = load_example("benchmarl_mappo").main(["--algorithm", algorithm, "--iterations", "1",
                                                       "--days-per-iteration", "2", "--save-folder", str(tmp_path)])
    assert experiment.n_iters_performed == 1 and experiment.total_frames == 96
    assert np.isfinite(experiment.mean_return)
