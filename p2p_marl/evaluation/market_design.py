"""Market design: the clearing rules, network-fee designs, loss charges and a shared battery side by side, with the
benchmarks, the optimum and trained policies, on the default community's days.

    python -m p2p_marl.evaluation.market_design [--max-days N] [--mpc] [--checkpoints RUN_DIR ...] [--out DIR]

Every design is the default environment (``EnvConfig()``) with the market-design keys of ``DESIGNS`` changed;
the households, feeder and days are the same. Each method plays each design's days (``--days``, test by
default); the grid-only benchmark and the perfect-foresight LP of that design are its references. Trained
policies (``--checkpoints``, e.g. the MAPPO runs; a run directory plays its ``checkpoints/best.pt``, the best
evaluation on validation days) are played as trained, on the default market: a design they were
not trained on is a zero-shot transfer, and the seeds of one learner are averaged into one row. ``--mpc`` adds
MPC on persistence forecasts (one LP per step and day: slow).

Writes ``market_design.md`` (the table, also printed), ``market_design.csv`` (one row per design, method and day)
and ``market_design.png`` (the community's saving, its fairness, households worse off and the utility's revenue per design)
to ``--out`` (default: a new directory ``runs/market_design/<date>_<time>``). KPI definitions:
``p2p_marl/evaluation/kpis.py``; savings are measured against the grid-only bills (no P2P, batteries idle),
the same under every design.
"""

from __future__ import annotations

import argparse
import csv
import logging
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from p2p_marl.baselines.optimal import solve_optimal_day
from p2p_marl.baselines.policy import Policy
from p2p_marl.baselines.rules import GridOnly
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import load_policies, observed_config, select_days
from p2p_marl.evaluation.kpis import agent_bills, day_kpis
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.progress import track
from p2p_marl.evaluation.report import console, method_of, plt  # report sets matplotlib's file-only backend
from p2p_marl.run_dirs import script_output_dir
from p2p_marl.sim.community import CommunityCore

# (label, EnvConfig changes): today's default first, then the other clearing rules, then fee designs, loss
# charges and a shared battery on the default rule. The fee, 0.02 per kWh, is half the smallest retail / feed-in
# spread (off-peak, 0.04). The shared battery, 30 kWh / 15 kW (half the households' six 10 kWh batteries), runs
# by its rule for the benchmarks and trained policies; the optimum (and MPC) dispatch it themselves.
DESIGNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("uniform k-DA (default)", {}),
    ("pay-as-bid", {"market": "pay_as_bid"}),
    ("mid-market rate", {"market": "mid_market"}),
    ("SDR", {"market": "sdr"}),
    ("bill sharing", {"market": "bill_sharing"}),
    ("uniform + flat fee, buyer pays", {"p2p_fee_per_kwh": 0.02}),
    ("uniform + distance fee, both pay", {"p2p_fee_per_kwh": 0.02, "p2p_fee_basis": "distance",
                                          "p2p_fee_payer": "both"}),
    ("uniform + losses charged by P2P volume", {"loss_allocation": "p2p_volume"}),
    ("uniform + shared battery at the busbar", {"shared_battery_kwh": 30.0, "shared_battery_kw": 15.0}),
    ("uniform + shared battery at bus 5 (a lateral's end)", {"shared_battery_kwh": 30.0, "shared_battery_kw": 15.0,
                                                             "shared_battery_bus": 5}),
)
BENCHMARKS = ("rule_self_consumption", "rule_time_of_use", "zero_intelligence")
# The reference row: batteries idle and no P2P trade, played on the default market, where its bids never cross
# (under a pooled rule, which ignores bids, the grid-only benchmark would trade P2P). Savings, their fairness and
# the households worse off are measured against its bills under every design.
GRID_ONLY = "grid-only (no P2P, any design)"
# (KPI, column header, format) of the table.
COLUMNS = (
    ("community_cost", "cost /day", "{:.2f}"),
    ("share_of_optimal_saving", "share of optimal saving", "{:.3f}"),
    ("savings_jain", "Jain index of savings", "{:.3f}"),
    ("share_worse_off", "households worse off", "{:.0%}"),
    ("p2p_volume_kwh", "P2P kWh/day", "{:.1f}"),
    ("clearing_price_mean", "mean P2P price", "{:.3f}"),
    ("p2p_fee", "fees /day", "{:.2f}"),
    ("loss_charge", "loss charges /day", "{:.2f}"),
    ("shared_battery_throughput_kwh", "shared battery kWh/day", "{:.1f}"),
    ("feeder_loss_kwh", "losses kWh/day", "{:.2f}"),
    ("violation_day", "days with violations", "{:.0%}"),
    ("utility_revenue", "utility revenue /day", "{:.2f}"),
)


def market_design(days: np.ndarray, checkpoints: list[str], mpc: bool) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """{design: {method: {kpi: (D,) per day, or (runs, D) for a learner's seeds}}}; the first entry is
    ``GRID_ONLY``, the reference."""
    base = EnvConfig()
    methods = [*BENCHMARKS, *(["mpc_persistence"] if mpc else []), "optimal"]
    policies = load_policies(methods, checkpoints, env_config=base)
    # One core per design, all on the same profiles (building them is most of a core's set-up time).
    core = CommunityCore(base, batch_size=len(days))
    profiles = core.profiles
    grid_only_infos = rollout(core, GridOnly(), days)
    grid_only_bills = agent_bills(grid_only_infos)
    results = {GRID_ONLY: {"grid_only": day_kpis(grid_only_infos, base.dt_h, grid_only_bills=grid_only_bills)}}
    for label, changes in DESIGNS:
        config = base.replace(**changes)
        core = CommunityCore(config, batch_size=len(days), profiles=profiles)
        schedules = {int(day): solve_optimal_day(core, int(day))
                     for day in track(days, len(days), f"optimal LP per day: {label}", "days")}
        policies["optimal"].remember(config, schedules)  # play the LPs just solved
        optimal_cost = np.array([schedules[int(day)].cost for day in days])
        by_method: dict[str, list[dict[str, np.ndarray]]] = {}
        observing_cores: dict[str, CommunityCore] = {}
        for name, policy in policies.items():
            by_method.setdefault(method_of(name), []).append(
                day_kpis(rollout(core_observed_by(policy, core, observing_cores), policy, days), config.dt_h,
                         grid_only_bills=grid_only_bills, optimal_cost=optimal_cost))
        results[label] = {method: {kpi: np.stack([run[kpi] for run in runs]) if len(runs) > 1 else runs[0][kpi]
                                   for kpi in runs[0]}
                          for method, runs in by_method.items()}
    return results


def core_observed_by(policy: Policy, core: CommunityCore, cores: dict[str, CommunityCore]) -> CommunityCore:
    """``core``, or for a learner trained with other observation settings (``forecast_bins``, ``extra_features``) a
    core of the same design on the same profiles that observes as it was trained; built once per setting and kept
    in ``cores``."""
    observed = observed_config(core.config, policy)
    if observed == core.config:
        return core
    key = repr(observed)
    if key not in cores:
        cores[key] = CommunityCore(observed, batch_size=core.batch_size, profiles=core.profiles)
    return cores[key]


def _mean(values: np.ndarray) -> float:
    """Mean over days (and a learner's seeds: each seed's mean over days, then their mean); NaN days left out, NaN
    where every day is (without numpy's empty-slice warning)."""
    run_means = np.array([np.nanmean(run) if (~np.isnan(run)).any() else np.nan for run in np.atleast_2d(values)])
    return float(np.nanmean(run_means)) if (~np.isnan(run_means)).any() else float("nan")


def markdown(results: dict[str, dict[str, dict[str, np.ndarray]]]) -> str:
    headers = ["market design", "method", *(header for _, header, _ in COLUMNS)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for design, by_method in results.items():
        for method, kpis in by_method.items():
            runs = np.atleast_2d(kpis["community_cost"]).shape[0]
            name = f"{method} ({runs} seeds)" if runs > 1 else method
            cells = []
            for kpi, _, fmt in COLUMNS:
                value = _mean(kpis[kpi]) if kpi in kpis else np.nan  # the reference has no share of the optimum
                cells.append("–" if not np.isfinite(value) else fmt.format(value))
            lines.append(f"| {design} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, days: np.ndarray, results: dict[str, dict[str, dict[str, np.ndarray]]]) -> None:
    kpis = [kpi for kpi, _, _ in COLUMNS]
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["design", "method", "run", "day", *kpis])
        for design, by_method in results.items():
            for method, values in by_method.items():
                for run in range(np.atleast_2d(values["community_cost"]).shape[0]):
                    for index, day in enumerate(days):
                        writer.writerow([design, method, run, int(day),
                                         *(repr(float(np.atleast_2d(values[kpi])[run, index])) if kpi in values
                                           else "nan" for kpi in kpis)])


PLOT_PANELS = (("saving_vs_grid_only", "community saving vs grid-only [money/day]"),
               ("savings_jain", "Jain index of savings vs grid-only [-]"),
               ("share_worse_off", "share of households worse off than grid-only [-]"),
               ("utility_revenue", "utility revenue: retail + fees - feed-in [money/day]"))


def plot(path: Path, results: dict[str, dict[str, dict[str, np.ndarray]]], title: str) -> None:
    """Grouped bars: one group per design, one bar per method, one panel per KPI of ``PLOT_PANELS``."""
    designs = [design for design in results if design != GRID_ONLY]
    methods = list(results[designs[0]])
    palette = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, 2, figsize=(15, 9), layout="constrained")
    width = 0.8 / len(methods)
    x = np.arange(len(designs))
    for ax, (kpi, ylabel) in zip(axes.ravel(), PLOT_PANELS):
        for i, method in enumerate(methods):
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, [_mean(results[d][method][kpi]) for d in designs],
                   width, color=palette(i % 10), edgecolor="black", linewidth=0.4, label=method)
        if kpi == "utility_revenue":  # the grid-only level, the same under every design
            line = ax.axhline(_mean(results[GRID_ONLY]["grid_only"][kpi]), color="black", linestyle="--",
                              linewidth=1.0, label="grid-only (no P2P)")
            ax.legend(handles=[line], fontsize=8, loc="lower left")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(x, [textwrap.fill(d, 18) for d in designs], fontsize=7, rotation=35, ha="right",
                      rotation_mode="anchor")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(methods), fontsize=9)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", choices=("test", "validation"), default="test")
    parser.add_argument("--max-days", type=int, default=None, help="the first N of those days (default: all)")
    parser.add_argument("--mpc", action="store_true", help="add MPC on persistence forecasts (slow)")
    parser.add_argument("--checkpoints", nargs="*", default=[], help="trained policies: files or run directories")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: a new one under runs/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    if args.max_days is not None and args.max_days < 1:
        parser.error(f"--max-days must be >= 1, got {args.max_days}")

    days, _ = select_days(CommunityCore(EnvConfig()), args.max_days, split=args.days)
    out = script_output_dir(args.out, "market_design")
    results = market_design(days, args.checkpoints, args.mpc)
    table = markdown(results)
    (out / "market_design.md").write_text(table)
    write_csv(out / "market_design.csv", days, results)
    title = f"Market design on {len(days)} {args.days} days, {EnvConfig().n_agents} households (means over days)"
    plot(out / "market_design.png", results, title)
    console().print(title + "\n" + table)
    console().print(f"Written to {out}")


if __name__ == "__main__":
    main()
