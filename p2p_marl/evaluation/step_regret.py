"""Where a controller loses, by MPC's reckoning: the regret of each step's decisions.

    python -m p2p_marl.evaluation.step_regret [RUN_DIR ...] [--days test] [--max-days N] [--threads T] [--out DIR]

How far a controller's battery setpoints lie from MPC's says little: MPC's plans have ties (energy moved between
steps of one price costs the same), and a planner that breaks them otherwise (MPC with power smoothing, the taught
MADDPG's teacher) plays setpoints far from MPC's, each step of which MPC counts exactly as good as its own
(tests/test_step_regret.py). This script measures what a controller's decisions cost instead. In each state
the controller reaches, MPC on the environment's forecaster (``p2p_marl.baselines.mpc``) plans the rest of the
day twice: freely (cost V) and with the step's battery powers and curtailed PV fixed to what the controller plays
(cost Q, ``DispatchProblem.fixed_first_kw``). The step's regret Q - V is what the controller's battery and
curtailment decisions in that step cost, the rest of the day planned as MPC plans it: 0 for MPC's own step or
one tied with it, never negative beyond the solver's tolerances (the overload cuts', the mixed-integer gap's). A
third plan fixes the batteries alone (Q_battery) and splits the regret in two: the batteries' part
Q_battery - V, and the curtailment's given the batteries' step, Q - Q_battery.

The bids are judged apart. The LP plans the community behind one meter, where every household's surplus meets
another's need; in the market that trade happens only where the bids cross, and a step in which some households
import at the retail price while others export at the feed-in tariff loses the overlap times the price gap (``bid
loss``; with no P2P fee or loss charge, the community's cost depends on the bids in no other way). With perfect
forecasts a day's regrets and its bid loss add up to the controller's cost above the optimum exactly (the plans
telescope); with persistence forecasts they do not, and the table shows the cost gap to MPC (played) beside
them. MPC itself is a row, the check from outside: its regret is 0 to the solver's rounding.

The default community only: the judge refuses the environment's safety filter (it plays another step than the one
asked for) and a shared battery (whose step the plans would choose, not the battery's rule or the controller).
Writes ``step_regret.md`` (also printed) and ``step_regret.png`` (regret per community-step by hour of the day,
mean over days and runs; random actions, whose regret is several times the others', left out) to ``--out``
(default: a new directory ``runs/step_regret/<date>_<time>``). Test days by default, beside the comparison
table: it explains reported numbers and chooses nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from p2p_marl.baselines.mpc import MPCPolicy, played_step_kw
from p2p_marl.baselines.policy import Policy, PolicyWrapper
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import reference_costs, rollout_days
from p2p_marl.evaluation.day_scripts import day_means, finish_plot, method_styles, runs_script_arguments
from p2p_marl.evaluation.kpis import day_kpis
# report sets matplotlib's file-only backend
from p2p_marl.evaluation.report import console, method_of, period_headers, plt, tariff_periods
from p2p_marl.progress import track
from p2p_marl.sim.community import CommunityCore

CONTROLLERS = ("mpc_persistence", "rule_time_of_use", "rule_self_consumption", "idle_mid_price", "random")
COSTLIEST_STEP_SHARE = 0.1  # the table's concentration column: the regret in this share of the costliest steps
NO_REGRET_PER_STEP = 1e-9  # money per community-step: a regret up to this is the LP's rounding (MPC's own: 1e-16)


class RegretShadow(PolicyWrapper):
    """``policy`` played unchanged while MPC judges each of its steps: ``regrets`` (T, B) holds Q - V and
    ``battery_regrets`` (T, B) Q_battery - V of every step since ``reset`` (money per community-step, see the
    module docstring)."""

    def __init__(self, policy: Policy, threads: int = 1):
        super().__init__(policy, policy.name)
        self.judge = MPCPolicy(threads=threads)
        self._regrets: list[np.ndarray] = []
        self._battery_regrets: list[np.ndarray] = []

    def reset(self, core: CommunityCore) -> None:
        if core.config.safety_filter or core.has_shared_battery:
            raise ValueError("RegretShadow judges the step a controller asks for by plans that fix the households' "
                             "batteries and PV: the environment's safety filter would play another step, and a "
                             "shared battery's step would be planned, not played; use a core without them")
        super().reset(core)
        self.judge.reset(core)
        self._regrets, self._battery_regrets = [], []

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        action = np.asarray(self.policy.act(core, obs), dtype=np.float64)
        if not np.all(np.isfinite(action)):  # before the plans, whose check would name the kW, not the action
            raise ValueError(f"{self.policy.name} played a non-finite action at step {core.t}: the step would refuse "
                             "it")
        played_kw = played_step_kw(core, action)
        batteries_kw = played_kw.copy()
        batteries_kw[:, 2] = np.nan  # the curtailment left to the plan
        free_cost = np.array([plan.cost for plan in self.judge.plans(core)])
        for regrets, fixed_kw in ((self._battery_regrets, batteries_kw), (self._regrets, played_kw)):
            fixed = self.judge.plans(core, fixed_kw)
            regrets.append(np.array([plan.cost for plan in fixed]) - free_cost)
        if core.t == core.steps_per_episode - 1:
            self.judge.close()
        return action

    @property
    def regrets(self) -> np.ndarray:
        return self._stacked(self._regrets)

    @property
    def battery_regrets(self) -> np.ndarray:
        return self._stacked(self._battery_regrets)

    @staticmethod
    def _stacked(steps: list[np.ndarray]) -> np.ndarray:
        if not steps:
            raise RuntimeError("RegretShadow has judged no step since reset: play an episode first")
        return np.stack(steps)


def costliest_share(regrets: np.ndarray, share: float = COSTLIEST_STEP_SHARE) -> float:
    """The part of the total regret in the costliest ``share`` of the steps: near ``share`` when a controller
    errs a little everywhere, near 1 when a few steps hold its losses; NaN without regret beyond the solver's
    rounding."""
    flat = np.sort(np.maximum(regrets.ravel(), 0.0))[::-1]
    total = flat.sum()
    if total <= NO_REGRET_PER_STEP * flat.size:
        return float("nan")
    return float(flat[:max(1, round(share * flat.size))].sum() / total)


def bid_loss(infos: dict[str, np.ndarray]) -> np.ndarray:
    """(D,) money per day lost to bids that did not cross (``rollout_days``' infos): in each step the energy the
    community both imported and exported at the households' meters, times retail minus feed-in."""
    overlap_kwh = np.minimum(infos["grid_import_kwh"].sum(axis=-1), infos["grid_export_kwh"].sum(axis=-1))
    spread = infos["retail_price"][..., 0] - infos["feed_in_price"][..., 0]
    return (overlap_kwh * spread).sum(axis=-1)


def step_regret(config: EnvConfig, days: np.ndarray, controllers: dict[str, Policy],
                threads: int = 1) -> list[dict]:
    """A row per method of ``controllers`` (labelled as ``compare.load_policies`` labels them, the runs of one
    method pooled): runs, each run's share of the optimal saving and their mean, cost per day and the cost gap
    to MPC per day, regret per day (each run and mean), the batteries' part of it, the costliest steps' part
    and its mean by step (T,), the bid loss per day, all means over ``days``. ``controllers`` must hold
    ``mpc_persistence``, the gap's reference."""
    if "mpc_persistence" not in controllers:
        raise ValueError(f"controllers must hold mpc_persistence (the cost gap's reference), got {list(controllers)}")
    references = reference_costs(config, days, progress=True)
    runs: dict[str, list[tuple[dict, np.ndarray]]] = {}
    for label, policy in track(controllers.items(), len(controllers), "step regret", "controllers"):
        shadow = RegretShadow(policy, threads)
        infos = rollout_days(config, shadow, days)
        kpis = day_kpis(infos, config.dt_h, references["grid_only_bills"], references["optimal"])
        means = {**day_means(kpis), "bid_loss": float(bid_loss(infos).mean()),
                 "battery_regret": float(shadow.battery_regrets.sum(axis=0).mean())}
        runs.setdefault(method_of(label), []).append((means, shadow.regrets))
    rows = []
    for method, method_runs in runs.items():
        regrets = np.concatenate([run_regrets for _, run_regrets in method_runs], axis=1)  # (T, runs x D)
        rows.append({"method": method, "runs": len(method_runs),
                     "shares": [means["share"] for means, _ in method_runs],
                     "share": float(np.mean([means["share"] for means, _ in method_runs])),
                     "cost": float(np.mean([means["cost"] for means, _ in method_runs])),
                     "run_regret": [float(run_regrets.sum(axis=0).mean()) for _, run_regrets in method_runs],
                     "regret": float(regrets.sum(axis=0).mean()), "costliest": costliest_share(regrets),
                     "battery_regret": float(np.mean([means["battery_regret"] for means, _ in method_runs])),
                     "bid_loss": float(np.mean([means["bid_loss"] for means, _ in method_runs])),
                     "regret_by_step": regrets.mean(axis=1)})
    mpc_cost = next(row["cost"] for row in rows if row["method"] == "mpc_persistence")
    return [{**row, "gap_to_mpc": row["cost"] - mpc_cost} for row in rows]


def _money(value: float) -> str:
    return f"{round(value, 2) + 0.0:.2f}"  # + 0.0: -1e-15 (rounding) reads 0.00, not -0.00


def markdown(rows: list[dict], retail_per_kwh: np.ndarray, dt_h: float) -> str:
    """The table of ``step_regret``'s rows, then their regret within each time-of-use period (money per day)."""
    lines = ["| method | runs | share of optimal saving | cost /day | cost above MPC /day | regret /day (each run) | "
             f"batteries' part /day | regret in the costliest {COSTLIEST_STEP_SHARE:.0%} of steps | bid loss /day |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        several = row["runs"] > 1
        each = " (" + " / ".join(_money(regret) for regret in row["run_regret"]) + ")" if several else ""
        costliest = "n/a" if np.isnan(row["costliest"]) else f"{row['costliest']:.0%}"
        lines.append(f"| {row['method']} | {row['runs']} | {row['share']:.3f} | {row['cost']:.2f} | "
                     f"{row['gap_to_mpc']:+.2f} | {_money(row['regret'])}{each} | {_money(row['battery_regret'])} | "
                     f"{costliest} | "
                     f"{_money(row['bid_loss'])} |")
    headers = ["method: regret /day by time-of-use period", *period_headers(retail_per_kwh, dt_h), "whole day"]
    lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        by_period = [row["regret_by_step"][start:end].sum() for start, end in tariff_periods(retail_per_kwh)]
        lines.append("| " + " | ".join([row["method"], *(_money(regret) for regret in by_period),
                                        _money(row["regret"])]) + " |")
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[dict], dt_h: float, title: str) -> None:
    """Each method's mean regret per community-step by hour of the day, the learners above and the rules below
    (their regret is several times the learners'; random actions', larger still, left out), MPC's zero in
    both; the rules grey, MPC red, the learners in the other colours."""
    fig, (ax_learners, ax_rules) = plt.subplots(2, 1, figsize=(10.5, 8.0), sharex=True, layout="constrained")
    shown = [row for row in rows if row["method"] != "random"]
    styles = {**method_styles([row["method"] for row in shown], CONTROLLERS), "mpc_persistence": ("tab:red", "-")}
    for row in shown:
        color, style = styles[row["method"]]
        # Each step drawn over its own interval: the edges run to the episode's end.
        edges_h = np.arange(len(row["regret_by_step"]) + 1) * dt_h
        for ax in (ax_learners, ax_rules):
            if (ax is ax_rules) == (row["method"] in CONTROLLERS) or row["method"] == "mpc_persistence":
                ax.stairs(row["regret_by_step"], edges_h, color=color, linestyle=style, linewidth=1.5,
                          label=f"{row['method']} ({_money(row['regret'])} /day)")
    ax_rules.set_xticks(np.arange(0, edges_h[-1] + dt_h / 2, 3))
    fig.suptitle(title)
    ax_learners.set_ylabel("regret per community-step (money)")
    ax_learners.set_title("learners")
    ax_learners.grid(alpha=0.3)
    ax_learners.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    finish_plot(fig, ax_rules, path, "hour of the day", "regret per community-step (money)",
                "the rules and the floor (random actions left out)", "center left", outside=True)


def main(argv: list[str] | None = None) -> None:
    args, config, days, controllers, out = runs_script_arguments("step_regret", __doc__.splitlines()[0],
                                                                 CONTROLLERS, argv)
    rows = step_regret(config, days, controllers, args.threads)
    table = markdown(rows, CommunityCore(config).retail_per_kwh, config.dt_h)
    (out / "step_regret.md").write_text(table)
    title = (f"Regret of each step's decisions by MPC's reckoning: {len(days)} {args.days} days, "
             f"{config.n_agents} households")
    plot(out / "step_regret.png", rows, config.dt_h, title)
    console().print(title + "\n" + table)
    console().print(f"Written to {out}")


if __name__ == "__main__":
    main()
