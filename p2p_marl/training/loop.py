"""The training loop: learner iterations, TensorBoard logging, evaluation on validation days, checkpoints, resume.

A run calls ``learner.iterate()`` until ``learner.env_steps`` reaches ``total_env_steps`` (it ends with the
iteration that reaches it, so it may run past it by less than one iteration). It writes into its run directory:

- TensorBoard event files. Every ``learner.iterate()`` logs its metrics as ``train/<metric>`` (at least
  ``episode_return``, the mean over households of the day's summed reward, ``community_cost``, the losses and
  ``exploration`` where there is one) and ``perf/steps_per_second`` (community-steps per second of the
  iteration), at step = ``learner.env_steps``. Whenever ``env_steps`` passes a multiple of ``eval_interval``,
  and at the end, the greedy policy plays the validation days (never the test days, which are kept for reported
  results: ``python evaluate.py``) and every KPI of ``p2p_marl.evaluation.kpis`` is logged
  as ``eval/<kpi>`` (mean over the days where it is defined; left out where no day defines it),
  ``eval/share_of_optimal_saving`` first. The hyperparameters go in once as TensorBoard hparams (in the same
  directory; the HParams dashboard takes its metrics from the eval and train curves).
- Checkpoints whenever ``env_steps`` passes a multiple of ``checkpoint_interval``, and at the end
  (``p2p_marl.training.checkpoint``), and ``checkpoints/best.pt`` after every evaluation whose share of the
  optimal saving beats all earlier ones: the model chosen on validation days, which ``evaluate.py`` reports.

Every count of steps (progress, log lines, TensorBoard's x-axis, checkpoint names) is in community-steps. The
run ends with a table of the learner's last evaluation beside grid-only, the best rule and the optimum on the
same days (``p2p_marl.training.final_comparison``).

Resume: the learner, torch's global generator and the step count come back from the newest intact checkpoint.
Whatever an interrupted run logged after that checkpoint is removed from its event files before training
continues (``p2p_marl.training.event_files``), and logged again: the files hold every (tag, step) exactly once,
with the values an uninterrupted run logs. The best evaluation up to the checkpoint comes back from it too: a
``best.pt`` written after the checkpoint goes with the events after it (the run evaluates again on its way there),
and one kept is rewritten with the resumed run's config, so that a resumed run ends with the ``best.pt`` of an
uninterrupted one (on the same machine, where the evaluations reproduce). (A run resumed after it had finished,
with a larger ``total_env_steps``, keeps its final evaluation; an uninterrupted run has one there only if that
step is an evaluation step.)
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from p2p_marl.algos import build_learner
from p2p_marl.algos.base import Learner
from p2p_marl.baselines.policy import Policy
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import evaluate_policy, reference_costs
from p2p_marl.evaluation.report import summarize
from p2p_marl.progress import Progress
from p2p_marl.sim.community import CommunityCore
from p2p_marl.training.checkpoint import (Checkpoint, CheckpointError, best_checkpoint_path, checkpoint_path,
                                          environment_spec, load_checkpoint, prune_checkpoints, save_checkpoint,
                                          set_aside)
from p2p_marl.training.config import TrainConfig, validate_config
from p2p_marl.training.event_files import drop_events_after
from p2p_marl.training.final_comparison import comparison_table

log = logging.getLogger(__name__)

HEADLINE_KPI = "share_of_optimal_saving"


class HeldOutDaysEvaluator:
    """The greedy policy on the environment's validation days against the references of those days, which are
    computed once (the grid-only rollout and one optimal LP per day)."""

    def __init__(self, env_config: EnvConfig, eval_days: int | None):
        self.env_config = env_config
        self.days = CommunityCore(env_config).validation_days[:eval_days]
        self.references = reference_costs(env_config, self.days)

    def __call__(self, policy: Policy) -> dict[str, float]:
        """KPI -> mean over the days where it is defined, the headline KPI first; a KPI that no day defines
        (e.g. the clearing price without any P2P trade) is left out."""
        kpis = evaluate_policy(self.env_config, policy, self.days, self.references)
        means = {kpi: stats["mean"] for kpi, stats in summarize({"policy": kpis})["policy"].items()
                 if stats["mean"] is not None}
        return dict(sorted(means.items(), key=lambda item: item[0] != HEADLINE_KPI))


def _hparam_dict(config: dict[str, Any]) -> dict[str, Any]:
    """Flat hyperparameters for TensorBoard's HParams dashboard (values: bool, int, float or str)."""
    flat = {"algo": config["algo"]["name"], "seed": config["seed"], "total_env_steps": config["total_env_steps"],
            "env.n_agents": config["env"]["n_agents"]}
    for key, value in config["algo"].items():
        if key != "name":
            flat[f"algo.{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


def _wait_for_a_later_second(run_dir: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with its creation time in whole
    seconds. A resumed run's file must come after the files it continues (TensorBoard takes a step that goes
    back for a restart and drops what came after it), so it must not be created in the same second as the
    newest of them (the tie-break, host and process id, need not sort right)."""
    created_s = [int(path.name.split(".")[3]) for path in run_dir.glob("events.out.tfevents.*")]
    if created_s:
        time.sleep(max(max(created_s) + 1 - time.time(), 0.0))


def _crossed(previous_step: int, step: int, interval: int) -> bool:
    """Whether a multiple of ``interval`` lies in (previous_step, step]."""
    return step // interval > previous_step // interval


class Trainer:
    """One training run in ``run_dir``: fresh from ``config`` (a resolved config dict, see ``TrainConfig``),
    or continued from ``checkpoint`` (whose own config is then the run's)."""

    def __init__(self, config: dict[str, Any], run_dir: Path, checkpoint: Checkpoint | None = None):
        self.config = config
        self.settings: TrainConfig = validate_config(config)
        if checkpoint is not None:  # before any work: a checkpoint of another code's environment stops here
            checkpoint.check_environment(self.settings.env)
        self.run_dir = Path(run_dir)
        torch.set_num_threads(self.settings.threads)
        torch.manual_seed(self.settings.seed)
        self.learner: Learner = build_learner(self.settings.env, config["algo"], self.settings.seed,
                                              self.settings.threads)
        self.start_step = 0
        # The best evaluation so far (the share that best.pt holds and a new evaluation must beat) and its step.
        self.best_share, self.best_step = -math.inf, None
        if checkpoint is not None:
            self.learner.load_state_dict(checkpoint.learner_state)
            torch.set_rng_state(checkpoint.loop_state["torch_rng"])
            self.start_step = checkpoint.env_steps
            if "best_step" in checkpoint.loop_state:
                self.best_share = checkpoint.loop_state["best_validation_share"]
                self.best_step = checkpoint.loop_state["best_step"]
            else:
                log.warning("%s was written before runs kept their best evaluation: best.pt will hold the best "
                            "evaluation after %d community-steps", checkpoint.path, checkpoint.env_steps)
        self.evaluator = HeldOutDaysEvaluator(self.settings.env, self.settings.eval_days)
        self.last_eval: dict[str, float] = {}

    def run(self) -> dict[str, float]:
        """Train until ``total_env_steps``; returns the last evaluation (KPI -> value)."""
        settings, learner = self.settings, self.learner
        resumed = self.start_step > 0
        if resumed and learner.env_steps >= settings.total_env_steps:
            log.info("The run already has %d of total_env_steps=%d community-steps; nothing to do (pass a larger "
                     "total_env_steps to train on).", learner.env_steps, settings.total_env_steps)
            return self.last_eval
        if resumed:
            dropped = drop_events_after(self.run_dir, self.start_step)
            if dropped:
                log.info("Removed %d TensorBoard events logged after the checkpoint at %d community-steps; they "
                         "are logged again", dropped, self.start_step)
            self._resume_best()
            _wait_for_a_later_second(self.run_dir)
        writer = SummaryWriter(str(self.run_dir))
        if not resumed:
            for summary in hparams(_hparam_dict(self.config), {f"eval/{HEADLINE_KPI}": 0.0,
                                                               "eval/community_cost": 0.0,
                                                               "train/episode_return": 0.0}):
                writer.file_writer.add_summary(summary)
        name = self.config["algo"]["name"]
        progress = Progress(settings.total_env_steps, f"{name} seed {settings.seed}", "community-steps",
                            enabled=settings.progress, initial=learner.env_steps)
        evaluated_at = None
        try:
            while learner.env_steps < settings.total_env_steps:
                previous_step, start = learner.env_steps, time.perf_counter()
                metrics = learner.iterate()
                step = learner.env_steps
                for key, value in metrics.items():
                    writer.add_scalar(f"train/{key}", value, step)
                writer.add_scalar("perf/steps_per_second", (step - previous_step) / (time.perf_counter() - start),
                                  step)
                finished = step >= settings.total_env_steps
                if _crossed(previous_step, step, settings.eval_interval) or finished:
                    self._evaluate(writer, step, finished)
                    evaluated_at = step
                if _crossed(previous_step, step, settings.checkpoint_interval) or finished:
                    # Everything logged up to the checkpoint reaches the disk first: a resumed run drops
                    # only what comes after it.
                    writer.flush()
                    self._checkpoint(step, finished)
                shown = {"episode_return": f"{metrics['episode_return']:.3f}",
                         "share": f"{self.last_eval.get(HEADLINE_KPI, float('nan')):.3f}"}
                if finished:
                    progress.finish(step, **shown)
                else:
                    progress.update(step, **shown)
        finally:
            progress.close()
            writer.close()
        log.info("Finished %s after %d community-steps (last evaluation at %s community-steps); run directory %s",
                 name, learner.env_steps, evaluated_at, self.run_dir)
        best = best_checkpoint_path(self.run_dir)
        if best.is_file():
            log.info("Best evaluation: share of the optimal saving %.3f at %d community-steps, %s", self.best_share,
                     self.best_step, best.relative_to(self.run_dir))
        elif self.best_step is not None:
            log.warning("The best evaluation (share %.3f at %d community-steps) has no best.pt any more, and no "
                        "later one beat it: evaluate.py plays this run's latest checkpoint", self.best_share,
                        self.best_step)
        log.info("\n%s", comparison_table(name, self.last_eval, self.evaluator, self.settings.threads))
        return self.last_eval

    def _evaluate(self, writer: SummaryWriter, step: int, finished: bool) -> None:
        self.last_eval = self.evaluator(self.learner.policy())
        for kpi, value in self.last_eval.items():
            writer.add_scalar(f"eval/{kpi}", value, step)
        writer.flush()
        share = self.last_eval.get(HEADLINE_KPI, math.nan)
        if share > self.best_share:  # False for nan: no day defined the share
            self.best_share, self.best_step = share, step
            self._save(best_checkpoint_path(self.run_dir), step, finished)
        log.info("%d community-steps: share of the optimal saving %.3f, community cost %.3f per day (%d validation "
                 "days)", step, share, self.last_eval["community_cost"], len(self.evaluator.days))

    def _resume_best(self) -> None:
        """Bring ``best.pt`` to the state of the resume checkpoint: one written after it is removed (the events
        of its evaluation were dropped), one that does not read back is set aside, one kept carries this run's
        config (a larger ``total_env_steps``)."""
        path = best_checkpoint_path(self.run_dir)
        if not path.is_file():
            return
        try:
            best = load_checkpoint(path)
        except CheckpointError as error:
            set_aside(path, error)
            return
        if best.env_steps > self.start_step:
            path.unlink()
            log.info("Removed %s of the evaluation at %d community-steps, after the checkpoint; evaluated again",
                     path.name, best.env_steps)
        elif best.config != self.config:
            save_checkpoint(path, {"config": self.config, "env_spec": best.env_spec, "learner": best.learner_state,
                                   "loop": best.loop_state, "env_steps": best.env_steps, "finished": best.finished})

    def _save(self, path: Path, step: int, finished: bool) -> None:
        loop = {"torch_rng": torch.get_rng_state(), "best_validation_share": self.best_share,
                "best_step": self.best_step}
        save_checkpoint(path, {
            "config": self.config, "env_spec": environment_spec(self.settings.env),
            "learner": self.learner.state_dict(), "loop": loop, "env_steps": step, "finished": finished})

    def _checkpoint(self, step: int, finished: bool) -> None:
        path = checkpoint_path(self.run_dir, step)
        self._save(path, step, finished)
        prune_checkpoints(self.run_dir, self.settings.keep_checkpoints)
        log.info("%d community-steps: checkpoint %s", step, path.relative_to(self.run_dir))

