"""Simulation speed: the PettingZoo view and the batched core, with PettingZoo's mpe2 as a reference.

    python bench/bench_env.py [--seconds 2.0] [--repeats 3] [--profile]

Random actions, one process, one thread. Prints env-steps/s (one env-step = one settlement period of one
community) and agent-steps/s (env-steps x agents), each also as a ratio to mpe2 simple_spread_v3 (N = 10)
measured in the same run. The random actions are drawn before the clock starts (a pool of 64 steps, reused
in turn), for the PettingZoo envs as for the core, so that the rows time the environments rather than the
random number generator. Each row is the best of ``--repeats`` measurements: on a shared machine the best
one is the closest to the code's own speed. ``--profile`` adds, for the PettingZoo view and the core at
B = 1 and 1024, the functions that take the most time (cProfile; time spent in numpy calls is charged to the
function making them).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import p2p_marl  # noqa: E402
from p2p_marl.config import EnvConfig  # noqa: E402
from p2p_marl.sim.community import ACTION_DIM, ACTION_HIGH, ACTION_LOW, CommunityCore  # noqa: E402

N_AGENTS = 10
POOL = 64  # pre-drawn random steps, used in turn


def _parallel_env_runner(env):
    """A function stepping a PettingZoo parallel env n times under pre-drawn random actions (resets included)."""
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    agents = list(env.possible_agents)
    pool = []
    for _ in range(POOL):
        actions = {}
        for agent in agents:
            space = env.action_space(agent)
            actions[agent] = rng.uniform(space.low, space.high).astype(space.dtype)
        pool.append(actions)

    def run(n_steps: int) -> None:
        for i in range(n_steps):
            if not env.agents:
                env.reset()
            actions = pool[i % POOL]
            env.step({a: actions[a] for a in env.agents})

    return run


def _core_runner(batch_size: int):
    """A function stepping the batched core n times (batch_size communities per step) under pre-drawn actions."""
    core = CommunityCore(EnvConfig(n_agents=N_AGENTS), batch_size=batch_size)
    rng = np.random.default_rng(0)
    actions = rng.uniform(ACTION_LOW, ACTION_HIGH, (POOL, batch_size, N_AGENTS, ACTION_DIM))
    core.reset(seed=0)

    def run(n_steps: int) -> None:
        for i in range(n_steps):
            if core.done:
                core.reset()
            core.step(actions[i % POOL])

    return run


def _steps_per_second(run, seconds: float, repeats: int) -> float:
    """Best of ``repeats`` timings of about ``seconds`` each, in calls of ``run``'s step per second."""
    run(10)  # warm up: first-call costs, caches, allocator
    chunk, best = 1, 0.0
    for _ in range(repeats):
        steps, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            run(chunk)
            steps += chunk
            chunk = min(2 * chunk, 200)
        best = max(best, steps / elapsed)
    return best


def _profile(name: str, run, n_steps: int, console: Console) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(run, n_steps)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(12)
    console.print(f"[bold]{name}[/bold], {n_steps} steps (cProfile adds overhead; read the shares, not the times)")
    console.print(text.getvalue().split("\n\n", 2)[-1].rstrip() + "\n", markup=False, highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per repeat of a row")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per row; the best is reported")
    parser.add_argument("--profile", action="store_true", help="also print where the time goes (cProfile)")
    args = parser.parse_args()
    console = Console(width=120)

    rows: list[tuple[str, float, int]] = []  # (environment, env-steps/s, communities per step)
    try:
        from mpe2 import simple_spread_v3

        mpe = simple_spread_v3.parallel_env(N=N_AGENTS, continuous_actions=True, max_cycles=25)
        rows.append(("mpe2 simple_spread_v3 (reference)",
                     _steps_per_second(_parallel_env_runner(mpe), args.seconds, args.repeats), 1))
    except ImportError:
        console.print("[yellow]mpe2 not installed (pip install -e .[bench]): no reference row[/yellow]")
    pettingzoo_run = _parallel_env_runner(p2p_marl.parallel_env(n_agents=N_AGENTS))
    rows.append(("p2p_marl PettingZoo parallel env", _steps_per_second(pettingzoo_run, args.seconds, args.repeats), 1))
    for batch_size in (1, 64, 1024):
        steps = _steps_per_second(_core_runner(batch_size), args.seconds, args.repeats)
        rows.append((f"p2p_marl batched core, B={batch_size}", steps * batch_size, batch_size))

    reference = rows[0][1] if rows[0][0].startswith("mpe2") else None
    table = Table(title=f"Simulation speed, N = {N_AGENTS} agents, random actions, 1 thread, "
                        f"best of {args.repeats} x {args.seconds:g} s")
    for column in ("environment", "env-steps/s", "agent-steps/s", "us per step() call", "x mpe2"):
        table.add_column(column, justify="right" if column != "environment" else "left")
    for name, env_steps, batch_size in rows:
        ratio = f"{env_steps / reference:.1f}" if reference else "-"
        table.add_row(name, f"{env_steps:,.0f}", f"{env_steps * N_AGENTS:,.0f}",
                      f"{1e6 * batch_size / env_steps:,.1f}", ratio)
    console.print(table)
    console.print("Targets: PettingZoo view >= 20,000 env-steps/s; batched core >= 5,000,000 agent-steps/s at B=1024.")

    if args.profile:
        _profile("p2p_marl PettingZoo parallel env", pettingzoo_run, 5000, console)
        _profile("p2p_marl batched core, B=1", _core_runner(1), 5000, console)
        _profile("p2p_marl batched core, B=1024", _core_runner(1024), 100, console)


if __name__ == "__main__":
    main()
