"""Demonstrations from a planning teacher, the optimum or MPC (p2p_marl.algos.imitation), and the warm start,
DAgger rounds and imitation loss on them of the two learners with an actor, MAPPO and MADDPG."""

import copy
import dataclasses
import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_marl.algos.dqn import DQN, DQNConfig
from p2p_marl.algos.imitation import IMITATION_KEYS, demonstrations, feeder_weights, regret_weights
from p2p_marl.algos.maddpg import MADDPG, MADDPGConfig
from p2p_marl.algos.mappo import MAPPO, MAPPOConfig
from p2p_marl.algos.nets import actor_input, env_action
from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.rules import SelfConsumption
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.evaluation.step_regret import RegretShadow
from p2p_marl.sim.community import CommunityCore
from p2p_marl.sim.safety_filter import idle_step_outside_limits

TINY = EnvConfig(n_agents=4, n_days=12, dt_h=2.0)
# Each learner with an actor, and small settings for it.
ACTOR_LEARNERS = {
    "mappo": (MAPPO, MAPPOConfig, {"num_envs": 2, "update_epochs": 1, "num_minibatches": 2, "hidden_sizes": [8]}),
    "maddpg": (MADDPG, MADDPGConfig, {"num_envs": 2, "buffer_days": 8, "batch_size": 8, "gradient_steps": 4,
                                      "learning_starts": 0, "hidden_sizes": [8]}),
}


def small(name: str, **settings):
    """A learner of ``ACTOR_LEARNERS`` with its small settings and ``settings``."""
    learner, config, defaults = ACTOR_LEARNERS[name]
    return learner(TINY, config(**{**defaults, **settings}), seed=0)


def actor_errors(learner, observations: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The mean squared error per coordinate of the box (3,) of the box points the learner's evaluation policy
    plays."""
    policy = learner.policy()
    with torch.no_grad():
        played = policy.actor(actor_input(torch.as_tensor(observations, dtype=torch.float32), policy.agent_id,
                                          policy.all_households))
        return (played - boxes).pow(2).mean((0, 1))


def actor_error(learner, observations: torch.Tensor, boxes: torch.Tensor) -> float:
    """``actor_errors`` summed over the box's coordinates."""
    return float(actor_errors(learner, observations, boxes).sum())


@pytest.mark.parametrize("name", ACTOR_LEARNERS)
def test_every_learner_with_an_actor_takes_the_imitation_keys(name):
    assert set(IMITATION_KEYS) <= {field.name for field in dataclasses.fields(ACTOR_LEARNERS[name][1])}


@pytest.mark.parametrize("teacher, battery_action", [("optimum", "power"), ("optimum", "target_soc"),
                                                     ("optimum", "net_load"), ("optimum", "feasible"),
                                                     ("mpc", "power")])
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


@pytest.mark.parametrize("name, settings", [("mappo", {"hidden_sizes": [32, 32], "num_envs": 4}),
                                            ("maddpg", {"hidden_sizes": [32, 32], "num_envs": 4, "actor_lr": 1e-3})])
def test_imitation_brings_the_actor_close_to_the_optimum_it_imitates(name, settings):
    learner = small(name, imitation_days=8, imitation_epochs=80, **settings)
    untrained = small(name, **settings)
    metrics = learner.imitate()
    demos = demonstrations(CommunityCore(TINY, batch_size=4), "optimum", 2, seed=1,
                           battery_action=learner.config.battery_action)
    x, target = (torch.as_tensor(a, dtype=torch.float32) for a in (demos.observations, demos.boxes))
    assert metrics["imitation/loss"] < 0.5 * actor_error(untrained, x, target)
    assert actor_error(learner, x, target) < 0.7 * actor_error(untrained, x, target)  # on episodes it did not see


@pytest.mark.parametrize("name", ACTOR_LEARNERS)
def test_the_warm_start_runs_once_at_the_first_iteration_and_is_logged(name):
    learner = small(name, imitation_days=2, imitation_epochs=2)
    first, second = learner.iterate(), learner.iterate()
    assert {"imitation/loss", "imitation/teacher_cost", "imitation/samples", "imitation/teacher_seconds"} <= set(first)
    assert not any(key.startswith("imitation/") for key in second)


@pytest.mark.parametrize("name", ACTOR_LEARNERS)
def test_the_fit_is_logged_per_coordinate_of_the_box(name):
    """imitation/loss_battery, _price and _curtailment are the fitted actor's errors on the demonstrations it
    kept, coordinate by coordinate; imitation/loss is their sum."""
    learner = small(name, imitation_days=2, imitation_epochs=3, imitation_coef=1.0)
    metrics = learner.imitate()
    errors = actor_errors(learner, *learner.imitation.demonstrations)
    for k, coordinate in enumerate(("battery", "price", "curtailment")):
        assert metrics[f"imitation/loss_{coordinate}"] == pytest.approx(float(errors[k]), rel=1e-5, abs=1e-9)
    assert metrics["imitation/loss"] == pytest.approx(float(errors.sum()), rel=1e-5)


def test_maddpgs_target_actor_starts_from_the_imitating_actor():
    learner = small("maddpg", imitation_days=2, imitation_epochs=5, gradient_steps=0)
    learner.iterate()
    for online, target in zip(learner.actor.parameters(), learner.target_actor.parameters()):
        assert torch.equal(online, target)


BAD_IMITATION_SETTINGS = [
    ({"imitation_days": -1}, "imitation_days"), ({"imitation_epochs": 0}, "imitation_epochs"),
    ({"imitation_days": 1.5}, "imitation_days"), ({"imitation_teacher": "oracle"}, "imitation_teacher"),
    ({"imitation_days": 4, "imitation_rounds": 1}, "imitation_rounds"),  # the optimum cannot teach a student
    ({"imitation_coef": 1.0}, "imitation_coef"), ({"imitation_days": 4, "imitation_coef": -1.0}, "imitation_coef"),
    ({"imitation_teacher": "mpc", "imitation_rounds": 1}, "imitation_rounds"),
    ({"imitation_smoothing_per_kwh": 0.002}, "imitation_smoothing_per_kwh"),  # no demonstrations to smooth
    ({"imitation_days": 4, "imitation_smoothing_per_kwh": -0.1}, "imitation_smoothing_per_kwh"),
    ({"imitation_days": 4, "imitation_smoothing_per_kwh": 2.0}, "imitation_smoothing_per_kwh")]


@pytest.mark.parametrize("name, settings, key", [
    *[(name, settings, key) for name in ACTOR_LEARNERS for settings, key in BAD_IMITATION_SETTINGS],
    ("mappo", {"imitation_days": 4, "imitation_teacher": "mpc", "imitation_rounds": 1, "battery_action": "target_soc",
               "infeasible_penalty_per_kwh": 0.0}, "imitation_rounds"),
    ("maddpg", {"imitation_days": 4, "imitation_teacher": "mpc", "imitation_rounds": 1,
                "battery_action": "target_soc"}, "imitation_rounds")])
def test_bad_imitation_settings_name_the_key(name, settings, key):
    with pytest.raises(ConfigError, match=rf"^{name}\.{key}"):
        ACTOR_LEARNERS[name][1](**settings)


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


@pytest.mark.parametrize("name", ACTOR_LEARNERS)
def test_dagger_rounds_add_the_students_episodes_to_the_demonstrations(name):
    metrics = small(name, imitation_days=2, imitation_epochs=2, imitation_teacher="mpc", imitation_rounds=2).imitate()
    core = CommunityCore(TINY)
    assert metrics["imitation/samples"] == 3 * 2 * core.steps_per_episode * core.n_agents
    assert {"imitation/teacher_cost", "imitation/student_cost", "imitation/teacher_seconds"} <= set(metrics)


@pytest.mark.parametrize("name, settings", [("mappo", {"update_epochs": 4, "hidden_sizes": [16]}),
                                            ("maddpg", {"gradient_steps": 16, "hidden_sizes": [16]})])
def test_the_imitation_loss_keeps_the_actor_near_the_teacher_and_survives_a_resume(name, settings):
    settings = {"imitation_days": 4, "imitation_epochs": 40, "imitation_teacher": "mpc", "imitation_rounds": 1,
                **settings}
    free, anchored = small(name, **settings), small(name, imitation_coef=10.0, **settings)
    for _ in range(4):
        free_metrics, anchored_metrics = free.iterate(), anchored.iterate()
    assert "imitation_loss" not in free_metrics
    demos = anchored.imitation.demonstrations
    assert actor_error(anchored, *demos) < actor_error(free, *demos)
    assert anchored_metrics["imitation_loss"] > 0.0

    resumed = small(name, imitation_coef=10.0, **settings)
    buffer = io.BytesIO()
    torch.save(anchored.state_dict(), buffer)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    after, after_resume = anchored.iterate(), resumed.iterate()
    after.pop("steps_per_second"), after_resume.pop("steps_per_second")
    assert after == after_resume


@pytest.mark.parametrize("name", ACTOR_LEARNERS)
def test_a_state_without_the_demonstrations_cannot_resume_a_run_that_imitates(name):
    plain = small(name, imitation_days=2, imitation_epochs=1)
    plain.iterate()
    with pytest.raises(ValueError, match="holds no demonstrations"):
        small(name, imitation_days=2, imitation_epochs=1, imitation_coef=1.0).load_state_dict(plain.state_dict())


@pytest.mark.parametrize("battery_action", ["power", "net_load", "feasible"])
def test_mpc_can_teach_a_student_with_every_battery_action_but_a_target_soc(battery_action):
    settings = {"imitation_days": 2, "imitation_epochs": 1, "imitation_teacher": "mpc", "imitation_rounds": 1,
                "battery_action": battery_action}
    learner = small("maddpg", **settings)
    metrics = learner.imitate()
    assert metrics["imitation/samples"] == 2 * 2 * CommunityCore(TINY).steps_per_episode * 4


REFRESHING = {"imitation_days": 2, "imitation_epochs": 1, "imitation_teacher": "mpc", "imitation_rounds": 1,
              "imitation_coef": 1.0}


def test_a_refresh_round_replaces_the_oldest_demonstrations_with_the_actors_states_as_it_is_then():
    steps_per_iteration = 2 * CommunityCore(TINY).steps_per_episode  # num_envs communities, one day each
    learner = small("mappo", imitation_refresh_steps=2 * steps_per_iteration, **REFRESHING)
    learner.iterate()  # the warm start: the teacher's round, then one DAgger round
    warm_observations, warm_boxes = learner.imitation.demonstrations
    rows = len(warm_observations) // 2
    learner.iterate()
    assert torch.equal(learner.imitation.demonstrations[0], warm_observations)  # not due yet
    rng_before, policy_before = copy.deepcopy(learner.rng), learner.policy()
    metrics = learner.iterate()  # the two iterations before crossed the refresh step: this one refreshes first
    observations, boxes = learner.imitation.demonstrations
    assert observations.shape == warm_observations.shape and boxes.shape == warm_boxes.shape
    assert torch.equal(observations[:rows], warm_observations[rows:])
    assert torch.equal(boxes[:rows], warm_boxes[rows:])
    # The new round is what MPC says in the states the actor reached, played as it was before this iteration.
    relabelled = demonstrations(CommunityCore(learner.core.config, batch_size=2), "mpc", 1,
                                int(rng_before.integers(2 ** 63)), "power", policy_before)
    np.testing.assert_array_equal(observations[rows:].numpy(), relabelled.observations.astype(np.float32))
    np.testing.assert_array_equal(boxes[rows:].numpy(), relabelled.boxes.astype(np.float32))
    assert metrics["imitation/refresh_student_cost"] == pytest.approx(relabelled.cost, rel=1e-12)
    assert "imitation/refresh_student_cost" not in learner.iterate()


def test_a_run_resumed_before_a_refresh_refreshes_as_the_run_does():
    steps_per_iteration = 2 * CommunityCore(TINY).steps_per_episode
    settings = {"imitation_refresh_steps": steps_per_iteration, **REFRESHING}
    run, resumed = small("mappo", **settings), small("mappo", **settings)
    run.iterate()
    buffer = io.BytesIO()
    torch.save(run.state_dict(), buffer)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    after, after_resume = run.iterate(), resumed.iterate()
    assert "imitation/refresh_student_cost" in after
    for timed in ("steps_per_second", "imitation/refresh_teacher_seconds"):
        after.pop(timed), after_resume.pop(timed)
    assert after == after_resume
    assert all(torch.equal(a, b) for a, b in zip(run.imitation.demonstrations, resumed.imitation.demonstrations))


@pytest.mark.parametrize("settings, match", [
    ({"imitation_refresh_steps": 1000}, "needs imitation_coef > 0"),
    ({**REFRESHING, "imitation_coef": 0.0, "imitation_refresh_steps": 1000}, "needs imitation_coef > 0"),
    ({**REFRESHING, "imitation_teacher": "optimum", "imitation_rounds": 0, "imitation_refresh_steps": 1000},
     "imitation_teacher='mpc'"),
    ({**REFRESHING, "imitation_rounds": 0, "battery_action": "target_soc", "infeasible_penalty_per_kwh": 0.0,
      "imitation_refresh_steps": 1000}, "other than 'target_soc'"),
    ({**REFRESHING, "imitation_refresh_steps": -1}, r"out of range; allowed \[0, 1000000000000\]"),
    ({**REFRESHING, "imitation_refresh_steps": 1.5}, "must be an integer")])
def test_a_refresh_needs_mpc_and_the_imitation_loss_and_names_the_key(settings, match):
    with pytest.raises(ConfigError, match=rf"^mappo\.imitation_refresh_steps.*{match}"):
        MAPPOConfig(**settings)


def test_a_refresh_more_often_than_an_iteration_is_refused_naming_the_iterations_steps():
    steps_per_iteration = 2 * CommunityCore(TINY).steps_per_episode
    with pytest.raises(ConfigError, match=rf"^mappo\.imitation_refresh_steps={steps_per_iteration - 1} must be 0 or "
                                          rf"at least num_envs x steps per episode = {steps_per_iteration}"):
        small("mappo", imitation_refresh_steps=steps_per_iteration - 1, **REFRESHING)


def test_a_refresh_without_dagger_rounds_replaces_mpcs_own_episodes():
    steps_per_iteration = 2 * CommunityCore(TINY).steps_per_episode
    learner = small("mappo", imitation_refresh_steps=steps_per_iteration, **{**REFRESHING, "imitation_rounds": 0})
    learner.iterate()
    teachers = learner.imitation.demonstrations[0].clone()
    assert "imitation/refresh_student_cost" in learner.iterate()
    assert learner.imitation.demonstrations[0].shape == teachers.shape
    assert not torch.equal(learner.imitation.demonstrations[0], teachers)


@pytest.mark.parametrize("teacher", ["optimum", "mpc"])
def test_a_smoothing_teacher_asks_for_spread_battery_power(teacher):
    """The same training episodes taught with and without power smoothing: the smoothed teacher's battery
    setpoints are smaller on average (its plans spread power over more steps)."""
    boxes = {per_kwh: demonstrations(CommunityCore(TINY, batch_size=2), teacher, n_resets=2, seed=5,
                                     battery_action="power", smoothing_per_kwh=per_kwh).boxes[..., 0]
             for per_kwh in (0.0, 0.02)}
    assert np.mean(boxes[0.02] ** 2) < 0.8 * np.mean(boxes[0.0] ** 2)


@pytest.mark.parametrize("name", [*ACTOR_LEARNERS, "dqn"])
def test_a_learners_smoothing_key_reaches_its_teacher(name, monkeypatch):
    """``imitation_smoothing_per_kwh`` is what the learner's teacher plans with, in every round."""
    module = "p2p_marl.algos.dqn" if name == "dqn" else "p2p_marl.algos.imitation"
    taught = []
    real = demonstrations

    def recording(*args, **kwargs):
        taught.append(kwargs["smoothing_per_kwh"])
        return real(*args, **kwargs)

    monkeypatch.setattr(f"{module}.demonstrations", recording)
    settings = {"imitation_days": 2, "imitation_epochs": 1, "imitation_teacher": "mpc", "imitation_rounds": 1,
                "imitation_smoothing_per_kwh": 0.01}
    learner = (DQN(TINY, DQNConfig(num_envs=2, batch_size=8, hidden_sizes=[8], learning_starts=0, **settings), seed=0)
               if name == "dqn" else small(name, **settings))
    learner.imitate()
    assert taught == [0.01, 0.01]


@settings(max_examples=50, deadline=None)
@given(regrets=st.lists(st.floats(-1e-9, 10.0).map(lambda v: round(v, 9)), min_size=1, max_size=40),
       regret_weight=st.floats(0.0, 100.0))
def test_regret_weights_keep_a_rounds_weight_and_favour_its_costly_states(regrets, regret_weight):
    regrets = np.array(regrets)
    weights = regret_weights(regrets, regret_weight)
    assert weights.mean() == pytest.approx(1.0, rel=1e-9)
    assert np.all(weights >= 1.0 / (1.0 + regret_weight) - 1e-12)
    order = np.argsort(np.maximum(regrets, 0.0), kind="stable")
    assert np.all(np.diff(weights[order]) >= -1e-12)  # a costlier state never weighs less
    if np.max(regrets) <= 0.0:  # no regret beyond the LP's rounding: every state weighs the same
        np.testing.assert_array_equal(weights, 1.0)


def test_a_students_regrets_are_what_its_steps_cost_by_mpcs_reckoning():
    """The regrets recorded with the demonstrations are step_regret's judge's (Q - V, battery and curtailment
    fixed) in the same states; MPC as its own student has none."""
    core = CommunityCore(TINY, batch_size=2)
    demos = demonstrations(core, "mpc", n_resets=1, seed=5, battery_action="power", student=SelfConsumption(),
                           regrets=True)
    replay = CommunityCore(TINY, batch_size=2)
    obs = replay.reset(seed=int(np.random.default_rng(5).integers(2 ** 63)))
    shadow = RegretShadow(SelfConsumption())
    shadow.reset(replay)
    for _ in range(replay.steps_per_episode):
        obs, *_ = replay.step(shadow.act(replay, obs))
    np.testing.assert_allclose(demos.regrets, shadow.regrets.ravel(), rtol=0, atol=1e-9)
    assert demos.regrets.sum() > 0.1  # self-consumption departs from MPC somewhere, at a cost

    own = demonstrations(CommunityCore(TINY, batch_size=2), "mpc", n_resets=1, seed=5, battery_action="power",
                         student=MPCPolicy(), regrets=True)
    assert np.abs(own.regrets).max() < 1e-9
    with pytest.raises(ValueError, match="need a student"):
        demonstrations(CommunityCore(TINY, batch_size=2), "mpc", 1, 5, "power", regrets=True)


@pytest.mark.parametrize("name", ACTOR_LEARNERS)
def test_dagger_rounds_weigh_their_states_by_the_students_regret_and_the_weights_survive_a_resume(name):
    settings = {"imitation_days": 2, "imitation_epochs": 1, "imitation_teacher": "mpc", "imitation_rounds": 1,
                "imitation_coef": 1.0}
    weighted, plain = small(name, imitation_regret_weight=3.0, **settings), small(name, **settings)
    metrics, plain_metrics = weighted.imitate(), plain.imitate()
    rows = len(weighted.imitation.weights) // 2  # the teacher's own round, then the student's
    torch.testing.assert_close(weighted.imitation.weights[:rows], torch.ones(rows))  # no regret in MPC's own steps
    student_weights = weighted.imitation.weights[rows:]
    assert float(student_weights.mean()) == pytest.approx(1.0, rel=1e-6)
    assert float(student_weights.min()) >= 0.25 - 1e-6 and float(student_weights.max()) > 1.0
    assert metrics["imitation/student_regret_per_day"] > 0.0
    assert "imitation/student_regret_per_day" not in plain_metrics  # measured only where it weighs
    torch.testing.assert_close(plain.imitation.weights, torch.ones(2 * rows))

    buffer = io.BytesIO()  # through a checkpoint file, as a resumed run reads it
    torch.save(weighted.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = small(name, imitation_regret_weight=3.0, **settings)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.imitation.weights, weighted.imitation.weights)
    del state["demonstration_weights"]  # a checkpoint saved before the weights existed: every state weighs 1
    resumed.load_state_dict(state)
    torch.testing.assert_close(resumed.imitation.weights, torch.ones(2 * rows))


def test_a_refresh_weighs_the_new_round_by_the_actors_regret_and_rolls_the_weights_with_the_states():
    steps_per_iteration = 2 * CommunityCore(TINY).steps_per_episode
    learner = small("mappo", imitation_refresh_steps=steps_per_iteration, imitation_regret_weight=3.0, **REFRESHING)
    learner.iterate()  # the warm start; the next iteration refreshes first
    warm_weights = learner.imitation.weights.clone()
    rows = len(warm_weights) // 2
    rng_before, policy_before = copy.deepcopy(learner.rng), learner.policy()
    metrics = learner.iterate()
    assert torch.equal(learner.imitation.weights[:rows], warm_weights[rows:])
    relabelled = demonstrations(CommunityCore(learner.core.config, batch_size=2), "mpc", 1,
                                int(rng_before.integers(2 ** 63)), "power", policy_before, regrets=True)
    expected = regret_weights(relabelled.regrets, 3.0).astype(np.float32)
    np.testing.assert_allclose(learner.imitation.weights[rows:].numpy(), expected, rtol=1e-6)  # row by row
    assert metrics["imitation/refresh_student_regret_per_day"] == pytest.approx(
        relabelled.regrets.sum() * learner.core.steps_per_episode / len(relabelled.regrets), rel=1e-9)


BINDING = dataclasses.replace(TINY, transformer_kva=3.0)  # the idle community overloads it on a quarter of the steps


def test_demonstrations_mark_the_steps_where_the_feeder_binds_with_idle_batteries():
    played = demonstrations(CommunityCore(BINDING, batch_size=2), "mpc", 2, 0, "power")
    core, rng, expected = CommunityCore(BINDING, batch_size=2), np.random.default_rng(0), []
    for _ in range(2):  # the same days as the teacher's: the day and the hour decide the mark, not the actions
        core.reset(seed=int(rng.integers(2 ** 63)))
        while not core.done:
            expected.append(idle_step_outside_limits(core))
            core.step(np.zeros((core.batch_size, core.n_agents, 3)))
    np.testing.assert_array_equal(played.idle_breaks_feeder, np.concatenate(expected))
    assert 0.0 < played.idle_breaks_feeder.mean() < 1.0


@pytest.mark.parametrize("name", ACTOR_LEARNERS)
def test_the_states_where_the_feeder_binds_with_idle_batteries_weigh_the_feeder_weight(name):
    """In MPC's round and in the student's, the marked states, and only they, weigh ``imitation_feeder_weight``."""
    learner, config, defaults = ACTOR_LEARNERS[name]
    settings = {**defaults, "imitation_days": 2, "imitation_epochs": 1, "imitation_teacher": "mpc",
                "imitation_rounds": 1, "imitation_coef": 1.0}
    weighted = learner(BINDING, config(imitation_feeder_weight=0.25, **settings), seed=0)
    plain = learner(BINDING, config(**settings), seed=0)
    weighted.imitate(), plain.imitate()
    torch.testing.assert_close(plain.imitation.weights, torch.ones(len(plain.imitation.weights)))
    rows = len(weighted.imitation.weights) // 2  # the teacher's own round, then the student's
    for round_weights in (weighted.imitation.weights[:rows], weighted.imitation.weights[rows:]):
        marked = round_weights != 1.0
        assert 0 < int(marked.sum()) < rows
        torch.testing.assert_close(round_weights[marked], torch.full((int(marked.sum()),), 0.25))


@given(flags=st.lists(st.booleans(), max_size=30), feeder_weight=st.floats(0.0, 1000.0))
def test_feeder_weights_change_only_the_marked_states(flags, feeder_weight):
    weights = feeder_weights(np.array(flags, dtype=bool), feeder_weight)
    np.testing.assert_array_equal(weights, np.where(flags, feeder_weight, 1.0))


def test_the_imitation_loss_weighs_each_community_steps_demonstrations():
    learner = small("mappo", imitation_days=2, imitation_epochs=1, imitation_coef=1.0)
    learner.imitate()
    imitation = learner.imitation
    observations, boxes = imitation.demonstrations
    weights = torch.linspace(0.0, 2.0, len(boxes))
    imitation.keep(observations, boxes, weights)
    policy = learner.policy()
    with torch.no_grad():
        played = policy.actor(actor_input(observations, policy.agent_id, policy.all_households))
        expected = (weights[:, None] * (played - boxes).pow(2).sum(-1)).mean()
        torch.testing.assert_close(imitation._error(slice(None)), expected)
    with pytest.raises(ValueError, match="one per community-step"):
        imitation.keep(observations, boxes, weights[1:])


@pytest.mark.parametrize("name, settings", [
    ("mappo", {"imitation_days": 4, "imitation_regret_weight": 1.0}),  # the optimum judges no student
    ("maddpg", {"imitation_days": 4, "imitation_regret_weight": 1.0}),
    ("mappo", {"imitation_days": 4, "imitation_teacher": "mpc", "imitation_regret_weight": 1.0}),  # no student
    ("maddpg", {"imitation_days": 4, "imitation_teacher": "mpc", "imitation_regret_weight": 1.0}),
    ("maddpg", {"imitation_days": 4, "imitation_teacher": "mpc", "imitation_rounds": 1,  # bills do not compare
                "imitation_smoothing_per_kwh": 0.002, "imitation_regret_weight": 1.0}),
    ("mappo", {"imitation_days": 4, "imitation_teacher": "mpc", "imitation_regret_weight": -1.0}),
    ("maddpg", {"imitation_days": 4, "imitation_teacher": "mpc", "imitation_rounds": 1,
                "imitation_regret_weight": float("nan")})])
def test_bad_regret_weights_name_the_key(name, settings):
    with pytest.raises(ConfigError, match=rf"^{name}\.imitation_regret_weight"):
        ACTOR_LEARNERS[name][1](**settings)


@pytest.mark.parametrize("name, settings, match", [
    ("mappo", {"imitation_feeder_weight": 0.0}, "needs imitation_days > 0"),  # no demonstrations to weigh
    ("maddpg", {"imitation_days": 4, "imitation_feeder_weight": -0.5}, "out of range"),
    ("mappo", {"imitation_days": 4, "imitation_feeder_weight": float("inf")}, "must be")])
def test_bad_feeder_weights_name_the_key(name, settings, match):
    with pytest.raises(ConfigError, match=rf"^{name}\.imitation_feeder_weight.*{match}"):
        ACTOR_LEARNERS[name][1](**settings)


def test_mappos_refreshes_are_states_a_student_reached_for_the_regret_weight():
    config = MAPPOConfig(imitation_days=4, imitation_teacher="mpc", imitation_coef=1.0, imitation_refresh_steps=10**5,
                         imitation_regret_weight=1.0)
    assert config.imitation_rounds == 0 and config.imitation_regret_weight == 1.0


@pytest.mark.parametrize("battery_action", ["power", "net_load", "feasible"])
def test_a_teacher_policy_labels_the_states_with_the_box_points_that_play_it_back(battery_action):
    core = CommunityCore(TINY, batch_size=2)
    teacher = small("maddpg", battery_action=battery_action).policy()
    demos = demonstrations(core, teacher, n_resets=1, seed=4, battery_action=battery_action,
                           student=SelfConsumption())
    replay = CommunityCore(TINY, batch_size=2)
    obs = replay.reset(seed=int(np.random.default_rng(4).integers(2 ** 63)))
    for t in range(replay.steps_per_episode):
        rows = slice(2 * t, 2 * (t + 1))
        np.testing.assert_allclose(env_action(demos.boxes[rows], replay, obs, battery_action),
                                   teacher.act(replay, obs), rtol=0, atol=1e-12)
        obs, *_ = replay.step(SelfConsumption().act(replay, obs))
    for mpc_only in ({"regrets": True}, {"smoothing_per_kwh": 0.002}):
        with pytest.raises(ValueError, match="need the mpc teacher"):
            demonstrations(core, teacher, 1, 4, "power", student=SelfConsumption(), **mpc_only)
