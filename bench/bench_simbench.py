"""Scale on SimBench's largest LV grid: env-steps/s and the optimal LP's time per day.

    python bench/bench_simbench.py [--code 1-LV-rural3--0-sw] [--days 5] [--seconds 2.0] [--repeats 3]

Needs the simbench extra (``pip install -e ".[simbench]"``). The default grid, rural3 today (scenario 0), is
SimBench's largest LV grid: 118 loads (agents) on 128 buses. (Its 2034 scenario has 153 loads but taps the
transformer to 1.051 p.u. at no load, above the default voltage band, so that every bus violates it all day.) Prints the time to build the first core (SimBench
loading, cached afterwards), env-steps/s of the PettingZoo view and of the batched core (B = 1 and 256) under
random actions (as ``bench_env.py`` measures them), and the LP build + solve time of one day with network
constraints on ``--days`` test days spread over the year, the sunniest included (as ``bench_lp.py`` picks them).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from bench_env import _core_runner, _parallel_env_runner, _steps_per_second  # noqa: E402
from bench_lp import sample_days, total_s  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import p2p_marl  # noqa: E402
from p2p_marl.baselines.optimal import solve_optimal_day  # noqa: E402
from p2p_marl.config import EnvConfig  # noqa: E402
from p2p_marl.sim.community import CommunityCore  # noqa: E402
from p2p_marl.sim.simbench import simbench_community  # noqa: E402

LARGEST_CODE = "1-LV-rural3--0-sw"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=LARGEST_CODE, help="SimBench LV grid code")
    parser.add_argument("--days", type=int, default=5, help="test days for the LP (>= 2)")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 120))

    start = time.perf_counter()
    community = simbench_community(args.code, EnvConfig.dt_h)
    load_s = time.perf_counter() - start
    config = EnvConfig(n_agents=community.n_households, simbench_code=args.code)
    core = CommunityCore(config)
    grid = (f"{args.code}: {config.n_agents} agents ({int(core.has_battery.sum())} with PV + battery), "
            f"{community.feeder.n_bus} buses, feeder {community.feeder_length_km:.2f} km; loaded in {load_s:.1f} s")

    speed = Table(title=f"Simulation speed, {grid}")
    for column in ("view", "B", "env-steps/s", "agent-steps/s"):
        speed.add_column(column, justify="right", no_wrap=True)
    runners = (("PettingZoo parallel", 1, _parallel_env_runner(p2p_marl.parallel_env(config))),
               ("batched core", 1, _core_runner(1, config)), ("batched core", 256, _core_runner(256, config)))
    for name, batch_size, run in runners:
        env_steps = _steps_per_second(run, args.seconds, args.repeats) * batch_size
        speed.add_row(name, str(batch_size), f"{env_steps:,.0f}", f"{env_steps * config.n_agents:,.0f}")
    console.print(speed)

    days = sample_days(core, args.days)
    schedules = [solve_optimal_day(core, int(day)) for day in days]
    seconds = np.array([total_s(s) for s in schedules])
    lp = Table(title=f"Optimal LP of one day with network constraints, {days.size} test days (sunniest included)")
    for column in ("N", "batteries", "rows x columns", "build + solve s/day (mean)", "slowest day s", "MIP days"):
        lp.add_column(column, justify="right", no_wrap=True)
    lp.add_row(str(config.n_agents), str(int(core.has_battery.sum())),
               f"{np.mean([s.n_rows for s in schedules]):.0f} x {np.mean([s.n_columns for s in schedules]):.0f}",
               f"{seconds.mean():.3f}", f"{seconds.max():.3f}", str(sum(s.mixed_integer for s in schedules)))
    console.print(lp)


if __name__ == "__main__":
    main()
