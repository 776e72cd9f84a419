"""The table a training run ends with: the learner beside grid-only, the best rule, MPC with the environment's
forecasts (the same information the learner has) and the optimum.

Every row is on the days of the run's own evaluation (``HeldOutDaysEvaluator``), against the references it
computed once (the optimum's schedules are played again, not solved again); each rule needs one rollout.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table

from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.optimal import OptimalPolicy
from p2p_marl.baselines.rules import GridOnly
from p2p_marl.evaluation.compare import BENCHMARKS, evaluate_policy, make_benchmark
from p2p_marl.evaluation.report import TABLE_WIDTH, summarize

RULE_PREFIX = "rule_"  # the rule-based benchmarks of BENCHMARKS
# (KPI, header, format)
COLUMNS = (
    ("share_of_optimal_saving", "share of\noptimal saving", "{:.3f}"),
    ("community_cost", "cost\n/day", "{:.2f}"),
    ("voltage_violation_steps", "voltage-violation\nsteps/day", "{:.2f}"),
    ("line_overload_steps", "overload\nsteps/day", "{:.2f}"),
)


def _means(kpis: dict) -> dict[str, float | None]:
    return {kpi: stats["mean"] for kpi, stats in summarize({"method": kpis})["method"].items()}


def benchmark_rows(evaluator, threads: int = 1) -> dict[str, dict[str, float | None]]:
    """Label -> KPI means of grid-only, the best rule, MPC (solving ``threads`` LPs at a time) and the optimum on
    ``evaluator``'s days. The best rule has the lowest cost (the same ranking as the share of the optimal saving,
    which a day with nothing to save leaves undefined)."""
    env, days, references = evaluator.env_config, evaluator.days, evaluator.references
    rules = {name: _means(evaluate_policy(env, make_benchmark(name), days, references))
             for name in BENCHMARKS if name.startswith(RULE_PREFIX)}
    best_rule = min(rules, key=lambda name: rules[name]["community_cost"])
    optimum = OptimalPolicy(network=True)
    optimum.remember(env, references["optimal_schedules"])
    return {"grid only": _means(evaluate_policy(env, GridOnly(), days, references)),
            f"best rule: {best_rule.removeprefix(RULE_PREFIX)}": rules[best_rule],
            f"MPC, {env.forecaster} forecasts": _means(evaluate_policy(env, MPCPolicy(threads=threads), days,
                                                                      references)),
            "optimum (perfect-foresight LP)": _means(evaluate_policy(env, optimum, days, references))}


def comparison_table(learner: str, learner_kpis: dict[str, float], evaluator, threads: int = 1) -> str:
    """The table as text, at most ``TABLE_WIDTH`` columns wide: ``learner``'s last evaluation (KPI -> mean
    over the days) above the benchmark rows."""
    title = f"{learner} after training, on {len(evaluator.days)} validation day(s): means per day"
    if evaluator.env_config.safety_filter:
        title += ", every row through the feeder safety filter"
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("method", no_wrap=True)
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    rows = {learner: learner_kpis, **benchmark_rows(evaluator, threads)}
    for label, means in rows.items():
        table.add_row(label, *("n/a" if means.get(kpi) is None else fmt.format(means[kpi])
                               for kpi, _, fmt in COLUMNS))
    console = Console(file=io.StringIO(), width=TABLE_WIDTH, color_system=None)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()).strip("\n")
