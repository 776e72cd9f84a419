"""Learning curves from training runs' TensorBoard logs: the share of the optimal saving on validation days.

    python -m p2p_marl.evaluation.learning_curves RUN_DIR [RUN_DIR ...] [--out DIR]

Each run directory (``train.py``'s, e.g. every job of ``python train.py -m experiment=comparison``) holds the event
files of its periodic evaluations (``eval/share_of_optimal_saving`` on the validation days) and its resolved config
(``.hydra/config.yaml``). Runs are grouped by learner and variant (their seeds; a variant is named by the
hyperparameters that differ from the learner's defaults, e.g. ``mappo (imitation_days=256)``, and by the forecast
settings that differ from the environment's, e.g. ``mappo (env.forecaster=oracle)``, which makes the table a
what-was-tried table when variants are given together); every run must have been trained on the same environment but
for its forecasts (which change what a learner observes, not the days, the grid-only bill or the optimum that the share
is measured against) and evaluated on the same days. The figure has two panels, the share against community-steps
and against wall-clock minutes since the run started (its first event; the mean over seeds of the time each evaluation
was reached), each with the mean over seeds as a line and the range over seeds as a band. The best rule, MPC with
the environment's forecaster (the default forecasts' if a run has them, else the first run's) and the optimum (= 1)
are horizontal lines, played here on the same validation days. Writes ``learning_curves.png`` and
``learning_curves.md`` (each learner's last evaluation and its best one, the evaluation whose learner
``checkpoints/best.pt`` keeps and ``evaluate.py`` plays: mean ± std over seeds, each seed's value, minutes per run,
and the share of validation days with a feeder violation at the best evaluation, beside the benchmarks' own below
the table) to ``--out`` (default: a new directory ``runs/learning_curves/<date>_<time>``), and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from tbparse import SummaryReader

from p2p_marl.algos import get_algo, saved_hyperparameters
from p2p_marl.config import DISCRETE_VIEW_KEYS, ConfigError, EnvConfig
from p2p_marl.evaluation.report import console, plt
from p2p_marl.run_dirs import script_output_dir
from p2p_marl.training.checkpoint import forecast_spec
from p2p_marl.training.event_files import first_wall_time
from p2p_marl.training.final_comparison import benchmark_rows
from p2p_marl.training.loop import HeldOutDaysEvaluator
from p2p_marl.sim.community import CommunityCore

TAG = "eval/share_of_optimal_saving"
VIOLATION_TAG = "eval/violation_day"  # the share of the evaluation's days with a voltage or loading violation
LEARNER_ORDER = ("mappo", "maddpg", "dqn", "qlearning")
# The environment's settings that shape only its forecasts and the observation's forecast features
# (p2p_marl.sim.forecasts; training.checkpoint.forecast_spec): EnvConfig names them all forecast*.
FORECAST_KEYS = tuple(field.name for field in dataclasses.fields(EnvConfig) if field.name.startswith("forecast"))
# ... and with them the observation's extra features: what a learner observes, not what it is measured on.
OBSERVATION_KEYS = (*FORECAST_KEYS, "extra_features")


@dataclass
class RunCurve:
    learner: str
    seed: int
    steps: np.ndarray  # community-steps of each evaluation
    minutes: np.ndarray  # wall-clock minutes since the run started (its event files' first event)
    share: np.ndarray
    total_env_steps: int | None  # the run's training budget [community-steps], if its config names it
    violation_days: np.ndarray | None = None  # share of days with a feeder violation at each evaluation (NaN: not
    # logged with it)


def read_run(run_dir: Path) -> tuple[RunCurve, EnvConfig, int | None]:
    """A run's curve, environment and ``eval_days``; ``ConfigError`` naming the directory if it is not a run."""
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"{run_dir}: no .hydra/config.yaml; give train.py run directories")
    settings = OmegaConf.to_container(OmegaConf.load(config_file), resolve=True)
    try:
        env = EnvConfig(**settings["env"])
    except ConfigError as error:
        raise ConfigError(f"{config_file}: env.{error}") from None
    scalars = SummaryReader(str(run_dir), extra_columns={"wall_time"}).scalars
    if scalars.empty or TAG not in set(scalars.tag):
        raise ConfigError(f"{run_dir}: its event files hold no {TAG} (no evaluation logged yet)")
    start = first_wall_time(run_dir)  # before every scalar: a warm start before the first iteration counts
    curve = scalars[scalars.tag == TAG].sort_values("step")
    # NaN at an evaluation whose violations were not logged with it (runs from before they were).
    violations = scalars[scalars.tag == VIOLATION_TAG]
    violation_at = dict(zip(violations.step, violations.value))
    violation_days = np.array([violation_at.get(step, np.nan) for step in curve.step], dtype=np.float64)
    label = variant_label(saved_hyperparameters(settings["algo"]), observation_changes(env))
    return (RunCurve(label, settings["seed"], curve.step.to_numpy(), (curve.wall_time.to_numpy() - start) / 60.0,
                     curve.value.to_numpy(), settings.get("total_env_steps"), violation_days),
            env, settings.get("eval_days"))


def variant_label(hyperparameters: dict, env_changes: tuple[str, ...] | list[str] = ()) -> str:
    """The learner's name, followed by the hyperparameters that differ from its defaults (configs/algo/) and by
    ``env_changes``."""
    name = hyperparameters["name"]
    defaults = dataclasses.asdict(get_algo(name)[1]())
    changed = [f"{key}={value}" for key, value in hyperparameters.items()
               if key in defaults and value != defaults[key]] + list(env_changes)
    return f"{name} ({', '.join(changed)})" if changed else name


def observation_changes(env: EnvConfig) -> list[str]:
    """``["env.forecaster=oracle"]``: the forecast settings (``forecast_spec``) that differ from the defaults', then
    the extra observation features if any (``["env.extra_features=[community_soc]"]``)."""
    defaults = EnvConfig()
    changes = [f"env.{key}={value}" for key, value in forecast_spec(env).items() if getattr(defaults, key) != value]
    if env.extra_features:
        changes.append(f"env.extra_features=[{','.join(env.extra_features)}]")
    return changes


def benchmark_means(env: EnvConfig, eval_days: int | None) -> dict[str, dict[str, float | None]]:
    """KPI means on the runs' validation days of the best rule, MPC with the environment's own forecaster and the
    optimum: the rows of training's closing table (``final_comparison.benchmark_rows``)."""
    rows = benchmark_rows(HeldOutDaysEvaluator(env, eval_days))
    return {label: means for label, means in rows.items() if label.startswith(("best rule", "MPC", "optimum"))}


def benchmark_lines(means: dict[str, dict[str, float | None]]) -> dict[str, float]:
    """The horizontal lines of the plot: the best rule's and MPC's share of the optimal saving (the optimum's is
    1 by definition)."""
    return {label: kpis["share_of_optimal_saving"] for label, kpis in means.items() if not label.startswith("optimum")}


def name_budgets(curves: list[RunCurve]) -> list[RunCurve]:
    """Runs of one variant trained for different budgets are different variants (a longer run's best evaluation
    may come after the shorter one ends): where a label's runs differ in ``total_env_steps``, each names its own."""
    budgets: dict[str, set[int | None]] = {}
    for curve in curves:
        budgets.setdefault(curve.learner, set()).add(curve.total_env_steps)

    def named(curve: RunCurve) -> RunCurve:
        setting = f"total_env_steps={curve.total_env_steps}"
        label = f"{curve.learner[:-1]}, {setting})" if curve.learner.endswith(")") else f"{curve.learner} ({setting})"
        return dataclasses.replace(curve, learner=label)

    return [named(curve) if len(budgets[curve.learner]) > 1 else curve for curve in curves]


def group(curves: list[RunCurve]) -> dict[str, list[RunCurve]]:
    by_learner: dict[str, list[RunCurve]] = {}
    for curve in name_budgets(curves):
        by_learner.setdefault(curve.learner, []).append(curve)
    def position(label: str) -> tuple:  # learners in LEARNER_ORDER, each followed by its variants
        name = label.split(" (")[0]
        return (LEARNER_ORDER.index(name) if name in LEARNER_ORDER else len(LEARNER_ORDER), name, label != name, label)

    order = sorted(by_learner, key=position)
    return {name: sorted(by_learner[name], key=lambda c: c.seed) for name in order}


LEGEND_LINE_CHARACTERS = 140  # of the 8-point legend that fit the 12-inch figure's width


def plot(path: Path, by_learner: dict[str, list[RunCurve]], lines: dict[str, float], title: str) -> None:
    # Two legend columns while the labels fit half the figure's width, else one, a label longer than the figure
    # wrapped onto more lines, and the figure taller for them.
    labels = [f"{learner} ({len(runs)} seeds)" for learner, runs in by_learner.items()]
    n_columns = 2 if max(map(len, labels)) <= 70 else 1
    labels = [textwrap.fill(label, LEGEND_LINE_CHARACTERS) for label in labels]
    legend_rows = math.ceil((sum(label.count("\n") + 1 for label in labels) + len(lines) + 1) / n_columns)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8 + 0.2 * legend_rows), sharey=True, layout="constrained")
    palette = plt.get_cmap("tab10")
    for index, ((learner, runs), label) in enumerate(zip(by_learner.items(), labels)):
        length = min(len(run.share) for run in runs)  # seeds stopped at different evaluations: common part
        share = np.stack([run.share[:length] for run in runs])
        steps = runs[0].steps[:length]
        minutes = np.stack([run.minutes[:length] for run in runs]).mean(axis=0)
        for ax, x in ((axes[0], steps), (axes[1], minutes)):
            ax.plot(x, share.mean(axis=0), color=palette(index), marker="o", markersize=3, label=label)
            ax.fill_between(x, share.min(axis=0), share.max(axis=0), color=palette(index), alpha=0.2)
    for ax in axes:
        for (name, value), style in zip(lines.items(), ("--", ":")):
            ax.axhline(value, color="dimgrey", linestyle=style, label=f"{name}: {value:.3f}")
        ax.axhline(1.0, color="black", linewidth=1.0, label="optimum (perfect foresight) = 1")
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("community-steps")
    axes[1].set_xlabel("wall-clock minutes (mean over seeds)")
    axes[0].set_ylabel("share of the optimal saving, validation days")
    # Below the panels: variant labels are long, and a legend inside squeezes the axes.
    fig.legend(*axes[1].get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncol=n_columns)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _thousands(steps: int) -> str:
    return f"{steps / 1000:.0f}k" if steps >= 1000 else str(steps)


def _number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(by_learner: dict[str, list[RunCurve]]) -> str:
    """Each learner's last evaluation and its best one (the first to reach the maximum, as ``best.pt`` keeps it;
    at its step, in thousands of community-steps from 1000 on), mean ± std over seeds and each seed's value, and
    the share of days with a feeder violation at each seed's best evaluation ("–" where a seed's is not logged)."""
    lines = ["| learner | share at the last evaluation (validation days) | seeds | best evaluation | seeds (at k "
             "community-steps) | minutes to the last evaluation | days with violations at the best evaluation |",
             "|---|---|---|---|---|---|---|"]
    for learner, runs in by_learner.items():
        last = np.array([run.share[-1] for run in runs])
        best_index = [int(np.argmax(run.share)) for run in runs]
        best = np.array([run.share[index] for run, index in zip(runs, best_index)])
        seeds = " / ".join(f"{value:.3f}" for value in last)
        best_seeds = " / ".join(f"{value:.3f} ({_thousands(run.steps[index])})"
                                for run, index, value in zip(runs, best_index, best))
        minutes = " / ".join(f"{run.minutes[-1]:.0f}" for run in runs)
        at_best = [np.nan if run.violation_days is None else run.violation_days[index]
                   for run, index in zip(runs, best_index)]
        violations = ("–" if np.isnan(at_best).any()
                      else f"{np.mean(at_best):.0%} ({' / '.join(f'{value:.0%}' for value in at_best)})")
        lines.append(f"| {learner} | {last.mean():.3f} ± {last.std():.3f} | {seeds} | {best.mean():.3f} ± "
                     f"{best.std():.3f} | {best_seeds} | {minutes} | {violations} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run directories")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: a new one under runs/)")
    args = parser.parse_args(argv)
    # Progress lines (p2p_marl.progress) go through logging when stderr is not a terminal; Hydra sets this up for
    # train.py and evaluate.py, this entry point does it itself.
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")

    read = [read_run(run) for run in args.runs]
    # Runs that differ only in the discrete views' grid, which no learner trains on, or in their forecasts and
    # observation features (the groups' labels name them) share their environment.
    shared = {key: getattr(EnvConfig(), key) for key in (*DISCRETE_VIEW_KEYS, *OBSERVATION_KEYS)}
    envs = {(repr(dataclasses.replace(env, **shared)), eval_days) for _, env, eval_days in read}
    if len(envs) > 1:
        raise ConfigError("the runs were trained on different environments or evaluated on different days; "
                          "plot one comparison at a time")
    _, env, eval_days = next((run for run in read if not observation_changes(run[1])), read[0])
    by_learner = group([curve for curve, _, _ in read])
    means = benchmark_means(env, eval_days)
    lines = benchmark_lines(means)
    out = script_output_dir(args.out, "learning_curves")
    n_days = len(CommunityCore(env).validation_days[:eval_days])
    plot(out / "learning_curves.png", by_learner, lines,
         f"Learning curves: share of the optimal saving on {n_days} validation days, {env.n_agents} households")
    table = markdown(by_learner)
    benchmarks = "".join(f"- {name}: {_number(kpis['share_of_optimal_saving'], '.3f')}, days with violations "
                         f"{_number(kpis['violation_day'], '.0%')}\n" for name, kpis in means.items())
    (out / "learning_curves.md").write_text(table + "\n" + benchmarks)
    console().print(table + benchmarks)
    console().print(f"Written to {out}")


if __name__ == "__main__":
    main()
