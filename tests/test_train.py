"""train.py end to end: real Hydra composition, real TensorBoard files read back, checkpoints, resume, errors.

Every run uses a tiny community (3 households, days of 8 three-hour steps, 4 communities per batch) so that a
run of a few hundred community-steps takes about a second; ``train.py`` is imported once and its Hydra entry point called
in-process with a patched command line.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from tbparse import SummaryReader
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from p2p_marl.algos import load_policy
from p2p_marl.algos.dqn import DQNConfig
from p2p_marl.algos.mappo import MAPPOConfig
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.evaluation import learning_curves
from p2p_marl.evaluation.report import plt
from p2p_marl.baselines.rules import TimeOfUse, ZeroIntelligence
from p2p_marl.evaluation.compare import rollout_days
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.sim.community import ACTION_HIGH, ACTION_LOW, CommunityCore
from p2p_marl.training.config import register_configs, validate_config
from p2p_marl.training.checkpoint import (
    CheckpointError,
    best_checkpoint_path,
    forecast_spec,
    list_checkpoints,
    load_checkpoint,
)
from p2p_marl.training.event_files import first_wall_time
from p2p_marl.training.loop import HeldOutDaysEvaluator
from p2p_marl.training.run_lock import LOCK_NAME
from conftest import compose_config, launch_twice_at_once, load_script

ROOT = Path(__file__).resolve().parents[1]
TINY_ENV = {"n_agents": 3, "dt_h": 3.0, "n_days": 20}  # a whole day in 8 steps: something to save
# 4 communities x 8 steps = 32 community-steps per iteration; 320 steps = 10 iterations.
TINY = [*(f"env.{key}={value}" for key, value in TINY_ENV.items()), "algo.num_envs=4", "total_env_steps=320",
        "eval_interval=96", "checkpoint_interval=160", "eval_days=2", "progress=false"]
DQN_TINY = ["algo=dqn", "algo.learning_starts=64", "algo.batch_size=32", "algo.buffer_size=2000",
            # the grid these runs were chosen on (seed 1: its best comes after the checkpoint at 160)
            "algo.target_update_interval=20", "algo.hidden_sizes=[16,16]", "algo.n_battery_levels=9"]
ALGOS = {"qlearning": ["algo=qlearning"], "dqn": DQN_TINY}
EXPECTED_TAGS = {"train/episode_return", "train/community_cost", "train/td_loss", "train/exploration",
                 "perf/steps_per_second", "eval/share_of_optimal_saving", "eval/community_cost",
                 "eval/self_sufficiency", "eval/p2p_volume_kwh"}


@pytest.fixture(scope="module")
def train_main():
    return load_script(ROOT / "train.py", "train").main


def run_train(train_main, monkeypatch, *overrides: str) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py", *overrides])
    train_main()


def run_train_process(*overrides: str) -> subprocess.CompletedProcess:
    """train.py in its own process, as a user starts it (needed where a launcher spawns worker processes)."""
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def fresh_run(train_main, monkeypatch, run_dir: Path, algo: str, *extra: str) -> Path:
    run_train(train_main, monkeypatch, *ALGOS[algo], *TINY, f"hydra.run.dir={run_dir}", *extra)
    return run_dir


def logged_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> [(step, value)] as TensorBoard shows it (TensorBoard's own reader honours purge_step), without the
    wall-clock dependent perf/ tags."""
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"] if not tag.startswith("perf/")}


@pytest.mark.parametrize("algo", list(ALGOS))
def test_run_logs_tensorboard_and_checkpoints_that_load_and_act(train_main, monkeypatch, tmp_path, algo):
    run_dir = fresh_run(train_main, monkeypatch, tmp_path / "run", algo)

    reader = SummaryReader(str(run_dir))
    scalars = reader.scalars
    assert EXPECTED_TAGS <= set(scalars["tag"])
    assert scalars["step"].max() == 320
    evaluations = scalars[scalars["tag"] == "eval/share_of_optimal_saving"]
    assert evaluations["step"].tolist() == [96, 192, 288, 320]  # each multiple of 96 passed, and the end
    assert np.isfinite(evaluations["value"]).all()
    exploration = scalars[scalars["tag"] == "train/exploration"]["value"].to_numpy()
    assert (np.diff(exploration) < 0).all()  # epsilon decays
    hparams = dict(zip(reader.hparams["tag"], reader.hparams["value"]))
    assert hparams["algo"] == algo and hparams["seed"] == 0 and hparams["algo.num_envs"] == 4
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert [path.name for path in list_checkpoints(run_dir)] == ["step_000000000160.pt", "step_000000000320.pt"]

    env_config = EnvConfig(**TINY_ENV)
    core = CommunityCore(env_config, batch_size=2)
    for source in (run_dir, list_checkpoints(run_dir)[0]):
        policy = load_policy(source)
        assert policy.name == algo
        obs = core.reset(days=core.test_days[:2])
        policy.reset(core)
        actions = policy.act(core, obs)
        assert actions.shape == (2, 3, ACTION_LOW.size)
        assert np.all((actions >= ACTION_LOW) & (actions <= ACTION_HIGH))


def saved_best(run_dir: Path) -> tuple[int, float]:
    best = load_checkpoint(best_checkpoint_path(run_dir))
    return best.env_steps, best.loop_state["best_validation_share"]


def test_the_best_evaluation_is_kept_and_played_from_a_run_directory(train_main, monkeypatch, tmp_path, caplog):
    run_dir = fresh_run(train_main, monkeypatch, tmp_path / "run", "dqn", "keep_checkpoints=1", "seed=2")
    assert [path.name for path in list_checkpoints(run_dir)] == ["step_000000000320.pt"]  # best.pt is not pruned
    evaluations = logged_scalars(run_dir)["eval/share_of_optimal_saving"]
    best_step, best_share = max(evaluations, key=lambda evaluation: evaluation[1])
    assert best_step != evaluations[-1][0]  # this seed's best is not its last: the two choices differ
    step, share = saved_best(run_dir)
    assert step == best_step and share == pytest.approx(best_share, abs=1e-6)  # the event files hold float32

    # Played again on the validation days, each choice reproduces the evaluation it was chosen by.
    evaluator = HeldOutDaysEvaluator(EnvConfig(**TINY_ENV), eval_days=2)
    for choice, (_, logged) in (("best", (best_step, best_share)), ("last", evaluations[-1])):
        replayed = evaluator(load_policy(run_dir, run_checkpoint=choice))["share_of_optimal_saving"]
        assert replayed == pytest.approx(logged, abs=1e-6)

    best_checkpoint_path(run_dir).unlink()  # a run trained before runs kept their best
    checkpoint_log = logging.getLogger("p2p_marl.training.checkpoint")
    checkpoint_log.addHandler(caplog.handler)  # train.py's Hydra logging set-up replaced the root's handlers
    try:
        load_policy(run_dir)
    finally:
        checkpoint_log.removeHandler(caplog.handler)
    assert f"{run_dir} has no best.pt (trained before runs kept their best evaluation, or no evaluation on " \
           "validation days defined the share); using its latest checkpoint step_000000000320.pt" in caplog.text


@pytest.mark.parametrize("algo", list(ALGOS))
def test_same_seed_gives_identical_logs_and_another_seed_differs(train_main, monkeypatch, tmp_path, algo):
    first = logged_scalars(fresh_run(train_main, monkeypatch, tmp_path / "a", algo))
    second = logged_scalars(fresh_run(train_main, monkeypatch, tmp_path / "b", algo))
    other_seed = logged_scalars(fresh_run(train_main, monkeypatch, tmp_path / "c", algo, "seed=1"))
    assert first == second
    assert first["train/episode_return"] != other_seed["train/episode_return"]


@pytest.mark.parametrize("algo", list(ALGOS))
def test_resume_with_a_larger_budget_equals_an_uninterrupted_run(train_main, monkeypatch, tmp_path, algo):
    uninterrupted = fresh_run(train_main, monkeypatch, tmp_path / "full", algo)
    # Stops at 192 = a multiple of eval_interval, so it has no extra final evaluation.
    resumed = fresh_run(train_main, monkeypatch, tmp_path / "resumed", algo, "total_env_steps=192",
                        "checkpoint_interval=192")
    run_train(train_main, monkeypatch, f"resume={resumed}", "total_env_steps=320")
    assert logged_scalars(resumed) == logged_scalars(uninterrupted)
    assert load_checkpoint(list_checkpoints(resumed)[-1]).env_steps == 320
    assert saved_best(resumed) == saved_best(uninterrupted)
    # The run's config, even where the best came before 192: evaluate.py pools the seeds of one training setting.
    assert load_checkpoint(best_checkpoint_path(resumed)).config["total_env_steps"] == 320


def test_a_run_that_learns_from_mpc_resumes_as_if_uninterrupted(train_main, monkeypatch, tmp_path):
    # The demonstrations of the warm start travel in the checkpoint: the resumed PPO keeps imitating the same ones.
    learns_from_mpc = ["algo=mappo", "algo.num_minibatches=2", "algo.update_epochs=1", "algo.hidden_sizes=[8]",
                       "algo.imitation_days=4", "algo.imitation_epochs=2", "algo.imitation_teacher=mpc",
                       "algo.imitation_rounds=1", "algo.imitation_coef=1.0"]
    uninterrupted, resumed = tmp_path / "full", tmp_path / "resumed"
    run_train(train_main, monkeypatch, *learns_from_mpc, *TINY, f"hydra.run.dir={uninterrupted}")
    run_train(train_main, monkeypatch, *learns_from_mpc, *TINY, f"hydra.run.dir={resumed}", "total_env_steps=192",
              "checkpoint_interval=192")
    run_train(train_main, monkeypatch, f"resume={resumed}", "total_env_steps=320")
    wall_clock = {"train/steps_per_second", "train/imitation/teacher_seconds"}
    scalars, expected = ({tag: values for tag, values in logged_scalars(run).items() if tag not in wall_clock}
                         for run in (resumed, uninterrupted))
    assert scalars == expected
    assert [step for step, _ in scalars["train/imitation/teacher_cost"]] == [32]  # the warm start ran once
    assert len(scalars["train/imitation_loss"]) == 10


def test_threads_solve_the_teachers_lps_side_by_side_and_a_run_repeats_with_the_same_count(train_main, monkeypatch,
                                                                                            tmp_path):
    """MPC plans the same with two threads (each LP is solved alone); torch may round differently with two, so a
    run repeats its numbers with the same count of threads."""
    learns_from_mpc = ["algo=maddpg", "algo.hidden_sizes=[8]", "algo.num_envs=4", "algo.learning_starts=64",
                       "algo.imitation_days=4", "algo.imitation_epochs=2", "algo.imitation_teacher=mpc",
                       "algo.imitation_rounds=1", "algo.imitation_coef=1.0"]
    runs = {}
    for name, threads in (("one", 1), ("two", 2), ("two_again", 2)):
        run_train(train_main, monkeypatch, *learns_from_mpc, *TINY, f"threads={threads}",
                  f"hydra.run.dir={tmp_path / name}")
        runs[name] = {tag: values for tag, values in logged_scalars(tmp_path / name).items()
                      if tag not in {"train/steps_per_second", "train/imitation/teacher_seconds"}}
    np.testing.assert_equal(runs["two"], runs["two_again"])  # NaN where the critic has not updated yet, in both
    assert runs["two"]["train/imitation/teacher_cost"] == runs["one"]["train/imitation/teacher_cost"]
    try:
        assert torch.get_num_threads() == 2  # the run's torch threads
    finally:
        torch.set_num_threads(1)  # as the tests after this one expect


def test_resume_after_an_interruption_relogs_the_lost_steps_once(train_main, monkeypatch, tmp_path):
    uninterrupted = fresh_run(train_main, monkeypatch, tmp_path / "full", "dqn", "seed=1")  # best after 160
    # An interruption after the checkpoint at 160: the logs run on to 320, the last checkpoint is lost.
    interrupted = tmp_path / "interrupted"
    shutil.copytree(uninterrupted, interrupted)
    list_checkpoints(interrupted)[-1].unlink()
    (events,) = interrupted.glob("events.out.tfevents.*")
    with open(events, "ab") as file:  # the kill cut the last record short
        file.write(events.read_bytes()[-40:-10])
    run_train(train_main, monkeypatch, f"resume={interrupted}")
    resumed_logs = logged_scalars(interrupted)
    assert resumed_logs == logged_scalars(uninterrupted)
    assert [step for step, _ in resumed_logs["train/episode_return"]] == list(range(32, 321, 32))
    # Raw readers (tbparse does not apply TensorBoard's purge) see every (tag, step) once, too.
    raw = SummaryReader(str(interrupted)).scalars
    assert not raw.duplicated(["tag", "step"]).any()
    assert len(raw) == len(SummaryReader(str(uninterrupted)).scalars)
    # This seed's best comes after the checkpoint at 160: its best.pt went with the lost steps and came back.
    assert saved_best(uninterrupted)[0] > 160 and saved_best(interrupted) == saved_best(uninterrupted)
    assert "Removed best.pt of the evaluation at" in (interrupted / "train.log").read_text()


def test_resume_falls_back_to_the_newest_intact_checkpoint_and_says_so(train_main, monkeypatch, tmp_path):
    uninterrupted = fresh_run(train_main, monkeypatch, tmp_path / "full", "dqn", "seed=1")  # best after 160
    damaged = tmp_path / "damaged"
    shutil.copytree(uninterrupted, damaged)
    newest = list_checkpoints(damaged)[-1]
    data = bytearray(newest.read_bytes())
    data[-100] ^= 0xFF  # one flipped bit pattern in the weights
    newest.write_bytes(bytes(data))
    best = best_checkpoint_path(damaged)
    best.write_bytes(best.read_bytes()[:-100])  # truncated
    run_train(train_main, monkeypatch, f"resume={damaged}")
    assert logged_scalars(damaged) == logged_scalars(uninterrupted)
    log = (damaged / "train.log").read_text()
    assert f"checkpoint {best} is corrupt: its content does not match the checksum" in log
    assert best.with_name("best.pt.corrupt").is_file()
    # The best up to the checkpoint at 160 comes back from it; this seed's best comes later and is written again.
    assert saved_best(uninterrupted)[0] > 160 and saved_best(damaged) == saved_best(uninterrupted)
    assert f"checkpoint {newest} is corrupt: its content does not match the checksum" in log
    assert f"Resuming from {list_checkpoints(damaged)[0]}, the newest intact checkpoint" in log
    assert newest.with_name(newest.name + ".corrupt").is_file()  # kept for inspection, out of the run's list
    assert load_checkpoint(newest).env_steps == 320  # written again by the resumed run


def test_resume_is_refused_while_the_run_is_still_going(train_main, monkeypatch, tmp_path):
    run_dir = fresh_run(train_main, monkeypatch, tmp_path / "run", "qlearning", "total_env_steps=32")
    assert not (run_dir / LOCK_NAME).exists()  # released when the run ended
    still_running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run_dir / LOCK_NAME).write_text(f"{still_running.pid} {socket.gethostname()}\n")
        with pytest.raises(SystemExit, match=rf"^train.py: error: {re.escape(str(run_dir))} is still being "
                                             rf"trained by process {still_running.pid} "):
            run_train(train_main, monkeypatch, f"resume={run_dir}", "total_env_steps=64")
        assert [path.name for path in list_checkpoints(run_dir)] == ["step_000000000032.pt"]
    finally:
        still_running.kill()
        still_running.wait()
    # Its process gone (a killed run), the lock is stale: the resume goes ahead.
    run_train(train_main, monkeypatch, f"resume={run_dir}", "total_env_steps=64")
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).env_steps == 64
    assert not (run_dir / LOCK_NAME).exists()


def test_a_checkpoint_is_refused_on_an_environment_it_was_not_trained_for(train_main, monkeypatch, tmp_path):
    run_dir = fresh_run(train_main, monkeypatch, tmp_path / "run", "dqn", "total_env_steps=32")
    checkpoint = best_checkpoint_path(run_dir)  # the one a run directory plays
    assert load_checkpoint(checkpoint).env_spec["n_agents"] == 3
    for change, difference in (({"n_agents": 4}, r"n_agents=3 \(here 4\)"), ({"dt_h": 1.0}, r"dt_h=3.0 \(here 1.0\)"),
                               ({"forecaster": "oracle"}, r"forecasts=\{'forecaster': 'persistence', "
                                                          r"'forecast_horizon_h': 24.0\} \(here \{'forecaster': "
                                                          r"'oracle', 'forecast_horizon_h': 24.0\}\)")):
        with pytest.raises(CheckpointError, match=rf"^checkpoint {re.escape(str(checkpoint))} was trained for "
                                                  rf"another environment: {difference}$"):
            load_policy(run_dir, EnvConfig(**{**TINY_ENV, **change}))
    assert load_policy(run_dir, EnvConfig(**TINY_ENV)).name == "dqn"


def test_a_policy_observes_as_it_was_trained_beside_runs_that_observe_otherwise(train_main, monkeypatch, tmp_path):
    """The forecast window's shape (forecast_bins) and the extra features are the policy's own observation, not
    its environment: a run trained with them plays on an environment without them (and one trained without them
    on one with them) exactly as on its own, the same physics observed as in training; every other difference is
    still refused."""
    binned = fresh_run(train_main, monkeypatch, tmp_path / "binned", "dqn", "total_env_steps=64", "env.forecast_bins=4",
                       "env.extra_features=[feeder_position,community_soc]")
    plain = fresh_run(train_main, monkeypatch, tmp_path / "plain", "dqn", "total_env_steps=64")
    without = EnvConfig(**TINY_ENV)
    with_bins = EnvConfig(**TINY_ENV, forecast_bins=4, extra_features=["community_soc", "feeder_position"])
    days = CommunityCore(without).split_days["test"][:3]
    for run_dir, own, other in ((binned, with_bins, without), (plain, without, with_bins)):
        on_its_own, beside = load_policy(run_dir, own), load_policy(run_dir, other)
        assert on_its_own.observation_settings == beside.observation_settings == {
            "forecast_bins": own.forecast_bins, "extra_features": own.extra_features}
        expected = rollout_days(own, on_its_own, days)
        played = rollout_days(other, beside, days)
        assert played.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(played[key], expected[key], err_msg=key)
    with pytest.raises(ValueError, match=r"observes with \{'forecast_bins': 4, 'extra_features': \['community_soc', "
                                         r"'feeder_position'\]\}, this core with \{'forecast_bins': 0, "
                                         r"'extra_features': \[\]\}"):
        rollout(CommunityCore(without, batch_size=len(days)), load_policy(binned, without), days)
    with pytest.raises(CheckpointError, match=r"forecasts=.*'forecaster': 'persistence'.*\(here .*'oracle'"):
        load_policy(binned, EnvConfig(**TINY_ENV, forecaster="oracle"))
    for change, here in (({"forecast_horizon_h": 6.0}, "dt_h=3.0, forecast_horizon_h=6.0"),
                         ({"dt_h": 12.0}, "dt_h=12.0, forecast_horizon_h=24.0")):
        message = (rf"^checkpoint {re.escape(str(best_checkpoint_path(binned)))} was trained for another environment: "
                   rf"its forecast_bins=4 cut a forecast window of dt_h=3.0, forecast_horizon_h=24.0 \(here {here}\): "
                   r"forecast_bins=4 must divide the forecast window's 2 steps")
        with pytest.raises(CheckpointError, match=message):
            load_policy(binned, EnvConfig(**{**TINY_ENV, **change}))
    # Checkpoints written before their forecast spec named the bins hold them in their features only.
    checkpoint = load_checkpoint(best_checkpoint_path(binned))
    forecasts = {key: value for key, value in checkpoint.env_spec["forecasts"].items() if key != "forecast_bins"}
    older = dataclasses.replace(checkpoint, env_spec={**checkpoint.env_spec, "forecasts": forecasts})
    assert older.observation_settings(without) == {"forecast_bins": 4, "extra_features": ["community_soc",
                                                                                       "feeder_position"]}
    older.check_environment(older.observed_config(without))
    with pytest.raises(CheckpointError, match="obs_features="):
        older.check_environment(without)


@pytest.mark.parametrize("rule", [TimeOfUse, lambda: ZeroIntelligence(seed=3)])
@pytest.mark.parametrize("forecaster", ["persistence", "noisy"])
def test_the_forecast_bins_change_what_is_observed_and_nothing_else(rule, forecaster):
    """The same policy on the same days with and without the bins: every info (energy, money, the feeder) equal."""
    config = EnvConfig(**TINY_ENV, forecaster=forecaster)
    days = CommunityCore(config).split_days["test"]
    plain, binned = (rollout_days(config.replace(forecast_bins=bins), rule(), days) for bins in (0, 4))
    for key in plain:
        np.testing.assert_array_equal(binned[key], plain[key], err_msg=key)


@pytest.mark.parametrize("overrides, message", [
    (["algo=no_such_algo"], "Could not find 'algo/no_such_algo'"),
    (["algo.learning_rate=-0.1"], "qlearning.learning_rate=-0.1 is out of range; allowed (0.0, 1.0]"),
    (["algo=dqn", "algo.learning_rate=-0.1"], "dqn.learning_rate=-0.1 is out of range; allowed (0.0, 1.0]"),
    (["env.n_agents=0"], "env.n_agents=0 is out of range"),
    (["eval_interval=0"], "eval_interval=0 is out of range"),
    (["threads=0"], "threads=0 is out of range; allowed [1, 1024]"),
    (["env.split=test"], "env.split='test', env.day=None: train.py trains on the training days only"),
    (["env.day=3"], "env.split='train', env.day=3: train.py trains on the training days only"),
    (["algo=mappo", "env.cooperative_weight=1.0"], "env.cooperative_weight=1.0 would be replaced by "
                                                   "mappo.cooperative_weight=0.0 in training"),
    (["env.offpeak_start_h=20"], "env.offpeak_end_h, peak_start_h, peak_end_h, offpeak_start_h = 7.0, 17.0, 21.0, "
                                 "20.0: the tariff's hours must run"),
])
def test_bad_config_fails_fast_with_a_message_naming_the_key(train_main, monkeypatch, tmp_path, capsys,
                                                             overrides, message):
    with pytest.raises(SystemExit) as stop:
        run_train(train_main, monkeypatch, *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert stop.value.code != 0
    assert message in f"{stop.value.code} {capsys.readouterr().err}"
    assert not (tmp_path / "run").exists()  # no empty run directory for a later glob to trip over


def test_bad_resume_fails_fast(train_main, monkeypatch, tmp_path):
    missing = tmp_path / "no_such_run"
    with pytest.raises(SystemExit, match=f"resume={missing} is not a directory"):
        run_train(train_main, monkeypatch, f"resume={missing}")
    assert not missing.exists()  # Hydra did not create it
    not_a_run = tmp_path / "notes"
    not_a_run.mkdir()
    with pytest.raises(SystemExit, match=f"resume={not_a_run} has no checkpoints/ folder"):
        run_train(train_main, monkeypatch, f"resume={not_a_run}")
    assert not list(not_a_run.iterdir())  # Hydra wrote no log into it
    run_dir = fresh_run(train_main, monkeypatch, tmp_path / "run", "qlearning", "total_env_steps=32")
    with pytest.raises(SystemExit, match=f"resume={run_dir} continues that run in its own directory, and "
                                         "hydra.run.dir sends the output to"):
        run_train(train_main, monkeypatch, f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'elsewhere'}")
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(SystemExit, match=r"only \['total_env_steps', 'progress'\] may be set with it, "
                                         r"got \['algo.learning_rate'\]"):
        run_train(train_main, monkeypatch, f"resume={run_dir}", "algo.learning_rate=0.5")


def test_a_run_without_intact_checkpoints_says_why(train_main, monkeypatch, tmp_path):
    """Its checkpoints folder given for the run, or every checkpoint set aside as corrupt: the message says so."""
    run_dir = fresh_run(train_main, monkeypatch, tmp_path / "run", "qlearning", "total_env_steps=32")
    with pytest.raises(FileNotFoundError, match="it is a run's checkpoints folder: give the run directory above it"):
        load_policy(run_dir / "checkpoints", run_checkpoint="last")
    for path in list_checkpoints(run_dir):
        path.rename(path.with_name(path.name + ".corrupt"))
    with pytest.raises(FileNotFoundError, match=r"holds no intact checkpoint: every one was set aside as corrupt "
                                                r"\(step_\d+\.pt\.corrupt"):
        load_policy(run_dir, run_checkpoint="last")


def test_load_policy_names_missing_and_corrupt_files(train_main, monkeypatch, tmp_path):
    run_dir = fresh_run(train_main, monkeypatch, tmp_path / "run", "dqn", "total_env_steps=32")
    corrupted = tmp_path / "altered.pt"
    data = bytearray(list_checkpoints(run_dir)[-1].read_bytes())
    data[-100] ^= 0xFF  # altered weights
    corrupted.write_bytes(bytes(data))
    with pytest.raises(FileNotFoundError, match="no_such_file.pt does not exist"):
        load_policy(tmp_path / "no_such_file.pt")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        load_policy(tmp_path)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint at all\n")
    with pytest.raises(CheckpointError, match=f"{text} is not a p2p_marl training checkpoint"):
        load_policy(text)
    with pytest.raises(CheckpointError, match=f"{corrupted} is corrupt: its content does not match the checksum"):
        load_policy(corrupted)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match=f"{foreign} is not a p2p_marl training checkpoint"):
        load_policy(foreign)


def test_multirun_sweeps_algos(train_main, monkeypatch, tmp_path):
    run_train(train_main, monkeypatch, "-m", "algo=qlearning,dqn", *TINY, "total_env_steps=64",
              "algo.num_envs=4", f"hydra.sweep.dir={tmp_path}")
    runs = sorted(path.name for path in tmp_path.iterdir() if path.is_dir())
    assert runs == ["community_10_dqn_seed0_1", "community_10_qlearning_seed0_0"]
    for name in runs:
        assert list_checkpoints(tmp_path / name)


def composed(*overrides: str, hydra_config: bool = False):
    """configs/config.yaml composed by Hydra as train.py composes it."""
    register_configs()
    return compose_config("config", *overrides, hydra_config=hydra_config)


@pytest.mark.parametrize("experiment", sorted(path.stem for path in (ROOT / "configs" / "experiment").glob("*.yaml")))
def test_every_experiment_composes_into_a_valid_run_of_each_learner_it_sweeps(experiment):
    hydra_config = composed(f"experiment={experiment}", hydra_config=True).hydra
    # The learners the sweep names, or the one the experiment composes with where it sweeps none.
    for algo in str((hydra_config.sweeper.params or {}).get("algo", hydra_config.runtime.choices.algo)).split(","):
        settings = validate_config(OmegaConf.to_container(composed(f"experiment={experiment}", f"algo={algo}"),
                                                          resolve=True))
        assert settings.algo["name"] == algo


TEACHING_KEYS = {"imitation_teacher": "mpc", "imitation_days": 128, "imitation_rounds": 3, "imitation_epochs": 100,
                 "imitation_coef": 1.0}


@pytest.mark.parametrize("experiment, algo, algo_changes, env_changes", [
    ("comparison_from_mpc", "mappo", {**TEACHING_KEYS, "voltage_margin_pu": 0.0075, "lr_end_fraction": 0.0}, {}),
    ("comparison_maddpg_from_mpc", "maddpg", {**TEACHING_KEYS, "actor_q_normalised": True, "voltage_margin_pu": 0.0075,
                                              "imitation_smoothing_per_kwh": 0.002}, {"forecast_bins": 0}),
])
def test_a_taught_comparison_is_the_comparison_with_the_teaching_keys(experiment, algo, algo_changes, env_changes):
    """The comparison's mappo#2 is MAPPO taught by MPC on a narrowed band with a decaying step size, its maddpg#2
    MADDPG taught by MPC with power smoothing on the same narrowed band, without the bins and with TD3+BC's balance
    of its actor's two losses: each differs from experiment=comparison in those keys only, five seeds."""
    comparison, taught = (OmegaConf.to_container(composed(f"experiment={name}", f"algo={algo}"), resolve=True)
                          for name in ("comparison", experiment))
    for group, changes in (("algo", algo_changes), ("env", env_changes)):
        assert {key: value for key, value in taught[group].items() if comparison[group][key] != value} == changes
    assert {**taught, "algo": None, "env": None} == {**comparison, "algo": None, "env": None}
    sweep = composed(f"experiment={experiment}", hydra_config=True).hydra
    assert (sweep.sweeper.params.algo, sweep.sweeper.params.seed, sweep.launcher.n_jobs) == (algo, "0,1,2,3,4", 2)


@pytest.mark.parametrize("algo", ["maddpg", "mappo", "dqn", "qlearning"])
def test_the_comparison_through_the_filter_is_the_comparison_with_the_filter_in_the_environment(algo):
    comparison, filtered = (OmegaConf.to_container(composed(f"experiment={name}", f"algo={algo}"), resolve=True)
                            for name in ("comparison", "comparison_through_filter"))
    assert not comparison["env"]["safety_filter"]
    assert filtered["env"] == {**comparison["env"], "safety_filter": True}
    assert {**filtered, "env": None} == {**comparison, "env": None}
    sweeps = [composed(f"experiment={name}", hydra_config=True).hydra for name in ("comparison",
                                                                                 "comparison_through_filter")]
    assert sweeps[0].sweeper.params == sweeps[1].sweeper.params and sweeps[1].launcher.n_jobs == 2


def test_sweeps_started_in_the_same_second_get_directories_of_their_own(train_main, monkeypatch, tmp_path):
    same_name = f"hydra.sweep.dir='${{p2p_new_dir:{tmp_path / 'sweep'}}}'"
    for _ in range(2):
        run_train(train_main, monkeypatch, "-m", "algo=qlearning", *TINY, "total_env_steps=32", same_name)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sweep", "sweep_2"]
    for sweep in ("sweep", "sweep_2"):
        assert list_checkpoints(tmp_path / sweep / "community_10_qlearning_seed0_0")


@pytest.mark.parametrize("launcher, started", [
    (["hydra/launcher=local", "hydra.launcher.n_jobs=2"], "Joblib.Parallel(n_jobs=2"),
    (["hydra/launcher=ray", "hydra.launcher.num_cpus=2"], "Ray launcher: 2 jobs, 1 CPU each, on 2 CPUs"),
], ids=["joblib", "ray"])
def test_launcher_presets_run_a_two_job_sweep_in_parallel(launcher, started, tmp_path):
    """The local (hydra-joblib-launcher) and ray (hydra_plugins/p2p_marl_ray_launcher) presets run a 2-job sweep
    in separate processes, each job writing its own run directory."""
    if "hydra/launcher=ray" in launcher:
        pytest.importorskip("ray")
    # The default's resolver of hydra.sweep.dir with a fixed name: every job finds the one directory it created.
    result = run_train_process("-m", *launcher, "algo=qlearning", "seed=0,1", *TINY, "total_env_steps=64",
                               f"hydra.sweep.dir='${{p2p_new_dir:{tmp_path / 'sweep'}}}'")
    assert result.returncode == 0, result.stderr[-2000:]
    assert started in result.stdout + result.stderr
    assert [path.name for path in tmp_path.iterdir()] == ["sweep"]
    runs = sorted(path.name for path in (tmp_path / "sweep").iterdir() if path.is_dir())
    assert runs == ["community_10_qlearning_seed0_0", "community_10_qlearning_seed1_1"]
    for name in runs:
        assert list_checkpoints(tmp_path / "sweep" / name)


def test_ray_sweep_reports_a_job_that_exits_with_an_error(tmp_path):
    """A job that stops with train.py's one-line error fails once (no Ray retry) and its message reaches the user."""
    pytest.importorskip("ray")
    result = run_train_process("-m", "hydra/launcher=ray", "hydra.launcher.num_cpus=1", "algo=qlearning",
                               "env.n_agents=0", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode != 0
    assert "env.n_agents=0 is out of range; allowed [1, 10000]" in result.stderr
    assert "WorkerCrashedError" not in result.stderr


def test_checkpoints_written_before_checksums_still_load(train_main, monkeypatch, tmp_path):
    """Format 1 (a bare torch.save of the payload, no header, no env_spec): read without the checksum, its
    environment taken from its config."""
    run_dir = fresh_run(train_main, monkeypatch, tmp_path / "run", "qlearning", "total_env_steps=32")
    current = load_checkpoint(list_checkpoints(run_dir)[-1])
    legacy = tmp_path / "legacy.pt"
    torch.save({"format": 1, "config": current.config, "learner": current.learner_state,
                "loop": current.loop_state, "env_steps": current.env_steps, "finished": current.finished}, legacy)
    assert load_checkpoint(legacy).env_spec == current.env_spec
    assert load_policy(legacy, EnvConfig(**TINY_ENV)).name == "qlearning"
    with pytest.raises(CheckpointError, match=r"n_agents=3 \(here 4\)"):
        load_policy(legacy, EnvConfig(**{**TINY_ENV, "n_agents": 4}))


def test_runs_started_in_the_same_second_get_directories_of_their_own(tmp_path):
    """Two launches of one command at once (a shell loop starting runs in the background) with the default
    resolver of hydra.run.dir, here given one fixed name: the second takes <name>_2."""
    same_name = f"hydra.run.dir='${{p2p_run_dir:${{resume}},{tmp_path / 'run'}}}'"
    command = [sys.executable, str(ROOT / "train.py"), "algo=qlearning", *TINY, "total_env_steps=64", same_name]
    launch_twice_at_once(command, ROOT)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "run_2"]
    for name in ("run", "run_2"):
        assert [path.name for path in list_checkpoints(tmp_path / name)] == ["step_000000000064.pt"]
        assert (tmp_path / name / ".hydra" / "config.yaml").is_file()
        assert (tmp_path / name / "train.log").read_text().count("Finished qlearning") == 1


def test_piped_console_shows_progress_lines_one_step_count_and_the_comparison_table(tmp_path):
    """Output redirected to a file: a line every few percent (no bar refreshes), every count in the same
    community-steps (the last iteration overshoots 300 to 320), no HiGHS banner, and a closing table of the
    learner beside the benchmarks within 100 columns."""
    result = run_train_process("algo=qlearning", *TINY, "progress=true", "total_env_steps=300",
                               f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "\r" not in output and "Running HiGHS" not in output
    progress = [line for line in output.splitlines() if "p2p_marl.progress" in line]
    assert 5 <= len(progress) <= 21
    assert "qlearning seed 0: 100% (320/320 community-steps, " in progress[-1]
    assert "Finished qlearning after 320 community-steps" in output
    assert [path.name for path in list_checkpoints(tmp_path)][-1] == "step_000000000320.pt"
    table = output[output.index("qlearning after training"):].splitlines()
    assert max(len(line) for line in table) <= 100
    rows = [line.split()[0] for line in table if line.strip()]
    assert {"qlearning", "grid", "best", "optimum"} <= set(rows)
    assert "best rule: self_consumption" in output or "best rule: time_of_use" in output


@pytest.mark.parametrize("full_error", [False, True], ids=["one_line", "HYDRA_FULL_ERROR"])
def test_a_bad_profile_csv_stops_train_with_one_line_and_no_run_directory(tmp_path, full_error):
    csv_file = tmp_path / "profiles.csv"
    csv_file.write_text("timestamp,household,load_kw\n2023-06-01T00:00:00,a,0.5\n")
    run_dir = tmp_path / "run"
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "env.n_agents=1", f"env.data_csv={csv_file}",
                             f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 1
    message = f"{csv_file}: line 1, column pv_kw: missing from the header"
    if full_error:
        assert "Traceback" in result.stderr and message in result.stderr
    else:
        assert result.stderr.strip().startswith(f"train.py: error: {message}")
        assert len(result.stderr.strip().splitlines()) == 1
    assert not run_dir.exists()


def test_training_evaluates_on_validation_days_and_never_on_test_days():
    env_config = EnvConfig(**TINY_ENV)
    core = CommunityCore(env_config)
    evaluator = HeldOutDaysEvaluator(env_config, eval_days=None)
    np.testing.assert_array_equal(evaluator.days, core.validation_days)
    assert not set(evaluator.days) & set(core.test_days) and not set(evaluator.days) & set(core.train_days)


def test_learning_curves_group_seeds_and_read_back_every_evaluation(train_main, monkeypatch, tmp_path):
    runs = [fresh_run(train_main, monkeypatch, tmp_path / f"{algo}_{seed}", algo, f"seed={seed}")
            for algo, seed in (("qlearning", 0), ("qlearning", 1), ("dqn", 0))]
    out = tmp_path / "curves"
    learning_curves.main([*map(str, runs), "--out", str(out)])
    assert (out / "learning_curves.png").read_bytes().startswith(b"\x89PNG")
    rows = {line.split(" | ")[0].strip("| "): line for line in (out / "learning_curves.md").read_text().splitlines()}
    last = {run: logged_scalars(run)["eval/share_of_optimal_saving"][-1][1] for run in runs}
    # A group is named "<learner> (<keys changed from its defaults>)": the tiny DQN changes some, Q-learning none.
    qlearning, _, dqn = (learning_curves.read_run(run)[0].learner for run in runs)
    assert qlearning == "qlearning" and dqn.startswith("dqn (") and "learning_starts=64" in dqn
    seeds = [float(value) for value in rows[qlearning].split(" | ")[2].split(" / ")]
    np.testing.assert_allclose(seeds, [last[runs[0]], last[runs[1]]], atol=5e-4)  # the table rounds to 3 digits
    assert rows[dqn].split(" | ")[2] == f"{last[runs[2]]:.3f}"
    best_step, best_share = max(logged_scalars(runs[2])["eval/share_of_optimal_saving"], key=lambda e: e[1])
    assert rows[dqn].split(" | ")[4] == f"{best_share:.3f} ({best_step})"  # the checkpoint played; 1000+: "450k"
    violations_at_best = dict(logged_scalars(runs[2])["eval/violation_day"])[best_step]
    assert rows[dqn].split(" | ")[6] == f"{violations_at_best:.0%} ({violations_at_best:.0%}) |"
    curves = learning_curves.group([learning_curves.read_run(run)[0] for run in runs])
    assert list(curves) == [dqn, qlearning] and [c.seed for c in curves[qlearning]] == [0, 1]
    assert curves[dqn][0].steps.tolist() == [step for step, _ in logged_scalars(runs[2])[
        "eval/share_of_optimal_saving"]]
    assert np.all(np.diff(curves[dqn][0].minutes) >= 0)
    assert curves[dqn][0].minutes[0] > 0.0  # counted from the run's start, not from its first evaluation


def test_a_runs_start_is_its_event_files_first_event_before_any_scalar(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    writer.add_scalar("eval/share_of_optimal_saving", 0.5, 100, walltime=time.time() + 600.0)  # a slow warm start
    writer.close()
    started = first_wall_time(tmp_path)
    scalar_time = SummaryReader(str(tmp_path), extra_columns={"wall_time"}).scalars.wall_time.min()
    assert started is not None and started < scalar_time - 500.0
    assert first_wall_time(tmp_path / "empty") is None


def test_the_learning_curve_legend_stays_inside_the_picture_however_long_a_variant_is_named(tmp_path):
    """A variant named by six changed keys (198 characters) is wrapped, not cut at the picture's edges."""
    long_name = "mappo (" + ", ".join(f"a_long_hyperparameter_{index}={index / 7:.4f}" for index in range(6)) + ")"
    curves = {name: [learning_curves.RunCurve(name, seed, np.array([1.0, 2.0]), np.array([1.0, 2.0]),
                                              np.array([0.5, 0.6]), 2) for seed in (0, 1)]
              for name in ("mappo", long_name)}
    path = tmp_path / "curves.png"
    learning_curves.plot(path, curves, {"best rule": 0.4, "MPC": 0.9}, "title")
    picture = plt.imread(path)[..., :3]
    edges = np.concatenate([picture[:, :2], picture[:, -2:]], axis=1)
    assert len(long_name) > 150 and np.all(edges > 0.99)  # nothing drawn on the outermost pixel columns


def test_a_variant_is_named_by_the_hyperparameters_that_differ_from_the_defaults_and_follows_its_learner():
    defaults = dataclasses.asdict(MAPPOConfig())
    assert learning_curves.variant_label(defaults) == "mappo"
    variant = learning_curves.variant_label({**defaults, "imitation_days": 256, "cooperative_weight": 1.0})
    assert variant == "mappo (cooperative_weight=1.0, imitation_days=256)"
    curve = {label: learning_curves.RunCurve(label, 0, np.zeros(1), np.zeros(1), np.zeros(1), 600_000)
             for label in ("dqn", variant, "mappo")}
    assert list(learning_curves.group(list(curve.values()))) == ["mappo", variant, "dqn"]


def test_the_violation_column_reads_each_seeds_best_evaluation_and_marks_a_missing_one():
    def run(seed, share, violations):
        return learning_curves.RunCurve("mappo", seed, np.array([1000, 2000, 3000]), np.zeros(3), np.array(share),
                                        600_000, None if violations is None else np.array(violations))

    table = learning_curves.markdown({"mappo": [run(0, [0.1, 0.5, 0.3], [0.9, 0.25, 0.0]),
                                                run(1, [0.6, 0.2, 0.6], [0.5, 0.0, 0.0])]})
    assert table.splitlines()[2].endswith("| 38% (25% / 50%) |")  # the best evaluations: the first of a tie
    for missing in (None, [0.9, np.nan, 0.0]):  # not logged at all, or not at the best evaluation
        table = learning_curves.markdown({"mappo": [run(0, [0.1, 0.5, 0.3], missing), run(1, [0.6, 0.2, 0.6],
                                                                                          [0.5, 0.0, 0.0])]})
        assert table.splitlines()[2].endswith("| – |")


def test_runs_of_one_variant_with_different_budgets_are_named_by_them():
    def run(label, seed, budget):
        return learning_curves.RunCurve(label, seed, np.zeros(1), np.zeros(1), np.zeros(1), budget)

    variant = "maddpg (env.forecast_bins=12)"
    runs = [run(variant, 0, 600_000), run(variant, 0, 900_000), run(variant, 1, 900_000), run("dqn", 0, 600_000)]
    groups = learning_curves.group(runs)
    assert {label: [curve.seed for curve in curves] for label, curves in groups.items()} == {
        "maddpg (env.forecast_bins=12, total_env_steps=600000)": [0],
        "maddpg (env.forecast_bins=12, total_env_steps=900000)": [0, 1],
        "dqn": [0]}  # one budget: no name
    assert list(learning_curves.group([run("mappo", 0, 6), run("mappo", 1, 9)])) == [
        "mappo (total_env_steps=6)", "mappo (total_env_steps=9)"]


def test_runs_that_differ_only_in_what_they_observe_are_compared_and_named_by_it(train_main, monkeypatch, tmp_path):
    """Forecasts and extra observation features change what a learner observes, not the days, the grid-only bill
    or the optimum its share is measured against: such runs are plotted together, each group named by its
    forecast settings and features; any other difference of the environment is refused."""
    assert learning_curves.observation_changes(EnvConfig()) == []
    assert learning_curves.observation_changes(EnvConfig(forecaster="noisy", forecast_nrmse=0.5)) == [
        "env.forecaster=noisy", "env.forecast_nrmse=0.5"]
    persistence = fresh_run(train_main, monkeypatch, tmp_path / "persistence", "qlearning")
    oracle = fresh_run(train_main, monkeypatch, tmp_path / "oracle", "qlearning", "env.forecaster=oracle")
    extra = fresh_run(train_main, monkeypatch, tmp_path / "extra", "qlearning",
                      "env.extra_features=[feeder_position,community_soc]")
    lines_envs = []
    monkeypatch.setattr(learning_curves, "benchmark_means", lambda env, eval_days: lines_envs.append(
        env.forecaster) or {"best rule": {"share_of_optimal_saving": 0.5, "violation_day": 0.25}})
    learning_curves.main([str(oracle), str(extra), str(persistence), "--out", str(tmp_path / "curves")])
    table = (tmp_path / "curves" / "learning_curves.md").read_text()
    rows = [line.split(" | ")[0].strip("| ") for line in table.splitlines()[2:] if line.startswith("|")]
    assert "- best rule: 0.500, days with violations 25%" in table
    assert rows == ["qlearning", "qlearning (env.extra_features=[community_soc,feeder_position])",
                    "qlearning (env.forecaster=oracle)"]
    assert lines_envs == ["persistence"]  # the reference lines: the default forecasts', though given second
    other_feeder = fresh_run(train_main, monkeypatch, tmp_path / "feeder", "qlearning", "env.feed_in_per_kwh=0.05")
    with pytest.raises(ConfigError, match="trained on different environments"):
        learning_curves.main([str(persistence), str(other_feeder), "--out", str(tmp_path / "refused")])


def test_the_forecast_keys_are_every_setting_that_shapes_the_forecasts():
    fields = {field.name for field in dataclasses.fields(EnvConfig) if field.name.startswith("forecast")}
    assert set(learning_curves.FORECAST_KEYS) == fields
    for forecaster in ("persistence", "noisy", "oracle"):
        assert set(forecast_spec(EnvConfig(forecaster=forecaster))) <= fields


def test_learning_curves_refuse_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(ConfigError, match=r"no .hydra/config.yaml; give train.py run directories"):
        learning_curves.read_run(tmp_path)


@pytest.mark.parametrize("learner_config, trained_with, label", [
    (MAPPOConfig, {"penalty_reward": "share", "value_heads": False}, "mappo (penalty_reward=share, value_heads=False)"),
    (DQNConfig, {"penalty_reward": "share"}, "dqn (penalty_reward=share)"),
], ids=["mappo", "dqn"])
def test_a_run_saved_before_a_key_existed_is_rebuilt_and_named_as_it_trained(learner_config, trained_with, label,
                                                                             tmp_path):
    """A checkpoint and run directory written before ``penalty_reward`` (and MAPPO's ``value_heads``) existed
    trained with the penalty share (and per-agent critic inputs): they load with "share" (and False), not today's
    defaults, and the learning curves name the run by them."""
    from p2p_marl.algos import build_learner
    from p2p_marl.training.checkpoint import environment_spec, save_checkpoint

    env = EnvConfig(**TINY_ENV)
    defaults = dataclasses.asdict(learner_config())
    assert all(defaults[key] != value for key, value in trained_with.items())  # the defaults moved since
    algo = {key: value for key, value in defaults.items() if key not in trained_with}
    learner = build_learner(env, algo | trained_with, seed=0)
    config = {"env": dataclasses.asdict(env), "algo": algo, "seed": 0}
    save_checkpoint(tmp_path / "old.pt", {"config": config, "env_spec": environment_spec(env),
                                          "learner": learner.state_dict(), "loop": {}, "env_steps": 0,
                                          "finished": False})
    checkpoint = load_checkpoint(tmp_path / "old.pt")
    assert {key: checkpoint.config["algo"][key] for key in trained_with} == trained_with
    rebuilt = checkpoint.build_learner()
    assert {key: getattr(rebuilt.config, key) for key in trained_with} == trained_with

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    with SummaryWriter(str(run_dir)) as writer:
        writer.add_scalar(learning_curves.TAG, 0.5, 32)
    assert learning_curves.read_run(run_dir)[0].learner == label
