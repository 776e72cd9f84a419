"""Perfect-foresight optimum: LP build and solve time of one community-day as the community grows.

    python bench/bench_lp.py [--days 5]

Communities (feeder parameters scaled with the size):

* N = 10: configs/env/community_10.yaml (the default weak feeder, which binds on sunny days) and
  configs/env/community_10_strong.yaml (the strong feeder).
* N = 50: configs/env/community_50.yaml (five short laterals of stiffer cable), and the same households on
  long laterals of the strong feeder's cable with 40 kVA lines and a 120 kVA transformer, where the network
  binds on sunny days.
* N = 200: the default feeder's weak cable, spacing and transformer tap on twenty laterals of ten households
  (a 1000 kVA transformer), where PV over-voltages the feeder on most sunny days; and community_50's cable on ten
  laterals with 250 kVA lines. PV curtailment keeps every day a plain LP: the "MIP days" column counts the days
  that needed the mixed-integer fallback (see p2p_marl.baselines.optimal), 0 everywhere with the defaults.

Each is timed on ``--days`` of its test days spread over the year, the sunniest included, with and without the
network. Build = numpy model assembly and handing it to HiGHS; solve = HiGHS (all cutting-plane rounds). Then the
whole test set of community_10. Target (issue 3): one day with N = 50 and network constraints in under 1 s.
Last, model-predictive control (p2p_marl.baselines.mpc: one LP over the rest of the day at every step, on the
environment's persistence forecasts) on the same days of community_10 and community_50, against the optimum's
one LP per day.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import highspy  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402

from p2p_marl.baselines.mpc import MPCPolicy  # noqa: E402
from p2p_marl.baselines.optimal import OptimalSchedule, solve_optimal_day  # noqa: E402
from p2p_marl.config import EnvConfig, make_config  # noqa: E402
from p2p_marl.evaluation.compare import rollout_days  # noqa: E402
from p2p_marl.sim.community import CommunityCore  # noqa: E402

ENV_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "env"
TARGET_N = 50
TARGET_S = 1.0
LONG_LATERALS = dict(segment_km=0.1, r_ohm_per_km=0.443, x_ohm_per_km=0.069)


def env_config(name: str, **overrides) -> EnvConfig:
    return make_config(EnvConfig(**yaml.safe_load((ENV_CONFIGS / f"{name}.yaml").read_text())), **overrides)


CASES: tuple[tuple[str, EnvConfig], ...] = (
    ("community_10", env_config("community_10")),
    ("community_10_strong", env_config("community_10_strong")),
    ("community_50", env_config("community_50")),
    ("community_50 long laterals", env_config("community_50", **LONG_LATERALS, line_rating_kva=40.0,
                                               transformer_kva=120.0)),
    ("200 households, default feeder", env_config("community_10", n_agents=200, n_laterals=20,
                                                  transformer_kva=1000.0)),
    ("200 households, stiff cable", env_config("community_50", n_agents=200, n_laterals=10, line_rating_kva=250.0,
                                               transformer_kva=1000.0)),
)


def sample_days(core: CommunityCore, count: int) -> np.ndarray:
    """``count`` test days evenly spread over the test set, the sunniest test day among them."""
    test = core.test_days
    sunniest = test[np.argmax(core.profiles.pv_kw[test].sum(axis=(1, 2)))]
    spread = test[np.linspace(0, test.size - 1, max(count - 1, 1)).round().astype(int)]
    return np.unique(np.r_[spread, sunniest])


def total_s(schedule: OptimalSchedule) -> float:
    return schedule.build_s + schedule.solve_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5, help="test days per community (>= 2)")
    args = parser.parse_args(argv)
    if args.days < 2:
        parser.error(f"--days must be >= 2, got {args.days}")
    console = Console(width=max(Console().width, 160))  # the tables do not fit 80 columns (pipes, CI logs)

    table = Table(title=f"Optimal dispatch LP of one day with network constraints, {args.days} test days each "
                        "(sunniest included): mean over days unless noted")
    table.add_column("community", no_wrap=True)
    for column in ("N", "batteries", "rows x columns\n(non-zeros)", "build\nms", "solve\nms", "slowest\nday ms",
                   "build\nshare", "no network\nms", "network\nbinds", "MIP\ndays"):
        table.add_column(column, justify="right", no_wrap=True)
    target_total_s = []
    for name, config in CASES:
        core = CommunityCore(config)
        days = sample_days(core, args.days)
        with_network, without = [], []
        for day in track(days, description=f"{name}", console=console, transient=True):
            with_network.append(solve_optimal_day(core, int(day), network=True))
            without.append(solve_optimal_day(core, int(day), network=False))
        build_s = np.array([s.build_s for s in with_network])
        solve_s = np.array([s.solve_s for s in with_network])
        binds = sum(s.cost > f.cost + 1e-6 * max(1.0, abs(f.cost)) for s, f in zip(with_network, without))
        if config.n_agents == TARGET_N:
            target_total_s += [total_s(s) for s in with_network]
        size = (f"{np.mean([s.n_rows for s in with_network]):.0f} x {np.mean([s.n_columns for s in with_network]):.0f}"
                f" ({np.mean([s.n_nonzeros for s in with_network]):.0f})")
        table.add_row(name, str(config.n_agents), str(int(core.has_battery.sum())), size,
                      f"{1e3 * build_s.mean():.1f}", f"{1e3 * solve_s.mean():.1f}",
                      f"{1e3 * (build_s + solve_s).max():.1f}", f"{build_s.sum() / (build_s + solve_s).sum():.0%}",
                      f"{1e3 * np.mean([total_s(s) for s in without]):.1f}", f"{binds} of {days.size}",
                      str(sum(s.mixed_integer for s in with_network)))
    console.print(table)

    core = CommunityCore(env_config("community_10"))
    schedules = [solve_optimal_day(core, int(day)) for day in
                 track(core.test_days, description="community_10 test set", console=console, transient=True)]
    build_s = sum(s.build_s for s in schedules)
    solve_s = sum(s.solve_s for s in schedules)
    test_table = Table(title="Full test set of community_10, with network")
    for column in ("days", "total s", "per day ms (mean)", "per day ms (max)", "build share", "mixed-integer days"):
        test_table.add_column(column, justify="right")
    test_table.add_row(str(len(schedules)), f"{build_s + solve_s:.2f}",
                       f"{1e3 * (build_s + solve_s) / len(schedules):.1f}",
                       f"{1e3 * max(total_s(s) for s in schedules):.1f}", f"{build_s / (build_s + solve_s):.0%}",
                       str(sum(s.mixed_integer for s in schedules)))
    console.print(test_table)

    mpc_table = Table(title=f"MPC on persistence forecasts, {args.days} test days each (sunniest included)")
    for column in ("community", "N", "LPs per day", "s per day", "LPs per s", "x the optimum's time"):
        mpc_table.add_column(column, justify="right", no_wrap=True)
    for name in ("community_10", "community_50"):
        config = env_config(name)
        core = CommunityCore(config)
        days = sample_days(core, args.days)
        start = time.perf_counter()
        for day in track(days, description=f"{name} optimum", console=console, transient=True):
            solve_optimal_day(core, int(day))
        optimum_s = time.perf_counter() - start
        start = time.perf_counter()
        rollout_days(config, MPCPolicy(), days)  # all days in one batch, one LP per community and step
        mpc_s = time.perf_counter() - start
        lps = config.steps_per_episode
        mpc_table.add_row(name, str(config.n_agents), str(lps), f"{mpc_s / days.size:.2f}",
                          f"{lps * days.size / mpc_s:.0f}", f"{mpc_s / optimum_s:.0f}")
    console.print(mpc_table)

    worst_s = max(target_total_s)
    verdict = "[green]met[/green]" if worst_s < TARGET_S else "[red]NOT met[/red]"
    console.print(f"Target: one day with N = {TARGET_N} and network constraints in < {TARGET_S:.0f} s: {verdict} "
                  f"(slowest N = {TARGET_N} day: {worst_s:.3f} s build + solve)")
    console.print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
                  f"HiGHS {highspy.Highs().version()}")


if __name__ == "__main__":
    main()
