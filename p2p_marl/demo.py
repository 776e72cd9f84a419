"""A first look: one held-out day where households trade peer-to-peer and the feeder binds.

    python -m p2p_marl.demo [--n-agents 10] [--day D]

Plays the day under the time-of-use rule and prints it step by step (energy, P2P trade, clearing price, the
highest bus voltage), then the day's bill beside grid-only, model-predictive control on the environment's
(persistence) forecasts and the perfect-foresight optimum, and what the
feeder did: how often idle batteries push it out of its voltage band, and what the optimum stores or curtails
to stay inside it. The default day is the first test day on which the feeder binds with idle batteries.
"""

from __future__ import annotations

import argparse

import numpy as np
from rich.console import Console
from rich.table import Table

from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.optimal import OptimalPolicy
from p2p_marl.baselines.rules import GridOnly, TimeOfUse
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.compare import rollout_days
from p2p_marl.evaluation.kpis import feeder_violation_steps
from p2p_marl.sim.community import CommunityCore


def violation_steps(infos: dict[str, np.ndarray]) -> np.ndarray:
    """(D,) steps of each day that leave the voltage band or overload the feeder (``kpis.feeder_violation_steps``)."""
    voltage_broken, overload_broken = feeder_violation_steps(infos)
    return (voltage_broken | overload_broken).sum(axis=1)


def binding_day(config: EnvConfig, core: CommunityCore) -> int:
    """The first test day on which idle batteries (grid-only) leave the feeder's limits, else the first test day."""
    idle = rollout_days(config, GridOnly(), core.test_days)
    binding = core.test_days[violation_steps(idle) > 0]
    return int(binding[0] if binding.size else core.test_days[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-agents", type=int, default=10)
    parser.add_argument("--day", type=int, default=None,
                        help="day index; default: the first test day on which the feeder binds")
    args = parser.parse_args(argv)

    config = EnvConfig(n_agents=args.n_agents)
    core = CommunityCore(config)
    day = binding_day(config, core) if args.day is None else args.day
    days = np.array([day])
    runs = {name: rollout_days(config, policy, days)
            for name, policy in (("grid-only", GridOnly()), ("time-of-use rule", TimeOfUse()),
                                 (f"MPC on {config.forecaster} forecasts", MPCPolicy()),
                                 ("optimum", OptimalPolicy()))}
    rule = runs["time-of-use rule"]

    table = Table(title=f"Day {day}, time-of-use rule: {core.n_agents} households "
                        f"({int(core.has_battery.sum())} with PV + battery), kWh per step")
    for column in ("time", "load", "PV", "battery", "P2P", "import", "export", "price", "V max", "cost"):
        table.add_column(column, justify="right")
    band = (config.v_min_pu, config.v_max_pu)
    for t in range(core.steps_per_episode):
        step = {key: value[0, t] for key, value in rule.items()}
        hours = t * core.dt_h
        v_max = step["voltage_pu"].max()
        v_text = f"{v_max:.3f}" if band[0] <= step["voltage_pu"].min() and v_max <= band[1] else f"[red]{v_max:.3f}"
        battery_kwh = step["battery_charge_kwh"].sum() - step["battery_discharge_kwh"].sum()
        table.add_row(f"{int(hours):02d}:{int(round(hours % 1 * 60)):02d}",
                      *(f"{step[k].sum():.2f}" for k in ("load_kwh", "pv_kwh")), f"{battery_kwh:+.2f}",
                      *(f"{step[k].sum():.2f}" for k in ("p2p_buy_kwh", "grid_import_kwh", "grid_export_kwh")),
                      f"{step['clearing_price'][0]:.3f}", v_text, f"{step['cost'].sum():+.3f}")
    console = Console(width=100)
    console.print(table)

    costs = {name: infos["cost"].sum() for name, infos in runs.items()}
    console.print("Community bill for the day (end-of-day settlement of stored energy included): "
                  + ", ".join(f"{name} {cost:.2f}" for name, cost in costs.items()))
    p2p_kwh = rule["p2p_buy_kwh"].sum()
    price = (rule["p2p_buy_kwh"].sum(axis=2) * rule["clearing_price"][..., 0]).sum() / max(p2p_kwh, 1e-12)
    console.print(f"P2P trade under the rule: {p2p_kwh:.1f} kWh between neighbours at {price:.3f} per kWh on "
                  f"average (retail {core.retail_per_kwh.min():.2f}-{core.retail_per_kwh.max():.2f}, feed-in "
                  f"{core.feed_in_per_kwh[0]:.2f}).")
    idle_steps, rule_steps, _, optimum_steps = (int(violation_steps(runs[name])[0]) for name in runs)
    if idle_steps:
        optimum = runs["optimum"]
        console.print(
            f"The feeder binds on this day: with idle batteries the voltage leaves [{band[0]}, {band[1]}] p.u. "
            f"in {idle_steps} steps (up to {runs['grid-only']['voltage_pu'].max():.3f} p.u.), under the rule in "
            f"{rule_steps}; the optimum stays inside in {core.steps_per_episode - optimum_steps} of "
            f"{core.steps_per_episode} steps by charging its batteries "
            f"({optimum['battery_charge_kwh'].sum():.1f} kWh) and curtailing "
            f"{optimum['pv_curtailed_kwh'].sum():.1f} kWh of PV.")
    else:
        console.print(f"The feeder stays within its limits on day {day} with idle batteries.")


if __name__ == "__main__":
    main()
