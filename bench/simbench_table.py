"""The README's table of the SimBench presets, from ``evaluate.py`` runs on them.

    python bench/simbench_table.py runs/evaluate/<run> [runs/evaluate/<run> ...]

Each run directory is one ``python evaluate.py env=simbench_<grid> ...``; the table takes the community from its
``.hydra/config.yaml`` (loading the SimBench grid for its PV, batteries and feeder length), the days with a
voltage or loading violation under the grid-only benchmark (idle batteries) and each method's mean share of the
optimal saving from ``summary.json``, and the network's cost (optimum with minus without the feeder's limits)
from the line ``evaluate.py`` logs into ``evaluate.log``. A run that evaluated checkpoints (``checkpoints=[...]``)
adds a column per learner: mean ± standard deviation over its checkpoints (seeds), "–" for the presets without.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

from p2p_marl.config import EnvConfig
from p2p_marl.evaluation.report import summarize_runs
from p2p_marl.sim.community import CommunityCore, simbench_community_of

NETWORK_COST = re.compile(r"The network's cost .*: (?P<mean>[-\d.]+) per day on average, above zero on "
                          r"(?P<days>\d+) of (?P<total>\d+) days")
SHARES = ("random", "idle_mid_price", "rule_self_consumption", "rule_time_of_use", "zero_intelligence",
          "mpc_household", "mpc_persistence", "mpc_noisy", "mpc_oracle")


REFERENCES = ("grid_only", "optimal")


def learner_share(stats: dict) -> str:
    """Mean ± standard deviation over a learner's checkpoints of their mean share over the test days."""
    share = stats["share_of_optimal_saving"]
    return f"{share['mean']:.2f}" if share["std"] is None else f"{share['mean']:.2f} ± {share['std']:.2f}"


def main(run_dirs: list[str]) -> None:
    rows, learner_shares = [], []
    for run_dir in map(Path, run_dirs):
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        env = EnvConfig(**config["env"])
        community = simbench_community_of(env)
        batteries = int((CommunityCore(env).battery.capacity_kwh > 0).sum())
        summary = json.loads((run_dir / "summary.json").read_text())
        cost = NETWORK_COST.search((run_dir / "evaluate.log").read_text())
        violation = summary["grid_only"]["violation_day"]
        shares = [f"{summary[m]['share_of_optimal_saving']['mean']:.2f}" if m in summary else "–" for m in SHARES]
        learner_shares.append({m: learner_share(stats) for m, stats in summarize_runs(summary).items()
                               if m not in SHARES and m not in REFERENCES})
        rows.append([env.simbench_code, str(env.n_agents), str(community.feeder.n_passive),
                     str(int(community.profiles.has_pv.sum())),
                     str(batteries), f"{community.feeder_length_km:.2f}",
                     str(violation["n_days"]), f"{round(violation['mean'] * violation['n_days'])}",
                     f"{float(cost['mean']):.3f} ({cost['days']})", *shares])
    learners = list(dict.fromkeys(m for shares in learner_shares for m in shares))
    print("| grid | agents | passive loads | PV | batteries | feeder km | test days | days with violations (grid-only) "
          "| network cost per day (days > 0) | " + " | ".join(SHARES + tuple(learners)) + " |")
    print("|" + "---|" * (9 + len(SHARES) + len(learners)))
    for row, shares in zip(rows, learner_shares):
        print("| " + " | ".join(row + [shares.get(m, "–") for m in learners]) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
