"""Demonstrations from the optimiser (p2p_marl.algos.imitation) and MAPPO's warm start on them."""

import dataclasses

import numpy as np
import pytest
import torch

from p2p_marl.algos.imitation import optimal_demonstrations
from p2p_marl.algos.mappo import MAPPO, MAPPOConfig
from p2p_marl.algos.nets import env_action
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import CommunityCore

TINY = EnvConfig(n_agents=4, n_days=12, dt_h=2.0)


@pytest.mark.parametrize("battery_action", ["power", "target_soc", "net_load"])
def test_the_demonstrated_box_points_play_the_optimum_back_to_its_cost(battery_action):
    core = CommunityCore(TINY, batch_size=3)
    demos = optimal_demonstrations(core, n_resets=1, seed=7, battery_action=battery_action)
    steps = core.steps_per_episode
    assert demos.observations.shape == (steps * 3, 4, core.obs_dim) and demos.boxes.shape == (steps * 3, 4, 3)
    assert np.all(np.abs(demos.boxes) <= 1.0)

    # The same training episodes (same reset seed), acted out from the recorded box points through the actor's map.
    replay = CommunityCore(TINY, batch_size=3)
    obs = replay.reset(seed=int(np.random.default_rng(7).integers(2 ** 63)))
    assert set(replay.days) <= set(replay.train_days)
    cost = np.zeros(3)
    for t in range(steps):
        np.testing.assert_allclose(obs, demos.observations[3 * t:3 * (t + 1)], rtol=0, atol=1e-12)
        obs, _, _, infos = replay.step(env_action(demos.boxes[3 * t:3 * (t + 1)], replay, obs, battery_action))
        cost += infos["cost"].sum(axis=-1)
    assert cost.mean() == pytest.approx(demos.optimal_cost, rel=1e-9, abs=1e-9)


def test_imitation_brings_the_actor_close_to_the_optimum_it_imitates():
    config = MAPPOConfig(num_envs=4, num_minibatches=2, hidden_sizes=[32, 32], imitation_days=8, imitation_epochs=80)
    learner = MAPPO(TINY, config, seed=0)
    untrained = MAPPO(TINY, dataclasses.replace(config, imitation_days=0), seed=0)
    metrics = learner.imitate()
    demos = optimal_demonstrations(CommunityCore(TINY, batch_size=4), 2, seed=1, battery_action="power")
    x = torch.as_tensor(demos.observations, dtype=torch.float32)
    target = torch.as_tensor(demos.boxes, dtype=torch.float32)

    def error(model):
        with torch.no_grad():
            return float((torch.tanh(model.actor(model._actor_input(x))) - target).pow(2).sum(-1).mean())

    assert metrics["imitation/loss"] < 0.5 * error(untrained)
    assert error(learner) < 0.7 * error(untrained)  # on episodes it did not see


def test_the_warm_start_runs_once_at_the_first_iteration_and_is_logged():
    learner = MAPPO(TINY, MAPPOConfig(num_envs=2, update_epochs=1, num_minibatches=2, hidden_sizes=[8],
                                      imitation_days=2, imitation_epochs=2), seed=0)
    first, second = learner.iterate(), learner.iterate()
    assert {"imitation/loss", "imitation/optimal_cost", "imitation/samples", "imitation/lp_seconds"} <= set(first)
    assert not any(key.startswith("imitation/") for key in second)


@pytest.mark.parametrize("key, value", [("imitation_days", -1), ("imitation_epochs", 0), ("imitation_days", 1.5)])
def test_bad_imitation_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"mappo.{key}"):
        MAPPOConfig(**{key: value})
