"""Reporting evaluation results: summary statistics, the rich table, CSV/JSON files, PNG plots, TensorBoard.

Results come in as ``{method: {kpi: (D,) per-day values}}`` (``p2p_marl.evaluation.kpis.day_kpis`` per method,
all on the same days). Undefined per-day values (NaN, e.g. the clearing price on a day without P2P trade) are
left out of the statistics; every statistic says over how many days it was taken.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display; before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from p2p_marl.evaluation.kpis import COST_PARTS, share_of_optimal_saving  # noqa: E402

Results = dict[str, dict[str, np.ndarray]]
Summary = dict[str, dict[str, dict[str, float | int | None]]]
RunSummary = dict[str, dict[str, dict[str, float | int | list[float | None] | None]]]

# (KPI, column header, format) of the printed tables, which fit TABLE_WIDTH columns: headers on a few short
# lines, a standard deviation under its mean. Saving per day is left to the files (grid-only's cost minus the cost).
TABLE_COLUMNS = (
    ("share_of_optimal_saving", "share of\noptimal\nsaving", "{:.3f}"),
    ("community_cost", "cost\n/day", "{:.2f}"),
    ("self_sufficiency", "self-\nsuffi-\nciency", "{:.3f}"),
    ("self_consumption", "self-\nconsump-\ntion", "{:.3f}"),
    ("p2p_volume_kwh", "P2P\nkWh/day", "{:.1f}"),
    ("voltage_violation_steps", "voltage\nviolation\nsteps/day", "{:.1f}"),
    ("line_overload_steps", "overload\nsteps/day", "{:.1f}"),
)
TABLE_WIDTH = 100


def console() -> Console:
    """A rich console for the tables: the terminal's width up to ``TABLE_WIDTH``, ``TABLE_WIDTH`` when the output
    is redirected (rich's default of 80 would squeeze the tables). Without markup: the tables' labels hold
    settings in brackets (``env.extra_features=[feeder_position]``), which rich would take for styles and drop."""
    width = shutil.get_terminal_size((TABLE_WIDTH, 24)).columns if sys.stdout.isatty() else TABLE_WIDTH
    return Console(width=min(width, TABLE_WIDTH), markup=False)


def summarize(results: Results) -> Summary:
    """{method: {kpi: {"mean", "std", "n_days"}}} over the days where the KPI is defined (not NaN).

    ``std`` is the population standard deviation over days (ddof = 0, so one day gives 0); ``mean`` and
    ``std`` are None where no day defines the KPI.
    """
    summary: Summary = {}
    for method, kpis in results.items():
        summary[method] = {}
        for kpi, values in kpis.items():
            defined = np.asarray(values, dtype=np.float64)
            defined = defined[np.isfinite(defined)]
            summary[method][kpi] = {
                "mean": float(defined.mean()) if defined.size else None,
                "std": float(defined.std()) if defined.size else None,
                "n_days": int(defined.size),
            }
    return summary


def _mean_std(stats: dict[str, Any], fmt: str) -> str:
    if stats["mean"] is None:
        return "n/a"
    if stats["std"] is None:  # a single run has no spread over runs
        return fmt.format(stats["mean"])
    return f"{fmt.format(stats['mean'])}\n± {fmt.format(stats['std'])}"


def _kpi_table(title: str, *extra_columns: str) -> Table:
    """An empty table with a method column (long labels fold), ``extra_columns`` and ``TABLE_COLUMNS``."""
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    table.add_column("method", overflow="fold")
    for header in extra_columns:
        table.add_column(header, justify="right")
    for _, header, _ in TABLE_COLUMNS:
        add_number_column(table, header)
    return table


def add_number_column(table: Table, header: str) -> None:
    """A right-aligned column at least as wide as the longest line of its (multi-line) header: rich would
    rather cut a header than a value when the console is narrow."""
    table.add_column(header, justify="right", min_width=max(len(line) for line in header.splitlines()))


def summary_table(summary: Summary, title: str) -> Table:
    """The rich table of ``TABLE_COLUMNS``: mean ± std over days per method."""
    table = _kpi_table(title)
    for method, stats in summary.items():
        table.add_row(method, *(_mean_std(stats[kpi], fmt) if kpi in stats else "n/a"
                                for kpi, _, fmt in TABLE_COLUMNS))
    return table


def write_results_csv(path: Path, days: np.ndarray, results: Results) -> None:
    """One row per method and day: ``method, day`` and every KPI (``nan`` where undefined)."""
    kpi_names = list(next(iter(results.values())))
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["method", "day", *kpi_names])
        for method, kpis in results.items():
            for index, day in enumerate(days):
                writer.writerow([method, int(day), *(repr(float(kpis[kpi][index])) for kpi in kpi_names)])


def write_summary_json(path: Path, summary: Summary) -> None:
    Path(path).write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")


def write_tensorboard(log_dir: Path, days: np.ndarray, results: Results) -> None:
    """Every KPI as a TensorBoard scalar ``<method>/<kpi>`` with the day index as step (NaN days left out).

    The same tags in the event files of several evaluation runs overlay in one TensorBoard view.
    """
    # torch (behind SummaryWriter) takes seconds to import; only pay for it when writing.
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for method, kpis in results.items():
            for kpi, values in kpis.items():
                for day, value in zip(days, values):
                    if math.isfinite(value):
                        writer.add_scalar(f"{method}/{kpi}", float(value), global_step=int(day))


def method_of(label: str) -> str:
    """The method a result belongs to: a checkpoint is labelled ``<method>:<run>`` (the runs of one learner and
    one training setting, e.g. its seeds, share the method; see ``compare.load_policies``), a benchmark by its
    own name."""
    return label.split(":", 1)[0]


def labels_by_method(labels: Iterable[str]) -> dict[str, list[str]]:
    """{method: its labels, in the order given}: a learner's runs (``method_of``) together, methods in the order
    of their first label."""
    grouped: dict[str, list[str]] = {}
    for label in labels:
        grouped.setdefault(method_of(label), []).append(label)
    return grouped


def summarize_runs(summary: Summary) -> RunSummary:
    """{method: {kpi: {"mean", "std", "n_runs", "runs"}}}: each run's mean over days (``runs``, in the order
    given; None where the KPI is undefined on all of that run's days, e.g. a clearing price without trade),
    and the mean and sample standard deviation (ddof = 1) over the runs that define it; ``std`` is None with
    fewer than two such runs, ``mean`` with none."""
    by_method: RunSummary = {}
    for method, labels in labels_by_method(summary).items():
        by_method[method] = {}
        for kpi in summary[labels[0]]:
            runs = [summary[label][kpi]["mean"] for label in labels]
            defined = np.asarray([run for run in runs if run is not None], dtype=np.float64)
            by_method[method][kpi] = {
                "mean": float(defined.mean()) if defined.size else None,
                "std": float(defined.std(ddof=1)) if defined.size > 1 else None,
                "n_runs": len(runs),
                "runs": runs,
            }
    return by_method


def runs_table(by_method: RunSummary, title: str) -> Table:
    """The rich table of ``TABLE_COLUMNS`` per method: mean ± std over runs (seeds), the mean alone for one run."""
    table = _kpi_table(title, "runs")
    for method, stats in by_method.items():
        n_runs = next(iter(stats.values()))["n_runs"]
        table.add_row(method, str(n_runs), *(_mean_std(stats[kpi], fmt) if kpi in stats else "n/a"
                                             for kpi, _, fmt in TABLE_COLUMNS))
    return table


def _method_colors(methods: list[str]) -> dict[str, tuple]:
    palette = plt.get_cmap("tab10")
    return {method: palette(index % 10) for index, method in enumerate(methods)}


def plot_kpi_by_method(path: Path, summary: Summary, kpi: str, ylabel: str, title: str,
                       reference: tuple[float, str] | None = None) -> None:
    """Bar chart of one KPI per method (``summarize_runs``): the bar is the mean over the method's runs, each run
    a black dot; the whisker is ± one standard deviation over runs (seeds) where a method has several, and
    ± one standard deviation over days (grey) where it has one. ``reference`` = (value, label) draws a
    labelled horizontal line."""
    by_method = summarize_runs(summary)
    methods = [m for m in by_method if by_method[m].get(kpi, {}).get("mean") is not None]
    colors = _method_colors(list(by_method))
    fig, ax = plt.subplots(figsize=(0.9 * len(methods) + 3.0, 4.5), layout="constrained")
    ax.bar(methods, [by_method[m][kpi]["mean"] for m in methods], color=[colors[m] for m in methods],
           edgecolor="black", linewidth=0.5)
    labelled: set[str] = set()
    for x, method in enumerate(methods):
        stats = by_method[method][kpi]
        if stats["n_runs"] > 1:
            runs = [run for run in stats["runs"] if run is not None]
            ax.scatter(np.full(len(runs), x), runs, color="black", s=12, zorder=3)
            spread, color, label = stats["std"], "black", "± std over seeds (dots: seeds)"
        else:
            (single,) = [lbl for lbl in summary if method_of(lbl) == method]
            spread, color, label = summary[single][kpi]["std"], "grey", "± std over days"
        if spread is not None:
            ax.errorbar(x, stats["mean"], yerr=spread, color=color, capsize=5, linewidth=1.2, zorder=2,
                        label=None if label in labelled else label)
            labelled.add(label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    if reference is not None:
        ax.axhline(reference[0], color="dimgrey", linestyle="--", linewidth=1.2, label=reference[1])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=20)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_dispatch(path: Path, infos_day: dict[str, np.ndarray], dt_h: float, has_battery: np.ndarray,
                  title: str) -> None:
    """One day of operation, five panels over the hours of the day (``infos_day``: key -> (T, N)):

    community load and PV; battery power (charge > 0); each battery's SoC and their mean; grid import, export
    and P2P volume; the clearing price (marked only in steps with P2P trade) between the grid tariffs.
    Powers are step means (kWh per step / dt_h), drawn as steps; SoC is at the end of each step.
    """
    steps = infos_day["cost"].shape[0]
    edges_h = np.arange(steps + 1) * dt_h

    def community_kw(key: str) -> np.ndarray:
        return infos_day[key].sum(axis=1) / dt_h

    def stairs(ax, values, **kwargs) -> None:
        ax.stairs(values, edges_h, baseline=None, linewidth=1.6, **kwargs)

    # A fixed layout: constrained layout would double the time of the figure for the same result.
    fig, axes = plt.subplots(5, 1, figsize=(9, 12), sharex=True)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.05, top=0.93, hspace=0.3)
    ax_energy, ax_battery, ax_soc, ax_grid, ax_price = axes

    stairs(ax_energy, community_kw("load_kwh"), label="load", color="tab:red")
    stairs(ax_energy, community_kw("pv_kwh"), label="PV", color="tab:orange")
    ax_energy.set_ylabel("community power [kW]")
    ax_energy.set_title("Load and PV")

    battery_kw = community_kw("battery_charge_kwh") - community_kw("battery_discharge_kwh")
    stairs(ax_battery, battery_kw, label="charge (+) / discharge (-)", color="tab:green")
    ax_battery.axhline(0.0, color="black", linewidth=0.6)
    ax_battery.set_ylabel("battery power [kW]")
    ax_battery.set_title("Batteries, community total")

    soc_pct = 100.0 * infos_day["soc"][:, np.asarray(has_battery, dtype=bool)]
    if soc_pct.shape[1]:
        ax_soc.plot(edges_h[1:], soc_pct, color="tab:green", alpha=0.3, linewidth=0.8)
        ax_soc.plot(edges_h[1:], soc_pct.mean(axis=1), color="tab:green", linewidth=2.0,
                    label=f"mean of {soc_pct.shape[1]} batteries (thin: each)")
    ax_soc.set_ylim(0.0, 100.0)
    ax_soc.set_ylabel("state of charge [%]")
    ax_soc.set_title("Battery state of charge (end of step)")

    stairs(ax_grid, community_kw("grid_import_kwh"), label="grid import", color="tab:blue")
    stairs(ax_grid, -community_kw("grid_export_kwh"), label="grid export (-)", color="tab:cyan")
    stairs(ax_grid, community_kw("p2p_buy_kwh"), label="P2P traded", color="tab:purple")
    ax_grid.axhline(0.0, color="black", linewidth=0.6)
    ax_grid.set_ylabel("power [kW]")
    ax_grid.set_title("Grid exchange and P2P trade")

    stairs(ax_price, infos_day["retail_price"][:, 0], label="retail", color="tab:red", linestyle="--")
    stairs(ax_price, infos_day["feed_in_price"][:, 0], label="feed-in", color="tab:orange", linestyle="--")
    traded = infos_day["p2p_buy_kwh"].sum(axis=1) > 0
    centers_h = edges_h[:-1] + 0.5 * dt_h
    ax_price.plot(centers_h[traded], infos_day["clearing_price"][traded, 0], "o", color="tab:purple",
                  markersize=4, label="P2P clearing price (steps with trade)")
    ax_price.set_ylabel("price [money/kWh]")
    ax_price.set_title("Prices")
    ax_price.set_xlabel("hour of day [h]")
    ax_price.set_xlim(0.0, edges_h[-1])
    ax_price.set_xticks(np.arange(0.0, edges_h[-1] + 1e-9, 3.0))

    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mean_day(infos: dict[str, np.ndarray], has_battery: np.ndarray) -> dict[str, np.ndarray]:
    """One method's average day over the evaluated days (``infos``: key -> (D, T, N)), each (T,): the batteries'
    mean state of charge, the community's battery charge minus discharge, grid import and grid export, in kWh per
    step, and its cost per step (money), with the end-of-day settlement in the last step (``cost``) and without
    it (``cost_before_settlement``)."""
    soc = infos["soc"][:, :, np.asarray(has_battery, dtype=bool)]
    community = {key: infos[key].sum(axis=2).mean(axis=0)
                 for key in ("battery_charge_kwh", "battery_discharge_kwh", "grid_import_kwh", "grid_export_kwh",
                             "cost", "end_settlement")}
    return {"soc": soc.mean(axis=(0, 2)) if soc.shape[2] else np.zeros(soc.shape[1]),
            "battery_kwh": community["battery_charge_kwh"] - community["battery_discharge_kwh"],
            "grid_import_kwh": community["grid_import_kwh"], "grid_export_kwh": community["grid_export_kwh"],
            "cost": community["cost"], "cost_before_settlement": community["cost"] - community["end_settlement"]}


def _days_by_method(mean_days: dict[str, dict[str, np.ndarray]]) -> dict[str, list[dict[str, np.ndarray]]]:
    """``mean_day`` per label grouped by method (a learner's runs, ``<method>:<run>``, together), in label order."""
    grouped: dict[str, list[dict[str, np.ndarray]]] = {}
    for label, day in mean_days.items():
        grouped.setdefault(method_of(label), []).append(day)
    return grouped


def tariff_periods(retail_per_kwh: np.ndarray) -> list[tuple[int, int]]:
    """The day's time-of-use periods as (first step, step after the last) of each run of steps with the same
    retail price, in the order of the day."""
    changes = (np.flatnonzero(np.diff(retail_per_kwh) != 0.0) + 1).tolist()
    bounds = [0, *changes, len(retail_per_kwh)]
    return list(zip(bounds[:-1], bounds[1:]))


def _clock(hours: float) -> str:
    minutes = round(hours * 60.0)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def period_headers(retail_per_kwh: np.ndarray, dt_h: float) -> list[str]:
    """A table's column header for each of the ``tariff_periods``: its hours and retail price."""
    return [f"{_clock(start * dt_h)}–{_clock(end * dt_h)} ({retail_per_kwh[start]:.3f}/kWh)"
            for start, end in tariff_periods(retail_per_kwh)]


def cost_gap_by_period(mean_days: dict[str, dict[str, np.ndarray]], retail_per_kwh: np.ndarray,
                       reference: str = "optimal") -> dict[str, np.ndarray]:
    """{method: (P,) its community cost above ``reference``'s within each of the ``tariff_periods`` [money/day]}
    (``mean_day`` per label; a method's runs, e.g. seeds, averaged), for every method but the reference; empty
    without the reference. The periods add up to the method's whole gap to the reference; the last one carries
    the end-of-day settlement."""
    grouped = _days_by_method(mean_days)
    if reference not in grouped:
        return {}
    base = np.mean([day["cost"] for day in grouped[reference]], axis=0)
    periods = tariff_periods(retail_per_kwh)
    return {method: np.array([(np.mean([day["cost"] for day in days], axis=0) - base)[start:end].sum()
                              for start, end in periods])
            for method, days in grouped.items() if method != reference}


def write_cost_gap_by_period(path: Path, mean_days: dict[str, dict[str, np.ndarray]], retail_per_kwh: np.ndarray,
                             dt_h: float, reference: str = "optimal") -> None:
    """``cost_gap_by_period`` as a Markdown table: a column per tariff period (its hours and retail price) and the
    whole day; nothing is written without the reference among the methods."""
    gaps = cost_gap_by_period(mean_days, retail_per_kwh, reference)
    if not gaps:
        return
    headers = ["method", *period_headers(retail_per_kwh, dt_h), "whole day"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method, gap in gaps.items():
        cells = (f"{round(value, 2) + 0.0:+.2f}" for value in (*gap, gap.sum()))  # + 0.0: no "-0.00"
        lines.append("| " + " | ".join([method, *cells]) + " |")
    note = (f"\nCommunity cost above {reference}'s within each time-of-use period, money per day, mean over days (and "
            "over runs for a learner's seeds); the periods add up to the whole day's gap, and the last one carries "
            "the end-of-day settlement.\n")
    Path(path).write_text("\n".join(lines) + "\n" + note)


def plot_mean_day_by_method(path: Path, mean_days: dict[str, dict[str, np.ndarray]], dt_h: float,
                            title: str, reference: str = "optimal") -> None:
    """Where the methods part ways over the day: for each method (its runs, e.g. seeds, averaged; ``mean_day``
    per label), the batteries' mean state of charge, the community's battery power, grid import and grid export,
    and, with ``reference`` among the methods, its cost above the reference's before the end-of-day settlement,
    by hour of the day. Learners (labels ``<method>:<run>``) are solid lines, benchmarks dashed."""
    grouped = _days_by_method(mean_days)
    learners = [method for method in grouped if any(label.startswith(f"{method}:") for label in mean_days)]
    benchmarks = [method for method in grouped if method not in learners]
    # Learners solid in tab20's strong colours, benchmarks dashed in its light ones: no two lines alike for up to
    # ten of each.
    colors = {**{m: plt.get_cmap("tab20")(2 * (i % 10) + 1) for i, m in enumerate(benchmarks)},
              **{m: plt.get_cmap("tab20")(2 * (i % 10)) for i, m in enumerate(learners)}}
    panels = (("soc", "state of charge [%]", "Batteries' mean state of charge (end of step)", 100.0),
              ("battery_kwh", "power [kW]", "Battery charge (+) / discharge (-), community total", 1.0 / dt_h),
              ("grid_import_kwh", "power [kW]", "Grid import, community total", 1.0 / dt_h),
              ("grid_export_kwh", "power [kW]", "Grid export, community total", 1.0 / dt_h))
    steps = next(iter(mean_days.values()))["soc"].shape[0]
    baselines = dict.fromkeys((key for key, *_ in panels), np.zeros(steps))
    if reference in grouped:  # a rate per hour: the settlement, a lump at the day's end, is left out
        panels += (("cost_before_settlement", "money per hour",
                    f"Community cost above {reference}'s (end-of-day settlement left out)", 1.0 / dt_h),)
        baselines["cost_before_settlement"] = np.mean([day["cost_before_settlement"] for day in grouped[reference]],
                                                      axis=0)
    edges_h = np.arange(steps + 1) * dt_h
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels) + 2.4), sharex=True)
    fig.subplots_adjust(left=0.08, right=0.76, bottom=0.05, top=0.93, hspace=0.3)
    for ax, (key, ylabel, panel_title, scale) in zip(axes, panels):
        for method, days in grouped.items():
            values = scale * (np.mean([day[key] for day in days], axis=0) - baselines[key])
            ax.stairs(values, edges_h, baseline=None, color=colors[method], linewidth=1.8 if method in learners
                      else 1.2, linestyle="-" if method in learners else "--",
                      label=method + (f" ({len(days)} runs)" if len(days) > 1 else ""))
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes[-1].set_xlabel("hour of day [h]")
    axes[-1].set_xlim(0.0, edges_h[-1])
    axes[-1].set_xticks(np.arange(0.0, edges_h[-1] + 1e-9, 3.0))
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# (KPI, column header, format) of the Markdown table: the headline, then what the honest yardstick adds
# (the end-of-day settlement, curtailment, days on which the feeder's limits were broken).
MARKDOWN_COLUMNS = (
    ("community_cost", "cost /day", "{:.2f}"),
    ("end_settlement", "settlement /day", "{:+.2f}"),
    ("p2p_volume_kwh", "P2P kWh/day", "{:.1f}"),
    ("pv_curtailed_kwh", "curtailed kWh/day", "{:.1f}"),
    ("violation_day", "days with violations", "{:.0%}"),
    ("voltage_violation_steps", "voltage-violation steps/day", "{:.2f}"),
    ("line_overload_steps", "overload steps/day", "{:.2f}"),
)


def write_markdown_table(path: Path, by_method: RunSummary) -> None:
    """``summarize_runs`` as a Markdown table (the README's comparison table is this file): share of the optimal
    saving as mean ± std over runs with each run's value, then ``MARKDOWN_COLUMNS`` (mean over runs)."""
    def cell(stats: dict, fmt: str, with_std: bool) -> str:
        if stats["mean"] is None:
            return "–"
        text = fmt.format(stats["mean"])
        return f"{text} ± {fmt.format(stats['std'])}" if with_std and stats["std"] is not None else text

    headers = ["method", "share of optimal saving", "runs", *(header for _, header, _ in MARKDOWN_COLUMNS)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method, stats in by_method.items():
        share = stats["share_of_optimal_saving"]
        runs = (" / ".join("–" if run is None else f"{run:.3f}" for run in share["runs"])
                if share["n_runs"] > 1 else "–")
        lines.append("| " + " | ".join([method, cell(share, "{:.3f}", True), runs,
                                        *(cell(stats[kpi], fmt, False) for kpi, _, fmt in MARKDOWN_COLUMNS)])
                     + " |")
    Path(path).write_text("\n".join(lines) + "\n")


# What each part of COST_PARTS is called in the cost breakdown's table and plot.
COST_PART_LABELS = {
    "grid_energy_cost": "grid energy",
    "battery_wear_cost": "battery wear",
    "network_penalty": "network penalty",
    "end_settlement": "end-of-day settlement",
    "p2p_fee": "P2P fees",
    "loss_charge": "loss charges",
    "other_cost": "shared battery's wear and settlement",
}


# cost_breakdown.md's last column: the share of the optimal saving as the bill weighs the days, beside the tables'
# mean of each day's share, where a day on which the optimum saves little weighs as much as one where it saves much.
SHARE_OF_MEAN_SAVING = "share of the mean saving"


def cost_breakdown(by_method: RunSummary) -> dict[str, dict[str, float]]:
    """{method: {part: mean over runs [money/day]}} for the parts of ``COST_PARTS`` that are not 0 for every
    method, plus ``community_cost``; methods whose KPIs lack the parts (results from older files) are left out."""
    methods = [m for m in by_method if all(by_method[m].get(part, {}).get("mean") is not None for part in COST_PARTS)]
    parts = [part for part in COST_PARTS if any(abs(by_method[m][part]["mean"]) > 1e-12 for m in methods)]
    return {m: {key: by_method[m][key]["mean"] for key in ("community_cost", *parts)} for m in methods}


def write_cost_breakdown(path: Path, by_method: RunSummary, reference: str = "optimal") -> None:
    """Markdown table of ``cost_breakdown``: each method's cost per day and its parts, each with its difference
    to ``reference``'s (the optimum: where a method's gap to it comes from). Without the reference among the
    methods, the parts alone. With grid-only's row too, a last column weighs the days as the bill does: the share
    of the mean saving, (grid-only's mean cost - the method's) / (grid-only's - the reference's), a day weighing as
    much as the optimum saves on it."""
    breakdown = cost_breakdown(by_method)
    if not breakdown:
        return
    keys = list(next(iter(breakdown.values())))
    base = breakdown.get(reference)
    grid_only = breakdown.get("grid_only")
    # The share of the mean costs, by the days' own formula, undefined (NaN) where there is nothing to save.
    weighted_share = ({method: float(share_of_optimal_saving(values["community_cost"], grid_only["community_cost"],
                                                             base["community_cost"]))
                       for method, values in breakdown.items()} if base is not None and grid_only is not None else {})
    with_weighted_share = bool(weighted_share) and not math.isnan(weighted_share["grid_only"])
    headers = ["method", "cost /day", *(COST_PART_LABELS[key] for key in keys[1:])]
    headers += [SHARE_OF_MEAN_SAVING] if with_weighted_share else []
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method, values in breakdown.items():
        cells = [f"{values[key]:.2f}" + (f" ({values[key] - base[key]:+.2f})" if base is not None
                                          and method != reference else "") for key in keys]
        if with_weighted_share:
            cells.append(f"{weighted_share[method]:.3f}")
        lines.append("| " + " | ".join([method, *cells]) + " |")
    note = (f"\nMoney per day, mean over days (and over runs for a learner's seeds); in brackets the difference to "
            f"{reference}'s. The parts add up to the cost.") if base is not None else ""
    note += (f" The {SHARE_OF_MEAN_SAVING} weighs each day by what the optimum saves on it, as the bill does (the "
             "other tables' share is the mean of the days' own shares).") if with_weighted_share else ""
    Path(path).write_text("\n".join(lines) + "\n" + (f"{note}\n" if note else ""))


# feeder_days.md: the days on which idle batteries violate the feeder apart from the others. Where the feeder binds
# on a few days, those days can hold much of the saving, and a mean over all days hides which of them a method wins.
FEEDER_DAY_COLUMNS = (
    ("share_of_optimal_saving", "share", "{:.2f}"),
    ("pv_curtailed_kwh", "curtailed kWh/day", "{:.1f}"),
    ("grid_energy_cost", "grid energy /day", "{:.2f}"),
    ("network_penalty", "network penalty /day", "{:.2f}"),
)


def feeder_days(results: Results) -> np.ndarray:
    """Per day, whether grid-only (the batteries idle) leaves the voltage band or overloads a line or the
    transformer on it (``violation_day``, by at least ``kpis.VIOLATION_TOLERANCE``)."""
    return results["grid_only"]["violation_day"] > 0.0


def write_feeder_days(path: Path, results: Results) -> None:
    """Markdown table of each method's ``FEEDER_DAY_COLUMNS`` on the feeder days (``feeder_days``) and on the
    other days: the mean over the group's days and a learner's runs (all runs play the same days), days where a
    KPI is undefined left out, "–" where none defines it. Nothing is written without grid-only's results."""
    if "grid_only" not in results:
        return
    on_feeder_days = feeder_days(results)
    groups = [(f"{days.sum()} {kind} day{'' if days.sum() == 1 else 's'}", days)
              for kind, days in (("feeder", on_feeder_days), ("other", ~on_feeder_days))]
    headers = ["method", *(f"{header} ({name})" for _, header, _ in FEEDER_DAY_COLUMNS for name, _ in groups)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method, labels in labels_by_method(results).items():
        cells = []
        for kpi, _, fmt in FEEDER_DAY_COLUMNS:
            for _, days in groups:
                values = np.concatenate([results[label][kpi][days] for label in labels])
                defined = values[np.isfinite(values)]
                cells.append(fmt.format(defined.mean()) if defined.size else "–")
        lines.append("| " + " | ".join([method, *cells]) + " |")
    note = ("\nFeeder days: the days on which grid-only (the batteries idle) leaves the voltage band or overloads a "
            "line or the transformer. Means over the group's days (and a learner's runs); the share is the mean of "
            "the days' own shares of the optimal saving.")
    Path(path).write_text("\n".join(lines) + "\n" + note + "\n")


def plot_cost_gap(path: Path, by_method: RunSummary, title: str, reference: str = "optimal") -> None:
    """Where each method's gap to ``reference`` comes from: per method a horizontal bar of each part's difference
    to the reference's (stacked, parts that cost more to the right, parts that save to the left) and a black
    diamond at the total gap. The axis ends past the grid-only gap (or the largest one below 3x it); bars reaching
    beyond are cut at the edge, and a total gap beyond it is written there."""
    breakdown = cost_breakdown(by_method)
    if reference not in breakdown:
        return
    base = breakdown[reference]
    methods = [m for m in breakdown if m != reference][::-1]  # the first method on top
    if not methods:
        return
    parts = [key for key in base if key != "community_cost"]
    gaps = {m: breakdown[m]["community_cost"] - base["community_cost"] for m in methods}
    magnitudes = [abs(gap) for gap in gaps.values()]
    cap = 3.0 * gaps["grid_only"] if gaps.get("grid_only", 0.0) > 0.0 else math.inf  # no grid-only: no cap
    span = max((magnitude for magnitude in magnitudes if magnitude <= cap), default=max(magnitudes))
    limit = max(1.15 * span, 1e-6)  # every gap 0 (MPC with the oracle alone) still gets an axis
    colors = dict(zip(COST_PARTS, ("tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:gray",
                                   "tab:olive")))
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(methods) + 1.8), layout="constrained")
    y = np.arange(len(methods))
    right, left = np.zeros(len(methods)), np.zeros(len(methods))
    for part in parts:
        delta = np.array([breakdown[m][part] - base[part] for m in methods])
        start = np.where(delta >= 0, right, left)
        ax.barh(y, delta, left=start, color=colors[part], edgecolor="black", linewidth=0.3,
                label=COST_PART_LABELS[part])
        right, left = np.where(delta >= 0, right + delta, right), np.where(delta < 0, left + delta, left)
    total = np.array([gaps[m] for m in methods])
    ax.scatter(np.clip(total, -limit, limit), y, marker="D", color="black", s=22, zorder=3, label="total gap")
    for row, value in enumerate(total):
        if abs(value) > limit:
            ax.text(np.sign(value) * limit, row, f" {value:+.1f} ", va="center", ha="right" if value > 0 else "left",
                    fontsize=8, bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    ax.set_xlim(max(-limit, min(-0.25 * limit, left.min() - 0.05 * limit)), limit)
    ax.set_yticks(y, methods)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"cost above {reference}'s, by part [money/day]")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
