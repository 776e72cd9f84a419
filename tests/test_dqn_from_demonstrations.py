"""DQN learning from the MPC teacher (DQfD): the teacher's action snapped to the learner's grid, demonstrations
recorded as transitions the learner could have made, pre-training with the large-margin loss, the demonstration
loss in the RL phase and its checkpoints."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_marl.algos.dqn import DQN, DQNConfig
from p2p_marl.algos.imitation import IMITATION_KEYS, demonstrations
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.battery import feasible_power
from p2p_marl.sim.community import ACTION_HIGH, ACTION_LOW, CommunityCore
from p2p_marl.training.value_based import ActionGrid

TINY = EnvConfig(n_agents=4, n_days=12, dt_h=2.0)
SMALL = {"num_envs": 2, "batch_size": 32, "buffer_size": 2000, "hidden_sizes": [32, 32], "learning_starts": 0,
         "imitation_days": 4, "imitation_epochs": 20}


def small(**settings) -> DQN:
    return DQN(TINY, DQNConfig(**{**SMALL, **settings}), seed=0)


def core_in_a_random_state(seed: int) -> tuple[CommunityCore, np.ndarray]:
    """A training community a random number of steps into its day, batteries wherever random play left them."""
    rng = np.random.default_rng(seed)
    core = CommunityCore(TINY, batch_size=3)
    obs = core.reset(seed=seed)
    for _ in range(rng.integers(core.steps_per_episode)):
        obs, *_ = core.step(rng.uniform(ACTION_LOW, ACTION_HIGH, (3, 4, 3)))
    return core, obs


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), levels=st.sampled_from([(5, 3, 2, True), (4, 1, 1, False), (3, 2, 3, True)]))
def test_the_nearest_grid_action_is_the_nearest_in_each_component(seed, levels):
    core, obs = core_in_a_random_state(seed)
    grid = ActionGrid(*levels)
    wanted = np.random.default_rng(seed + 1).uniform(ACTION_LOW, ACTION_HIGH, (3, 4, 3))
    chosen = grid.actions(core, obs, grid.nearest(core, obs, wanted))

    every = np.stack([grid.actions(core, obs, np.full((3, 4), a)) for a in range(len(grid))])  # (L, B, N, 3)

    def meter_kw(share):
        charge_kw, discharge_kw = feasible_power(share * core.battery.max_kw, core.energy_kwh, core.battery, core.dt_h)
        return charge_kw - discharge_kw

    battery_gap_kw = np.abs(meter_kw(every[..., 0]) - meter_kw(wanted[..., 0]))
    assert np.allclose(np.abs(meter_kw(chosen[..., 0]) - meter_kw(wanted[..., 0])), battery_gap_kw.min(axis=0))
    for component in (1, 2):
        gap = np.abs(every[..., component] - wanted[..., component])
        assert np.allclose(np.abs(chosen[..., component] - wanted[..., component]), gap.min(axis=0))


def test_nearest_reads_the_battery_by_what_it_can_do_and_breaks_ties_low():
    core = CommunityCore(TINY, batch_size=1)
    obs = core.reset(seed=0)
    grid = ActionGrid(5, 3, 2, False)  # setpoints -1, -0.5, 0, 0.5, 1; prices 0, 0.5, 1; curtailment 0, 1
    with_battery = int(np.flatnonzero(core.has_battery)[0])
    without_battery = int(np.flatnonzero(~core.has_battery)[0])
    core.energy_kwh[0, with_battery] = core.battery.max_energy_kwh[with_battery]  # full: it cannot charge
    wanted = np.zeros((1, 4, 3))
    wanted[0, with_battery] = (0.8, 0.25, 0.4)  # charge (impossible), price halfway between two levels
    wanted[0, without_battery] = (0.7, 0.9, 0.6)
    chosen = grid.actions(core, obs, grid.nearest(core, obs, wanted))
    # Full: no level charges it, and of those that do what it can (nothing), the idle one asks nothing impossible;
    # the price tie goes to the lower index.
    np.testing.assert_array_equal(chosen[0, with_battery], (0.0, 0.0, 0.0))
    # Without a battery every level plays alike: the idle one.
    np.testing.assert_array_equal(chosen[0, without_battery], (0.0, 1.0, 1.0))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_a_grid_action_is_its_own_nearest_or_one_that_does_the_same_asking_less(seed):
    core, obs = core_in_a_random_state(seed)
    grid = ActionGrid(5, 3, 2, True)
    played = grid.actions(core, obs, np.random.default_rng(seed).integers(len(grid), size=(3, 4)))
    nearest = grid.actions(core, obs, grid.nearest(core, obs, played))
    np.testing.assert_array_equal(nearest[..., 1:], played[..., 1:])
    battery = core.battery
    (charge_a, discharge_a), (charge_b, discharge_b) = (
        feasible_power(action[..., 0] * battery.max_kw, core.energy_kwh, battery, core.dt_h)
        for action in (nearest, played))
    np.testing.assert_allclose(charge_a - discharge_a, charge_b - discharge_b, rtol=0, atol=1e-12)
    # Where a battery follows the played setpoint, that setpoint is the one chosen; elsewhere one that asks less.
    followed = core.has_battery & np.isclose(np.abs(charge_b - discharge_b), np.abs(played[..., 0]) * battery.max_kw,
                                             rtol=0, atol=1e-12)
    np.testing.assert_array_equal(nearest[..., 0][followed], played[..., 0][followed])
    assert np.all(np.abs(nearest[..., 0]) <= np.abs(played[..., 0]))


@pytest.mark.parametrize("student", [False, True])
def test_grid_demonstrations_are_transitions_that_replay_on_the_core(student):
    learner = small()
    grid = learner.action_grid
    core = CommunityCore(TINY, batch_size=2)
    policy = learner.policy() if student else None

    def training_reward(reward, actions, infos):  # a reward the core does not give, to see it recorded
        return reward - 0.01 * actions[..., 0] ** 2

    demos = demonstrations(core, "mpc", n_resets=1, seed=5, battery_action="power", student=policy, grid=grid,
                           training_reward=training_reward)
    steps = demos.grid
    if not student:  # the teacher plays its own labels
        np.testing.assert_array_equal(steps.labels, steps.played)
    assert steps.terminal.tolist() == [False] * 2 * (core.steps_per_episode - 1) + [True] * 2

    replay = CommunityCore(TINY, batch_size=2)
    obs = replay.reset(seed=int(np.random.default_rng(5).integers(2 ** 63)))
    for t in range(replay.steps_per_episode):
        rows = slice(2 * t, 2 * (t + 1))
        np.testing.assert_array_equal(obs, demos.observations[rows])
        actions = grid.actions(replay, obs, steps.played[rows])
        obs, reward, _, infos = replay.step(actions)
        np.testing.assert_array_equal(training_reward(reward, actions, infos), steps.rewards[rows])


def test_dqns_demonstration_rows_are_the_recorded_transitions():
    learner = small(imitation_rounds=1, imitation_epochs=1)
    learner.imitate()
    assert learner.demonstrations is None  # imitation_coef = 0: not kept
    anchored = small(imitation_rounds=1, imitation_epochs=1, imitation_coef=1.0)
    anchored.imitate()
    demo, core = anchored.demonstrations, anchored.core
    # Rebuilt from the same draws: the learner's generator seeds each round's episodes.
    rng = np.random.default_rng(np.random.SeedSequence(0).generate_state(2)[1])
    first = demonstrations(CommunityCore(TINY, batch_size=2), "mpc", 2, int(rng.integers(2 ** 63)), "power",
                           grid=anchored.action_grid)
    rows = first.grid.labels.size
    x = anchored.q.encode(core, first.observations).flatten(0, 1)
    # Each step's next observation from the (reset, step, community) layout (the day's last step keeps its own).
    by_step = first.observations.reshape(2, core.steps_per_episode, 2, *first.observations.shape[1:])
    next_observations = np.concatenate([by_step[:, 1:], by_step[:, -1:]], axis=1).reshape(first.observations.shape)
    next_x = anchored.q.encode(core, next_observations).flatten(0, 1)
    torch.testing.assert_close(demo["x"][:rows], x, rtol=0, atol=0)
    np.testing.assert_array_equal(demo["label"][:rows].numpy(), first.grid.labels.ravel())
    np.testing.assert_array_equal(demo["action"][:rows].numpy(), first.grid.played.ravel())
    terminal = demo["terminal"][:rows]
    assert terminal.tolist() == np.repeat(first.grid.terminal, core.n_agents).tolist()
    # The next input of a row within the day is the row one community-step of the batch later.
    within_day = torch.nonzero(~terminal).squeeze(1)
    torch.testing.assert_close(demo["x"][within_day + anchored._next_row_offset], next_x[within_day], rtol=0, atol=0)


class FixedQ(torch.nn.Module):
    """Q-values that ignore their input."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values, dtype=torch.float32)

    def forward(self, x):
        return self.values.expand(len(x), -1)


@pytest.mark.parametrize("q_values, margin_loss", [
    ([0.0, 0.0, 0.0], 0.05),  # all equal: each other action must fall a margin below the teacher's
    ([0.3, 0.0, 0.2], 0.0),  # the teacher's (action 0) leads by more than the margin: nothing to push
    ([0.0, 0.1, 0.0], 0.15)])  # another leads: its lead plus the margin
def test_the_large_margin_loss(q_values, margin_loss):
    learner = small(imitation_margin=0.05)
    learner.q = learner.target = FixedQ(q_values)
    n = 8
    learner.keep_demonstrations({"x": torch.zeros(n, 1), "action": torch.zeros(n, dtype=torch.int64),
                                 "reward": torch.zeros(n), "terminal": torch.ones(n, dtype=torch.bool),
                                 "label": torch.zeros(n, dtype=torch.int64)})
    total, margin = learner._demonstration_loss()
    assert float(margin) == pytest.approx(margin_loss)
    # The TD part: terminal rows with reward 0, so Q(played) = 0 is its own target exactly when q_values[0] = 0.
    assert float(total - margin) == pytest.approx(0.5 * q_values[0] ** 2)


def test_dqn_takes_the_imitation_keys():
    assert set(IMITATION_KEYS) <= set(DQNConfig.__dataclass_fields__)


def test_pre_training_makes_the_teachers_action_the_greedy_one():
    learner, untrained = small(imitation_rounds=1), small()
    metrics = learner.imitate()
    assert {"imitation/loss", "imitation/margin_loss", "imitation/grid_teacher_cost", "imitation/student_cost",
            "imitation/teacher_seconds"} <= set(metrics)
    core = CommunityCore(TINY)
    assert metrics["imitation/samples"] == 2 * 4 * core.steps_per_episode * core.n_agents
    assert metrics["imitation/label_match"] > 0.6

    # On teacher episodes neither learner saw, the pre-trained greedy policy picks the teacher's action more often.
    held_out = demonstrations(CommunityCore(TINY, batch_size=4), "mpc", 1, seed=11, battery_action="power",
                              grid=learner.action_grid)

    def match(dqn: DQN) -> float:
        q = dqn.q.q_values(dqn.q.encode(core, held_out.observations))
        return float((q.argmax(axis=-1) == held_out.grid.labels).mean())

    assert match(learner) > match(untrained) + 0.2


def test_the_demonstration_loss_joins_the_updates_and_survives_a_resume():
    anchored, free = small(imitation_coef=1.0), small()
    for _ in range(2):
        anchored_metrics, free_metrics = anchored.iterate(), free.iterate()
    assert anchored_metrics["demo_loss"] > 0.0 and "demo_loss" not in free_metrics
    assert free.demonstrations is None  # without imitation_coef neither memory nor checkpoints keep them

    resumed = DQN(TINY, DQNConfig(**{**SMALL, "imitation_coef": 1.0}), seed=123)  # all must come from the state
    buffer = io.BytesIO()
    torch.save(anchored.state_dict(), buffer)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert anchored.iterate() == resumed.iterate()
    for param, resumed_param in zip(anchored.q.parameters(), resumed.q.parameters()):
        assert torch.equal(param, resumed_param)


def test_a_state_without_the_demonstrations_cannot_resume_a_run_that_imitates():
    plain = small()
    plain.iterate()
    with pytest.raises(ValueError, match="holds no demonstrations"):
        small(imitation_coef=1.0).load_state_dict(plain.state_dict())


@pytest.mark.parametrize("settings, key", [
    ({"imitation_teacher": "optimum"}, "imitation_teacher"), ({"imitation_teacher": "oracle"}, "imitation_teacher"),
    ({"imitation_days": 0, "imitation_coef": 1.0}, "imitation_coef"), ({"imitation_margin": -0.1}, "imitation_margin"),
    ({"imitation_days": 0, "imitation_rounds": 1}, "imitation_rounds"), ({"imitation_epochs": 0}, "imitation_epochs"),
    ({"imitation_days": 0, "imitation_smoothing_per_kwh": 0.002}, "imitation_smoothing_per_kwh"),
    ({"imitation_smoothing_per_kwh": -0.1}, "imitation_smoothing_per_kwh")])
def test_bad_imitation_settings_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=rf"^dqn\.{key}"):
        DQNConfig(**{**SMALL, **settings})


def test_the_demonstrations_carry_the_training_reward_of_penalty_reward():
    """The teacher's same episodes recorded with the network penalty as billed and as the community's whole: the
    same rows, and rewards never higher with the whole penalty, lower where the feeder left its band (a band of
    +-0.1 % that no plan can keep at night)."""
    narrow_band = EnvConfig(n_agents=4, n_days=12, dt_h=2.0, v_min_pu=0.999, v_max_pu=1.001)
    kept = {}
    for how in ("share", "community"):
        learner = DQN(narrow_band, DQNConfig(**{**SMALL, "imitation_epochs": 1, "imitation_coef": 1.0,
                                                "penalty_reward": how}), seed=0)
        learner.imitate()
        kept[how] = learner.demonstrations
    np.testing.assert_array_equal(kept["share"]["label"].numpy(), kept["community"]["label"].numpy())
    gap = (kept["community"]["reward"] - kept["share"]["reward"]).numpy()
    assert np.all(gap <= 1e-6) and gap.min() < -1e-4
