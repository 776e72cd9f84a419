"""Evaluate the benchmarks and trained policies on the environment's held-out test days.

    python evaluate.py                                    # every benchmark on community_10's test days
    python evaluate.py env=community_50 max_days=10
    python evaluate.py checkpoints=[runs/train/RUN_DIR] methods=[grid_only,optimal]
    python evaluate.py checkpoints=[RUN_DIR,...] run_checkpoint=last   # a run's latest checkpoint, not its best
    python evaluate.py checkpoints=[RUN_DIR,...] truthful_bid=true     # also each with the truthful bid (a diagnostic)
    python evaluate.py checkpoints=[RUN_DIR,...] safety_filter=true    # also each through the feeder safety filter
    python evaluate.py checkpoints=[RUN_DIR,...] ensemble=true         # also each actor learner's runs as one policy

Every method plays all test days in one batched core; the grid-only benchmark and the perfect-foresight LP of
the same days are the references of the savings (the optimum is played from those LPs' schedules, not solved
again). A training run directory is played from its best evaluation on validation days (``checkpoints/best.pt``,
the model selection of reported results; ``run_checkpoint=last`` plays its latest checkpoint), observing with the
``forecast_bins`` and ``extra_features`` it was trained with (``p2p_marl.algos.load_policy``). Written to the
run directory (``hydra.run.dir``, by default ``runs/evaluate/<date>_<time>``, with
``_2``, ``_3``, ... for evaluations started in the same second):

- ``results.csv``: one row per method and day, every KPI (definitions: ``p2p_marl/evaluation/kpis.py``);
- ``summary.json``: per method (each checkpoint on its own), each KPI's mean, standard deviation and number of
  days; ``summary_by_method.json``: the checkpoints of one learner and training setting (its seeds) grouped,
  each KPI's mean and standard deviation over those runs, printed as a second table when a method has several,
  and as the Markdown table ``summary_by_method.md`` (the README's comparison table);
- ``cost_breakdown.md`` and ``cost_gap_to_optimal.png``: each method's cost per day split into its parts (grid
  energy, battery wear, network penalty, end-of-day settlement, fees), and how far each part lies above or below
  the optimum's; its last column the share of the mean saving, which weighs each day by what the optimum saves
  on it, as the bill does (the other tables' share is the mean of the days' shares);
- ``feeder_days.md`` (with grid-only among the methods): each method's share of the optimal saving,
  curtailment, grid energy and network penalty on the days on which grid-only (idle batteries) violates the
  feeder, and on the other days;
- ``dispatch_<method>.png`` (one day of operation), ``costs_by_method.png``, ``share_of_optimal_saving.png``,
  ``mean_day_by_method.png`` (each method's average day: state of charge, battery power, grid import and export);
- TensorBoard event files with every KPI as scalar ``<method>/<kpi>`` (``tensorboard --logdir runs``);
and the summary table is printed (at most 100 columns wide). Bad input (a setting, a checkpoint that is not
intact or was trained for another environment, a run directory without checkpoints, a profile CSV) stops it
before any work with one line on stderr and exit code 1 (``HYDRA_FULL_ERROR=1`` shows the traceback).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from p2p_marl.baselines.optimal import OptimalPolicy
from p2p_marl.baselines.policy import Policy, PolicyWrapper
from p2p_marl.baselines.safety_filter import SafetyFilter
from p2p_marl.cli import user_errors_as_one_line
from p2p_marl.evaluation import report
from p2p_marl.evaluation.compare import load_policies, network_cost, reference_costs, rollout_days, select_days
from p2p_marl.evaluation.config import EvaluateConfig, register_configs, to_evaluate_config
from p2p_marl.evaluation.kpis import day_kpis
from p2p_marl.progress import track
from p2p_marl.run_dirs import hydra_launch_records, remove_if_only_launch_records
from p2p_marl.sim.community import CommunityCore
from p2p_marl.sim.safety_filter import MOVED_KW

log = logging.getLogger("evaluate")
register_configs()


def evaluate(config: EvaluateConfig, policies: dict[str, Policy], output_dir: Path) -> None:
    """Play every policy on the test days, print the table and write every output into ``output_dir``."""
    env = config.env
    core = CommunityCore(env)
    days, plot_day = select_days(core, config.max_days, config.plot_day, config.days)
    plot_index = int(np.flatnonzero(days == plot_day)[0])
    log.info("Evaluating %d method(s) on %d %s day(s) of a community of %d households (%d with PV + battery)",
             len(policies), len(days), config.days, env.n_agents, int(core.has_battery.sum()))
    references = reference_costs(env, days, progress=True)
    network = network_cost(env, days, references)
    log.info("The network's cost (optimum with minus without the feeder's limits): %.4f per day on average, "
             "above zero on %d of %d days", network.mean(), int((network > 1e-9).sum()), len(days))
    for policy in policies.values():
        planner = policy.policy if isinstance(policy, PolicyWrapper) else policy  # e.g. the optimum through the filter
        if isinstance(planner, OptimalPolicy) and planner.network:  # the references' LPs are its plan
            planner.remember(env, references["optimal_schedules"])
    results: report.Results = {}
    mean_days: dict[str, dict[str, np.ndarray]] = {}
    for label, policy in track(policies.items(), len(policies), "methods", "methods"):
        infos = rollout_days(env, policy, days)
        # Through the wrapper its count; through the environment's own filter the community-steps where it moved
        # a household's power by more than MOVED_KW, as the wrapper counts them.
        if isinstance(policy, SafetyFilter) or "safety_filter_kwh" in infos:
            moved = (policy.interventions if isinstance(policy, SafetyFilter)
                     else int((infos["safety_filter_kwh"].max(axis=-1) > MOVED_KW * env.dt_h).sum()))
            log.info("%s: the safety filter moved the actions of %d of %d community-steps", label, moved,
                     len(days) * core.steps_per_episode)
        results[label] = day_kpis(infos, env.dt_h, grid_only_bills=references["grid_only_bills"],
                                  optimal_cost=references["optimal"])
        mean_days[label] = report.mean_day(infos, core.has_battery)
        report.plot_dispatch(output_dir / f"dispatch_{label.replace(':', '_')}.png",
                             {key: value[plot_index] for key, value in infos.items()}, env.dt_h,
                             core.has_battery, title=f"{label}: day {plot_day}, {env.n_agents} households")

    summary = report.summarize(results)
    console = report.console()
    console.print(report.summary_table(
        summary, title=f"{len(days)} {config.days} day(s), {env.n_agents} households: mean ± std over days"))
    report.write_results_csv(output_dir / "results.csv", days, results)
    report.write_summary_json(output_dir / "summary.json", summary)
    by_method = report.summarize_runs(summary)
    report.write_summary_json(output_dir / "summary_by_method.json", by_method)
    report.write_markdown_table(output_dir / "summary_by_method.md", by_method)
    report.write_cost_breakdown(output_dir / "cost_breakdown.md", by_method)
    report.write_feeder_days(output_dir / "feeder_days.md", results)
    if len(by_method) < len(summary):  # some learner came with several checkpoints (seeds)
        console.print(report.runs_table(by_method, title="Per method: mean ± std over seeds (of each run's mean "
                                                         f"over the {config.days} days)"))
    report.plot_kpi_by_method(output_dir / "costs_by_method.png", summary, "community_cost",
                              ylabel="community cost [money/day]",
                              title=f"Community cost per day ({len(days)} {config.days} days)")
    report.plot_kpi_by_method(output_dir / "share_of_optimal_saving.png", summary, "share_of_optimal_saving",
                              ylabel="share of optimal saving [-]",
                              title=f"Share of the optimal saving ({len(days)} {config.days} days)",
                              reference=(1.0, "optimum = 1 (grid-only = 0)"))
    report.plot_cost_gap(output_dir / "cost_gap_to_optimal.png", by_method,
                         title=f"Where the gap to the optimum comes from ({len(days)} {config.days} days)")
    report.plot_mean_day_by_method(output_dir / "mean_day_by_method.png", mean_days, env.dt_h,
                                   title=f"The average of {len(days)} {config.days} days, by method")
    report.write_cost_gap_by_period(output_dir / "cost_gap_by_period.md", mean_days,
                                    core.retail_per_kwh[:core.steps_per_episode], env.dt_h)
    if config.tensorboard:
        report.write_tensorboard(output_dir, days, results)
    log.info("Results written to %s", output_dir)


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)

    def remove_empty_output_dir() -> None:
        remove_if_only_launch_records(output_dir, hydra_launch_records())

    with user_errors_as_one_line("evaluate.py", on_error=remove_empty_output_dir):
        config = to_evaluate_config(cfg)
        policies = load_policies(config.methods, config.checkpoints, config.seed, config.env, config.run_checkpoint,
                                 config.truthful_bid, config.safety_filter, config.threads, config.ensemble)
        evaluate(config, policies, output_dir)


if __name__ == "__main__":
    main()
