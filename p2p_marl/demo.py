"""A first look: one held-out day of the default community under the self-consumption rule.

    python -m p2p_marl.demo [--n-agents 10] [--day D]

Prints a per-step table of the community (energy, P2P trade, clearing price, voltage) and the day's bill
next to the grid-only baseline.
"""

from __future__ import annotations

import argparse

import numpy as np
from rich import box
from rich.table import Table

from p2p_marl.baselines.rules import GridOnly, SelfConsumption
from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.report import add_number_column, console
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.sim.community import CommunityCore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-agents", type=int, default=10)
    parser.add_argument("--day", type=int, default=None, help="day index; default: the first test day")
    args = parser.parse_args(argv)

    core = CommunityCore(EnvConfig(n_agents=args.n_agents))
    day = int(core.test_days[0]) if args.day is None else args.day
    rule = rollout(core, SelfConsumption(), np.array([day]))
    grid = rollout(core, GridOnly(), np.array([day]))

    table = Table(title=f"Day {day}: self-consumption rule, community of {core.n_agents} households "
                        f"({int(core.has_battery.sum())} with PV + battery)", box=box.SIMPLE_HEAD, pad_edge=False)
    # Two-line headers keep the table within report.TABLE_WIDTH columns.
    for column in ("time", "load\nkWh", "PV\nkWh", "charge\nkWh", "discharge\nkWh", "P2P\nkWh", "import\nkWh",
                   "export\nkWh", "price\n/kWh", "retail\n/kWh", "V min\np.u.", "cost"):
        add_number_column(table, column)
    for t in range(core.steps_per_episode):
        step = {key: value[0, t] for key, value in rule.items()}
        hours = t * core.dt_h
        table.add_row(f"{int(hours):02d}:{int(round(hours % 1 * 60)):02d}",
                      *(f"{step[k].sum():.2f}" for k in ("load_kwh", "pv_kwh", "battery_charge_kwh",
                                                          "battery_discharge_kwh", "p2p_buy_kwh",
                                                          "grid_import_kwh", "grid_export_kwh")),
                      f"{step['clearing_price'][0]:.3f}", f"{step['retail_price'][0]:.3f}",
                      f"{step['voltage_pu'].min():.3f}", f"{step['cost'].sum():+.3f}")
    out = console()
    out.print(table)
    rule_cost, grid_cost = rule["cost"].sum(), grid["cost"].sum()
    out.print(f"Community bill for the day: self-consumption rule {rule_cost:.2f}, grid-only {grid_cost:.2f} "
                  f"(saving {grid_cost - rule_cost:.2f}, {100 * (grid_cost - rule_cost) / grid_cost:.1f} %)")


if __name__ == "__main__":
    main()
