"""What the ``python -m`` scripts that play MPC variants on the default community's days share: their
command line (``--days``, ``--max-days``, ``--out``) and the share-of-the-optimal-saving plot's frame."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import select_days
from p2p_marl.run_dirs import script_output_dir
from p2p_marl.sim.community import CommunityCore


def add_day_arguments(parser: argparse.ArgumentParser, default_split: str) -> None:
    parser.add_argument("--days", choices=("test", "validation"), default=default_split)
    parser.add_argument("--max-days", type=int, default=None, help="the first N of those days (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: a new one under runs/)")


def selected_days(parser: argparse.ArgumentParser, args: argparse.Namespace, config: EnvConfig) -> np.ndarray:
    """The days ``args`` select of ``config``'s community; a bad ``--max-days`` is the parser's error. Progress
    lines (``p2p_marl.progress``) go through logging when stderr is not a terminal: Hydra sets that up for
    train.py and evaluate.py, these scripts here."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    if args.max_days is not None and args.max_days < 1:
        parser.error(f"--max-days must be >= 1, got {args.max_days}")
    days, _ = select_days(CommunityCore(config), args.max_days, split=args.days)
    return days


def days_and_output(parser: argparse.ArgumentParser, args: argparse.Namespace, config: EnvConfig,
                    name: str) -> tuple[np.ndarray, Path]:
    """``selected_days`` and the output directory (a new ``runs/<name>/...`` without ``--out``)."""
    return selected_days(parser, args, config), script_output_dir(args.out, name)


def finish_share_plot(fig, ax, path: Path, xlabel: str, title: str, legend_loc: str, outside: bool = False) -> None:
    """The optimum's line, the labels, grid and legend (``outside``: right of the axes, at ``legend_loc``) of a
    share-of-the-optimal-saving plot; saved and closed."""
    from p2p_marl.evaluation.report import plt  # report sets matplotlib's file-only backend

    ax.axhline(1.0, color="black", linewidth=0.8, label="optimum (perfect foresight) = 1")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of the optimal saving")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc=legend_loc, bbox_to_anchor=(1.01, 0.5) if outside else None)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def day_means(kpis: dict[str, np.ndarray]) -> dict[str, float]:
    """A row's numbers from ``evaluate_policy``'s per-day KPIs: the share of the optimal saving, the cost per day
    and the share of days with violations, means over the days."""
    return {"share": float(np.nanmean(kpis["share_of_optimal_saving"])),
            "cost": float(np.mean(kpis["community_cost"])),
            "violation_days": float(np.mean(kpis["violation_day"]))}
