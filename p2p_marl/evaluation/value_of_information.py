"""The value of information: how much of the optimal saving a controller reaches with each quality of forecast.

    python -m p2p_marl.evaluation.value_of_information [--days test] [--max-days N] [--out DIR]

MPC (``p2p_marl.baselines.mpc``) plans the default community's days with every forecaster: persistence (the
environment's default), noisy at several error sizes (``forecast_nrmse_next`` / ``forecast_nrmse``, the next
step's and a day ahead's) and the oracle, which must
reach the perfect-foresight optimum. Each row gives the forecasts' measured error on those days (normalised
RMSE of the households' load, PV and net load over every issue step and lead; ``forecasts.forecast_nrmse``)
beside the share of the optimal saving and the cost. The rules and the floor (idle batteries at the mid price,
random actions) use no forecast and are in the table too. Writes ``value_of_information.md`` (the table, also
printed) and ``value_of_information.png`` (share of the optimal saving against the net-load forecast error) to
``--out`` (default: a new directory ``runs/value_of_information/<date>_<time>``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import evaluate_policy, make_benchmark, reference_costs
from p2p_marl.evaluation.day_scripts import add_day_arguments, day_means, days_and_output, finish_share_plot
from p2p_marl.evaluation.report import console, plt  # report sets matplotlib's file-only backend
from p2p_marl.sim.community import CommunityCore
from p2p_marl.sim.forecasts import build_forecaster, forecast_nrmse

# (next step, a day ahead) normalised RMSE of the noisy forecaster's rows: the default, then up to errors as large
# as persistence's.
NOISY_NRMSE = ((0.1, 0.3), (0.2, 0.6), (0.3, 0.9), (0.4, 1.2))
NO_FORECAST = ("idle_mid_price", "random", "rule_self_consumption", "rule_time_of_use")


def value_of_information(config: EnvConfig, days: np.ndarray) -> list[dict]:
    """One row per method: label, forecaster settings, forecast errors (None without a forecast), share of the
    optimal saving and cost per day (means over ``days``), days with violations."""
    references = reference_costs(config, days, progress=True)
    core = CommunityCore(config)
    planners = [("MPC, persistence", "persistence", {})]
    planners += [(f"MPC, noisy {next_step:g}/{day_ahead:g}", "noisy",
                  {"forecast_nrmse_next": next_step, "forecast_nrmse": day_ahead})
                 for next_step, day_ahead in NOISY_NRMSE]
    planners += [("MPC, oracle", "oracle", {})]
    rows = []
    for label, forecaster, settings in planners:
        errors = forecast_nrmse(build_forecaster(config.replace(forecaster=forecaster, forecast_csv=None,
                                                                **settings), core.profiles),
                                days, config.steps_per_episode)
        kpis = evaluate_policy(config, MPCPolicy(forecaster, progress=True, forecast_settings=settings), days,
                               references)
        rows.append(_row(label, kpis, errors))
    for name in NO_FORECAST:
        rows.append(_row(name, evaluate_policy(config, make_benchmark(name), days, references), None))
    optimum = make_benchmark("optimal")
    optimum.remember(config, references["optimal_schedules"])  # play the reference LPs, not solve them again
    rows.append(_row("optimal (perfect-foresight LP)", evaluate_policy(config, optimum, days, references),
                     {"load": 0.0, "pv": 0.0, "net": 0.0}))
    return rows


def _row(label: str, kpis: dict[str, np.ndarray], errors: dict[str, float] | None) -> dict:
    return {"method": label, "errors": errors, **day_means(kpis)}


def markdown(rows: list[dict]) -> str:
    lines = ["| method | forecast NRMSE: load | PV | net load | share of optimal saving | cost /day | "
             "days with violations |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        errors = row["errors"]
        error_cells = (["–"] * 3 if errors is None else [f"{errors[key]:.2f}" for key in ("load", "pv", "net")])
        lines.append(f"| {row['method']} | {' | '.join(error_cells)} | {row['share']:.3f} | {row['cost']:.2f} | "
                     f"{row['violation_days']:.0%} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[dict], title: str) -> None:
    """Share of the optimal saving against the net-load forecast error: MPC's rows as points (the noisy ones
    joined), the methods without a forecast as horizontal lines."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    noisy = [row for row in rows if row["method"].startswith("MPC, noisy")]
    ax.plot([r["errors"]["net"] for r in noisy], [r["share"] for r in noisy], "o-", color="tab:blue",
            label="MPC, noisy forecasts")
    for row in noisy:
        ax.annotate(row["method"].removeprefix("MPC, noisy "), (row["errors"]["net"], row["share"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8, color="tab:blue")
    for method, marker, color in (("MPC, persistence", "s", "tab:red"), ("MPC, oracle", "*", "tab:green")):
        (row,) = [r for r in rows if r["method"] == method]
        ax.plot(row["errors"]["net"], row["share"], marker, color=color, markersize=10, label=method)
    for (method, style), color in zip((("rule_time_of_use", "--"), ("rule_self_consumption", ":"),
                                       ("idle_mid_price", "-.")), ("tab:purple", "tab:brown", "grey")):
        (row,) = [r for r in rows if r["method"] == method]
        ax.axhline(row["share"], linestyle=style, color=color, label=f"{method} (no forecast)")
    finish_share_plot(fig, ax, path, "forecast error: normalised RMSE of the households' net load (load - PV)", title,
                      "lower left")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_day_arguments(parser, "test")
    args = parser.parse_args(argv)
    config = EnvConfig()
    days, out = days_and_output(parser, args, config, "value_of_information")
    rows = value_of_information(config, days)
    table = markdown(rows)
    (out / "value_of_information.md").write_text(table)
    title = f"The value of information: MPC on {len(days)} {args.days} days, {config.n_agents} households"
    plot(out / "value_of_information.png", rows, title)
    console().print(title + "\n" + table)
    console().print(f"Written to {out}")


if __name__ == "__main__":
    main()
