"""The README's table of the SimBench presets, from ``evaluate.py`` runs on them.

    python bench/simbench_table.py runs/evaluate/<run> [runs/evaluate/<run> ...]

Each run directory is one ``python evaluate.py env=simbench_<grid> ...``; the table takes the community from its
``.hydra/config.yaml`` (loading the SimBench grid for its PV, batteries and feeder length), the days with a
voltage or loading violation under the grid-only benchmark (idle batteries) and each method's mean share of the
optimal saving from ``summary.json``, and the network's cost (optimum with minus without the feeder's limits)
from the line ``evaluate.py`` logs into ``evaluate.log``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

from p2p_marl.config import EnvConfig
from p2p_marl.sim.community import CommunityCore, simbench_community_of

NETWORK_COST = re.compile(r"The network's cost .*: (?P<mean>[-\d.]+) per day on average, above zero on "
                          r"(?P<days>\d+) of (?P<total>\d+) days")
SHARES = ("random", "idle_mid_price", "rule_self_consumption", "rule_time_of_use", "zero_intelligence", "mpc_persistence",
          "mpc_noisy", "mpc_oracle")


def main(run_dirs: list[str]) -> None:
    rows = []
    for run_dir in map(Path, run_dirs):
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        env = EnvConfig(**config["env"])
        community = simbench_community_of(env)
        batteries = int((CommunityCore(env).battery.capacity_kwh > 0).sum())
        summary = json.loads((run_dir / "summary.json").read_text())
        cost = NETWORK_COST.search((run_dir / "evaluate.log").read_text())
        violation = summary["grid_only"]["violation_day"]
        shares = [f"{summary[m]['share_of_optimal_saving']['mean']:.2f}" if m in summary else "–" for m in SHARES]
        rows.append([env.simbench_code, str(env.n_agents), str(community.feeder.n_passive),
                     str(int(community.profiles.has_pv.sum())),
                     str(batteries), f"{community.feeder_length_km:.2f}",
                     str(violation["n_days"]), f"{round(violation['mean'] * violation['n_days'])}",
                     f"{float(cost['mean']):.3f} ({cost['days']})", *shares])
    print("| grid | agents | passive loads | PV | batteries | feeder km | test days | days with violations (grid-only) "
          "| network cost per day (days > 0) | " + " | ".join(SHARES) + " |")
    print("|" + "---|" * (9 + len(SHARES)))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
