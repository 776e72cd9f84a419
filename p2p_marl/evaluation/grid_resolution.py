"""How much a value-based learner's action grid lets a planner reach: MPC with every action snapped to the grid.

    python -m p2p_marl.evaluation.grid_resolution [--levels 3 5 7 9] [--days validation] [--max-days N] [--out DIR]

DQN and Q-learning choose among the discrete actions of their ``ActionGrid`` (battery setpoint levels, with the
net-load level, x price levels x curtailment levels). How much of the optimal saving can a planner reach when it
may only play those actions? MPC on the environment's persistence forecasts (``p2p_marl.baselines.mpc``) plans
as usual, and each step plays the grid action nearest its own (``ActionGrid.nearest``: the battery level the
battery can follow nearest, then the nearest price and curtailment); it plans again from the state that reaches,
so it can make up for the grid's rounding over the next steps. One row per grid: DQN's price and curtailment
levels and Q-learning's (their configs' defaults) with each number of battery levels in ``--levels``, beside MPC
unsnapped. A row is a lower bound of what a planner restricted to the grid could reach (MPC plans without the grid
and rounds), and what a perfect imitation of MPC on that grid reaches. The grids' curtailment is none or all of
the PV, so the part-curtailment with which MPC keeps the feeder in its voltage band is lost to them. Writes
``grid_resolution.md`` (the table, also printed) and ``grid_resolution.png`` (share against battery levels) to
``--out`` (default: a new directory ``runs/grid_resolution/<date>_<time>``). Validation days by default: the grid
is a design choice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from p2p_marl.algos.dqn import DQNConfig
from p2p_marl.algos.qlearning import QLearningConfig
from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.policy import PolicyWrapper
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import evaluate_policy, reference_costs
from p2p_marl.evaluation.day_scripts import add_day_arguments, day_means, days_and_output, finish_share_plot
from p2p_marl.evaluation.report import console, plt  # report sets matplotlib's file-only backend
from p2p_marl.sim.community import CommunityCore
from p2p_marl.training.value_based import ActionGrid

LEARNER_GRIDS = {"dqn": DQNConfig(), "qlearning": QLearningConfig()}


class SnappedToGrid(PolicyWrapper):
    """A policy that plays the grid action nearest to what ``policy`` asks for."""

    def __init__(self, name: str, policy, grid: ActionGrid):
        super().__init__(policy, name)
        self.grid = grid

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        return self.grid.actions(core, obs, self.grid.nearest(core, obs, self.policy.act(core, obs)))


def learner_grid(learner: str, n_battery_levels: int) -> ActionGrid:
    """The grid of ``learner``'s default config with ``n_battery_levels`` fixed setpoints."""
    config = LEARNER_GRIDS[learner]
    return ActionGrid(n_battery_levels, config.n_price_levels, config.n_curtail_levels,
                      config.follow_net_load_action)


def grid_resolution(config: EnvConfig, days: np.ndarray, levels: list[int]) -> list[dict]:
    """One row per grid (and MPC unsnapped first): learner, battery levels, actions, share of the optimal saving,
    cost per day, days with violations (means over ``days``)."""
    references = reference_costs(config, days, progress=True)
    rows = [_row("MPC, continuous", None, None, evaluate_policy(config, MPCPolicy(progress=True), days, references))]
    for learner in LEARNER_GRIDS:
        for n_levels in levels:
            grid = learner_grid(learner, n_levels)
            policy = SnappedToGrid(f"mpc_on_{learner}_grid", MPCPolicy(progress=True), grid)
            rows.append(_row(f"MPC on {learner}'s grid", n_levels, len(grid),
                             evaluate_policy(config, policy, days, references)))
    return rows


def _row(label: str, n_levels: int | None, n_actions: int | None, kpis: dict[str, np.ndarray]) -> dict:
    return {"method": label, "battery_levels": n_levels, "actions": n_actions, **day_means(kpis)}


def markdown(rows: list[dict]) -> str:
    lines = ["| method | battery levels (+ net-load) | actions | share of optimal saving | cost /day | "
             "days with violations |", "|---|---|---|---|---|---|"]
    for row in rows:
        levels = "–" if row["battery_levels"] is None else str(row["battery_levels"])
        actions = "continuous" if row["actions"] is None else str(row["actions"])
        lines.append(f"| {row['method']} | {levels} | {actions} | {row['share']:.3f} | {row['cost']:.2f} | "
                     f"{row['violation_days']:.0%} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[dict], title: str) -> None:
    """Share of the optimal saving against the number of battery levels, one line per learner's grid, MPC
    unsnapped as a horizontal line."""
    fig, ax = plt.subplots(figsize=(7.0, 4.2), layout="constrained")
    for learner, color, style in zip(LEARNER_GRIDS, ("tab:blue", "tab:orange"), ("o-", "x--")):
        own = [row for row in rows if row["method"] == f"MPC on {learner}'s grid"]
        ax.plot([r["battery_levels"] for r in own], [r["share"] for r in own], style, color=color,
                label=f"MPC on {learner}'s grid")
        default_levels = LEARNER_GRIDS[learner].n_battery_levels
        for row in own:
            if row["battery_levels"] == default_levels:
                ax.plot(row["battery_levels"], row["share"], "s", color=color, markersize=10, fillstyle="none",
                        label=f"{learner}'s default ({default_levels} levels)")
    ax.axhline(rows[0]["share"], color="tab:red", linestyle="--", label="MPC, continuous actions")
    finish_share_plot(fig, ax, path, "fixed battery setpoint levels in the grid (plus the net-load level)", title,
                      "lower right")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[3, 5, 7, 9],
                        help="numbers of fixed battery setpoint levels to try (each >= 2; an even number has no idle "
                             "level)")
    add_day_arguments(parser, "validation")
    args = parser.parse_args(argv)
    if min(args.levels) < 2:
        parser.error(f"--levels must each be >= 2 (a grid from -1 to +1), got {args.levels}")
    config = EnvConfig()
    days, out = days_and_output(parser, args, config, "grid_resolution")
    rows = grid_resolution(config, days, sorted(set(args.levels)))
    table = markdown(rows)
    (out / "grid_resolution.md").write_text(table)
    title = f"MPC on the learners' action grids: {len(days)} {args.days} days, {config.n_agents} households"
    plot(out / "grid_resolution.png", rows, title)
    console().print(title + "\n" + table)
    console().print(f"Written to {out}")


if __name__ == "__main__":
    main()
