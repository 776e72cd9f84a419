"""LinDistFlow against pandapower's AC power flow on every SimBench LV grid: the README's validation table.

    python bench/simbench_ac.py

Needs the simbench extra. For each of the six LV grids in each of its three scenarios it prints the size of the
community built from it (p2p_marl.sim.simbench: household agents, of them H0, and passive loads) and the linear
feeder's worst voltage error (p.u.) and worst line/transformer loading error (% of the rating) against the AC power
flow of SimBench's own net, at the year's highest net export (sunny noon) and highest net load (winter evening);
tests/test_simbench.py holds them to their bounds.
"""

from __future__ import annotations

from p2p_marl.config import SIMBENCH_LV_CODES
from p2p_marl.sim.simbench import (HOUSEHOLD_PROFILE_PREFIX, SIMBENCH_STEP_H, ac_validation, extreme_steps,
                                   simbench_community)


def main() -> None:
    print("| grid | agents (H0) | passive loads | PV units | buses | feeder km | transformer kVA "
          "| worst voltage error p.u. | worst loading error % of rating | largest voltage drop p.u. |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for code in SIMBENCH_LV_CODES:
        community = simbench_community(code, SIMBENCH_STEP_H)
        comparisons = [ac_validation(code, step) for step in extreme_steps(code).values()]
        n_households = sum(kind.startswith(HOUSEHOLD_PROFILE_PREFIX) for kind in community.load_profile_types)
        print(f"| {code} | {community.n_households} ({n_households}) | {community.feeder.n_passive} "
              f"| {community.sgen_household.size} "
              f"| {community.feeder.n_bus} | {community.feeder_length_km:.3f} | {community.feeder.transformer_kva:.0f} "
              f"| {max(c.voltage_error_pu for c in comparisons):.5f} "
              f"| {max(c.loading_error_pct for c in comparisons):.2f} "
              f"| {max(c.max_voltage_drop_pu for c in comparisons):.4f} |", flush=True)


if __name__ == "__main__":
    main()
