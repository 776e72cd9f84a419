"""Demonstrations from a planning teacher, the optimum or MPC (p2p_marl.algos.imitation), and MAPPO's warm start,
DAgger rounds and imitation loss on them."""

import dataclasses
import io

import numpy as np
import pytest
import torch

from p2p_marl.algos.imitation import demonstrations
from p2p_marl.algos.mappo import MAPPO, MAPPOConfig
from p2p_marl.algos.nets import env_action
from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.rules import SelfConsumption
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import CommunityCore

TINY = EnvConfig(n_agents=4, n_days=12, dt_h=2.0)


@pytest.mark.parametrize("teacher, battery_action", [("optimum", "power"), ("optimum", "target_soc"),
                                                     ("optimum", "net_load"), ("mpc", "power")])
def test_the_demonstrated_box_points_play_the_teacher_back_to_its_cost(teacher, battery_action):
    core = CommunityCore(TINY, batch_size=3)
    demos = demonstrations(core, teacher, n_resets=1, seed=7, battery_action=battery_action)
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
    assert cost.mean() == pytest.approx(demos.cost, rel=1e-9, abs=1e-9)


def test_imitation_brings_the_actor_close_to_the_optimum_it_imitates():
    config = MAPPOConfig(num_envs=4, num_minibatches=2, hidden_sizes=[32, 32], imitation_days=8, imitation_epochs=80)
    learner = MAPPO(TINY, config, seed=0)
    untrained = MAPPO(TINY, dataclasses.replace(config, imitation_days=0), seed=0)
    metrics = learner.imitate()
    demos = demonstrations(CommunityCore(TINY, batch_size=4), "optimum", 2, seed=1, battery_action="power")
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
    assert {"imitation/loss", "imitation/teacher_cost", "imitation/samples", "imitation/teacher_seconds"} <= set(first)
    assert not any(key.startswith("imitation/") for key in second)


@pytest.mark.parametrize("settings, key", [
    ({"imitation_days": -1}, "imitation_days"), ({"imitation_epochs": 0}, "imitation_epochs"),
    ({"imitation_days": 1.5}, "imitation_days"), ({"imitation_teacher": "oracle"}, "imitation_teacher"),
    ({"imitation_days": 4, "imitation_rounds": 1}, "imitation_rounds"),  # the optimum cannot teach a student
    ({"imitation_days": 4, "imitation_teacher": "mpc", "imitation_rounds": 1, "battery_action": "target_soc",
      "infeasible_penalty_per_kwh": 0.0}, "imitation_rounds"),
    ({"imitation_coef": 1.0}, "imitation_coef"), ({"imitation_days": 4, "imitation_coef": -1.0}, "imitation_coef"),
    ({"imitation_teacher": "mpc", "imitation_rounds": 1}, "imitation_rounds")])
def test_bad_imitation_settings_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=rf"^mappo\.{key}"):
        MAPPOConfig(**settings)


def test_a_student_plays_its_own_episodes_and_records_what_mpc_would_do_in_its_states():
    core = CommunityCore(TINY, batch_size=2)
    demos = demonstrations(core, "mpc", n_resets=1, seed=3, battery_action="power", student=SelfConsumption())

    replay = CommunityCore(TINY, batch_size=2)
    obs = replay.reset(seed=int(np.random.default_rng(3).integers(2 ** 63)))
    teacher, student = MPCPolicy(), SelfConsumption()
    teacher.reset(replay)
    student.reset(replay)
    cost = np.zeros(2)
    for t in range(replay.steps_per_episode):
        np.testing.assert_allclose(obs, demos.observations[2 * t:2 * (t + 1)], rtol=0, atol=1e-12)
        planned = teacher.act(replay, obs)  # what MPC does in the student's state: the recorded box plays it
        np.testing.assert_allclose(env_action(demos.boxes[2 * t:2 * (t + 1)], replay, obs, "power"), planned,
                                   rtol=0, atol=1e-12)
        obs, _, _, infos = replay.step(student.act(replay, obs))
        cost += infos["cost"].sum(axis=-1)
    assert cost.mean() == pytest.approx(demos.cost, rel=1e-9, abs=1e-9)


def test_only_mpc_can_teach_a_student():
    with pytest.raises(ValueError, match="mpc teacher"):
        demonstrations(CommunityCore(TINY, batch_size=2), "optimum", 1, 0, "power", student=SelfConsumption())


def test_dagger_rounds_add_the_students_episodes_to_the_demonstrations():
    config = MAPPOConfig(num_envs=2, update_epochs=1, num_minibatches=2, hidden_sizes=[8], imitation_days=2,
                         imitation_epochs=2, imitation_teacher="mpc", imitation_rounds=2)
    metrics = MAPPO(TINY, config, seed=0).imitate()
    core = CommunityCore(TINY)
    assert metrics["imitation/samples"] == 3 * 2 * core.steps_per_episode * core.n_agents
    assert {"imitation/teacher_cost", "imitation/student_cost", "imitation/teacher_seconds"} <= set(metrics)


def test_the_imitation_loss_in_ppo_keeps_the_actor_near_the_teacher_and_survives_a_resume():
    config = MAPPOConfig(num_envs=2, update_epochs=4, num_minibatches=2, hidden_sizes=[16], imitation_days=4,
                         imitation_epochs=40, imitation_teacher="mpc", imitation_rounds=1)
    free = MAPPO(TINY, config, seed=0)
    anchored = MAPPO(TINY, dataclasses.replace(config, imitation_coef=10.0), seed=0)
    for _ in range(4):
        free_metrics, anchored_metrics = free.iterate(), anchored.iterate()
    assert "imitation_loss" not in free_metrics
    x, target = anchored._demo_x, anchored._demo_target

    def error(model):
        with torch.no_grad():
            return float((torch.tanh(model.actor(x)) - target).pow(2).sum(-1).mean())

    assert error(anchored) < error(free)
    assert anchored_metrics["imitation_loss"] > 0.0

    resumed = MAPPO(TINY, dataclasses.replace(config, imitation_coef=10.0), seed=0)
    buffer = io.BytesIO()
    torch.save(anchored.state_dict(), buffer)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    after, after_resume = anchored.iterate(), resumed.iterate()
    after.pop("steps_per_second"), after_resume.pop("steps_per_second")
    assert after == after_resume


def test_a_state_without_the_demonstrations_cannot_resume_a_run_that_imitates():
    config = MAPPOConfig(num_envs=2, update_epochs=1, num_minibatches=2, hidden_sizes=[8], imitation_days=2,
                         imitation_epochs=1)
    plain = MAPPO(TINY, config, seed=0)
    plain.iterate()
    with pytest.raises(ValueError, match="holds no demonstrations"):
        MAPPO(TINY, dataclasses.replace(config, imitation_coef=1.0), seed=0).load_state_dict(plain.state_dict())
