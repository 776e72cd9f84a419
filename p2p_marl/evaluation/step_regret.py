"""Where a controller loses, by MPC's reckoning: the regret of each step's decisions.

    python -m p2p_marl.evaluation.step_regret [RUN_DIR ...] [--days test] [--max-days N] [--threads T] [--out DIR]

How far a controller's battery setpoints lie from MPC's says little: MPC's plans have ties (energy moved between
steps of one price costs the same), and a planner that breaks them otherwise (MPC with power smoothing, the taught
learners' teacher) plays setpoints far from MPC's at the same cost. This script measures what a controller's
decisions cost instead. In each state the controller reaches, MPC on the environment's forecaster
(``p2p_marl.baselines.mpc``) plans the rest of the day twice: freely (cost V) and with the step's battery powers
and curtailed PV fixed to what the controller plays (cost Q, ``DispatchProblem.fixed_first_kw``). The step's
regret Q - V is what the controller's decisions in that step cost, the rest of the day planned as MPC plans it:
0 for MPC's own step or one tied with it, never negative beyond the overload cuts' tolerance. Bid prices do not
enter: without a P2P fee or loss charge the community's cost does not depend on who trades with whom (budget
balance), and the share of the optimal saving is the community's.

A day's regrets would add up to the controller's cost above MPC's plan from the day's start if the forecasts were
right; with persistence forecasts they do not, and the table shows the cost gap to MPC (played) beside them. MPC
itself is a row, the check from outside: its regret is 0 to the solver's tolerance.

Writes ``step_regret.md`` (also printed) and ``step_regret.png`` (regret per community-step by hour of the day,
mean over days and runs; random actions, whose regret is several times the others', left out) to ``--out``
(default: a new directory ``runs/step_regret/<date>_<time>``). Test days by default, beside the comparison
table: it explains reported numbers and chooses nothing.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.policy import Policy, PolicyWrapper
from p2p_marl.cli import user_errors_as_one_line
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import evaluate_policy, load_policies, reference_costs
from p2p_marl.evaluation.day_scripts import add_day_arguments, day_means, selected_days
from p2p_marl.evaluation.report import console, method_of, plt  # report sets matplotlib's file-only backend
from p2p_marl.progress import track
from p2p_marl.run_dirs import script_output_dir
from p2p_marl.sim.community import CommunityCore

CONTROLLERS = ("mpc_persistence", "rule_time_of_use", "rule_self_consumption", "idle_mid_price", "random")
COSTLIEST_STEPS = 0.1  # the table's concentration column: the regret in this share of the costliest steps
NO_REGRET = 1e-6  # money: a total regret up to this is the LP's rounding


class RegretShadow(PolicyWrapper):
    """``policy`` played unchanged while MPC judges each of its steps: ``regrets`` (T, B) holds Q - V of every
    step since ``reset`` (money per community-step, see the module docstring)."""

    def __init__(self, policy: Policy, threads: int = 1):
        super().__init__(policy, policy.name)
        self.judge = MPCPolicy(threads=threads)
        self._regrets: list[np.ndarray] = []

    def reset(self, core: CommunityCore) -> None:
        super().reset(core)
        self.judge.reset(core)
        self._regrets = []

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        action = np.asarray(self.policy.act(core, obs), dtype=np.float64)
        charge_kw, discharge_kw = core.battery_power_kw(action)
        pv_kw = core.profiles.pv_kw[core.days, core.t]  # metered: the truth, as the plan's first step has it
        curtailed_kw = np.minimum(np.maximum(action[..., 2], 0.0), 1.0) * pv_kw
        free = self.judge.plans(core)
        fixed = self.judge.plans(core, np.stack([charge_kw, discharge_kw, curtailed_kw], axis=1))
        self._regrets.append(np.array([q.cost - v.cost for q, v in zip(fixed, free)]))
        if core.t == core.steps_per_episode - 1:
            self.judge.close()
        return action

    @property
    def regrets(self) -> np.ndarray:
        return np.stack(self._regrets)


def costliest_share(regrets: np.ndarray, share: float = COSTLIEST_STEPS) -> float:
    """The part of the total regret in the costliest ``share`` of the steps: near ``share`` when a controller
    errs a little everywhere, near 1 when a few steps hold its losses; NaN without regret beyond the solver's
    rounding (MPC's own: 1e-14 a day)."""
    flat = np.sort(np.maximum(regrets.ravel(), 0.0))[::-1]
    total = flat.sum()
    return float(flat[:max(1, round(share * flat.size))].sum() / total) if total > NO_REGRET else float("nan")


def step_regret(config: EnvConfig, days: np.ndarray, controllers: dict[str, Policy],
                threads: int = 1) -> list[dict]:
    """A row per method of ``controllers`` (labelled as ``compare.load_policies`` labels them, the runs of one
    method pooled): runs, each run's share of the optimal saving and their mean, cost per day and the cost gap
    to MPC per day, regret per day (each run and mean), the costliest steps' part of it and its mean by step
    (T,), all means over ``days``. ``controllers`` must hold ``mpc_persistence``, the gap's reference."""
    if "mpc_persistence" not in controllers:
        raise ValueError(f"controllers must hold mpc_persistence (the cost gap's reference), got {list(controllers)}")
    references = reference_costs(config, days, progress=True)
    runs: dict[str, list[tuple[dict, np.ndarray]]] = {}
    for label, policy in track(controllers.items(), len(controllers), "step regret", "controllers"):
        shadow = RegretShadow(policy, threads)
        runs.setdefault(method_of(label), []).append((day_means(evaluate_policy(config, shadow, days, references)),
                                                      shadow.regrets))
    rows = []
    for method, method_runs in runs.items():
        regrets = np.concatenate([run_regrets for _, run_regrets in method_runs], axis=1)  # (T, runs x D)
        rows.append({"method": method, "runs": len(method_runs),
                     "shares": [means["share"] for means, _ in method_runs],
                     "share": float(np.mean([means["share"] for means, _ in method_runs])),
                     "cost": float(np.mean([means["cost"] for means, _ in method_runs])),
                     "run_regret": [float(run_regrets.sum(axis=0).mean()) for _, run_regrets in method_runs],
                     "regret": float(regrets.sum(axis=0).mean()), "costliest": costliest_share(regrets),
                     "regret_by_step": regrets.mean(axis=1)})
    mpc_cost = next(row["cost"] for row in rows if row["method"] == "mpc_persistence")
    return [{**row, "gap_to_mpc": row["cost"] - mpc_cost} for row in rows]


def markdown(rows: list[dict]) -> str:
    lines = ["| method | runs | share of optimal saving | cost /day | cost above MPC /day | regret /day (each run) | "
             f"regret in the costliest {COSTLIEST_STEPS:.0%} of steps |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        several = row["runs"] > 1
        each = " (" + " / ".join(f"{regret:.2f}" for regret in row["run_regret"]) + ")" if several else ""
        lines.append(f"| {row['method']} | {row['runs']} | {row['share']:.3f} | {row['cost']:.2f} | "
                     f"{row['gap_to_mpc']:+.2f} | {round(row['regret'], 2) + 0.0:.2f}{each} | "
                     + ("n/a" if np.isnan(row["costliest"]) else f"{row['costliest']:.0%}") + " |")
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[dict], dt_h: float, title: str) -> None:
    """Each method's mean regret per community-step by hour of the day (random actions left out); the rules and
    the floor grey, MPC red, the learners in the other colours."""
    fig, ax = plt.subplots(figsize=(10.5, 5.0), layout="constrained")
    tab10 = plt.get_cmap("tab10").colors  # without MPC's red (3) and the benchmarks' grey (7)
    learner_colors = itertools.cycle(color for color in tab10[::-1] if color not in (tab10[3], tab10[7]))
    grey_styles = iter((":", "-.", (0, (5, 2))))
    for row in rows:
        if row["method"] == "random":
            continue
        if row["method"] == "mpc_persistence":
            color, style = "tab:red", "-"
        elif row["method"] in CONTROLLERS:
            color, style = "tab:gray", next(grey_styles)
        else:
            color, style = next(learner_colors), "-"
        hours = np.arange(len(row["regret_by_step"])) * dt_h
        ax.plot(hours, row["regret_by_step"], color=color, linestyle=style, drawstyle="steps-post",
                label=f"{row['method']} ({round(row['regret'], 2) + 0.0:.2f} /day)")
    ax.set_xlabel("hour of the day (step start)")
    ax.set_ylabel("regret per community-step (money)")
    ax.set_xticks(np.arange(0, 25, 3))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="training run directories (their best checkpoints) or checkpoints")
    parser.add_argument("--threads", type=int, default=1, help="MPC's LPs solved that many days at a time (>= 1)")
    add_day_arguments(parser, "test")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    config = EnvConfig()
    days = selected_days(parser, args, config)
    with user_errors_as_one_line("step_regret"):  # a bad run directory, before any work
        controllers = load_policies(list(CONTROLLERS), args.runs, env_config=config, threads=args.threads)
    out = script_output_dir(args.out, "step_regret")
    rows = step_regret(config, days, controllers, args.threads)
    table = markdown(rows)
    (out / "step_regret.md").write_text(table)
    title = (f"Regret of each step's decisions by MPC's reckoning: {len(days)} {args.days} days, "
             f"{config.n_agents} households")
    plot(out / "step_regret.png", rows, config.dt_h, title)
    console().print(title + "\n" + table)
    console().print(f"Written to {out}")


if __name__ == "__main__":
    main()
