"""What the ``python -m`` scripts that play MPC variants on the default community's days share: their
command line (``--days``, ``--max-days``, ``--out``) and the share-of-the-optimal-saving plot's frame."""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

import numpy as np

from p2p_marl.baselines.policy import Policy
from p2p_marl.cli import user_errors_as_one_line
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import load_policies, select_days
from p2p_marl.run_dirs import script_output_dir
from p2p_marl.sim.community import CommunityCore


def add_day_arguments(parser: argparse.ArgumentParser, default_split: str, threads: bool = False) -> None:
    """``--days``, ``--max-days`` and ``--out``; with ``threads``, ``--threads`` for MPC's LPs too (checked by
    ``selected_days``)."""
    parser.add_argument("--days", choices=("test", "validation"), default=default_split)
    parser.add_argument("--max-days", type=int, default=None, help="the first N of those days (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: a new one under runs/)")
    if threads:
        parser.add_argument("--threads", type=int, default=1, help="MPC's LPs solved that many days at a time (>= 1)")


def selected_days(parser: argparse.ArgumentParser, args: argparse.Namespace, config: EnvConfig) -> np.ndarray:
    """The days ``args`` select of ``config``'s community; a bad ``--max-days`` or ``--threads`` is the parser's
    error. Progress lines (``p2p_marl.progress``) go through logging when stderr is not a terminal: Hydra sets
    that up for train.py and evaluate.py, these scripts here."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    if args.max_days is not None and args.max_days < 1:
        parser.error(f"--max-days must be >= 1, got {args.max_days}")
    if getattr(args, "threads", 1) < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    days, _ = select_days(CommunityCore(config), args.max_days, split=args.days)
    return days


def runs_script_arguments(name: str, description: str, benchmarks: tuple[str, ...], argv: list[str] | None
                          ) -> tuple[argparse.Namespace, EnvConfig, np.ndarray, dict[str, Policy], Path]:
    """The command line of a script that plays ``benchmarks`` and the training runs it is given (``RUN_DIR ...``,
    their best checkpoints) on the default community's days, with ``--threads``: (its arguments, the
    community's config, the days, the policies by label as ``compare.load_policies`` gives them, the output
    directory). A bad run directory stops it with one line (``name: error: ...``) before any work."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="*", help="training run directories (their best checkpoints) or checkpoints")
    add_day_arguments(parser, "test", threads=True)
    args = parser.parse_args(argv)
    config = EnvConfig()
    days = selected_days(parser, args, config)
    with user_errors_as_one_line(name):
        policies = load_policies(list(benchmarks), args.runs, env_config=config, threads=args.threads)
    return args, config, days, policies, script_output_dir(args.out, name)


def days_and_output(parser: argparse.ArgumentParser, args: argparse.Namespace, config: EnvConfig,
                    name: str) -> tuple[np.ndarray, Path]:
    """``selected_days`` and the output directory (a new ``runs/<name>/...`` without ``--out``)."""
    return selected_days(parser, args, config), script_output_dir(args.out, name)


def finish_share_plot(fig, ax, path: Path, xlabel: str, title: str, legend_loc: str, outside: bool = False) -> None:
    """The optimum's line, the labels, grid and legend (``outside``: right of the axes, at ``legend_loc``) of a
    share-of-the-optimal-saving plot; saved and closed."""
    ax.axhline(1.0, color="black", linewidth=0.8, label="optimum (perfect foresight) = 1")
    finish_plot(fig, ax, path, xlabel, "share of the optimal saving", title, legend_loc, outside)


def finish_plot(fig, ax, path: Path, xlabel: str, ylabel: str, title: str, legend_loc: str,
                outside: bool = False) -> None:
    """The labels, grid and legend (``outside``: right of the axes, at ``legend_loc``) of a plot; saved and
    closed."""
    from p2p_marl.evaluation.report import plt  # report sets matplotlib's file-only backend

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc=legend_loc, bbox_to_anchor=(1.01, 0.5) if outside else None)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def method_styles(methods: list[str], benchmarks: tuple[str, ...]) -> dict[str, tuple]:
    """Method -> (colour, line style) of the lines of ``methods``: the ``benchmarks`` grey, each its own style
    (four at most), the learners solid in the colours other than MPC's red and the benchmarks' grey."""
    from p2p_marl.evaluation.report import plt  # report sets matplotlib's file-only backend

    tab10 = plt.get_cmap("tab10").colors
    learner_colors = itertools.cycle(color for color in tab10[::-1] if color not in (tab10[3], tab10[7]))
    grey_styles = iter((":", "-.", (0, (5, 2)), (0, (1, 3))))
    return {method: ("tab:gray", next(grey_styles)) if method in benchmarks else (next(learner_colors), "-")
            for method in methods}


def day_means(kpis: dict[str, np.ndarray]) -> dict[str, float]:
    """A row's numbers from ``evaluate_policy``'s per-day KPIs: the share of the optimal saving, the cost per day
    and the share of days with violations, means over the days."""
    return {"share": float(np.nanmean(kpis["share_of_optimal_saving"])),
            "cost": float(np.mean(kpis["community_cost"])),
            "violation_days": float(np.mean(kpis["violation_day"]))}
