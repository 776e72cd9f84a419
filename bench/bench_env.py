"""Simulation speed: the PettingZoo view and the batched core, with PettingZoo's mpe2 as a reference.

    python bench/bench_env.py [--seconds 2.0]

Random actions, one process, one thread. Prints env-steps/s (one env-step = one settlement period of one
community) and agent-steps/s (env-steps x agents), each also as a ratio to mpe2 simple_spread_v3 (N = 10)
measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import p2p_marl  # noqa: E402
from p2p_marl.config import EnvConfig  # noqa: E402
from p2p_marl.sim.community import CommunityCore  # noqa: E402

N_AGENTS = 10


def _time_parallel_env(env, seconds: float) -> float:
    """Env-steps per second of a PettingZoo parallel env under random actions (resets included)."""
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    agents = list(env.possible_agents)
    spaces = {a: env.action_space(a) for a in agents}
    low = {a: spaces[a].low for a in agents}
    high = {a: spaces[a].high for a in agents}
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            if not env.agents:
                env.reset()
            env.step({a: rng.uniform(low[a], high[a]).astype(np.float32) for a in env.agents})
            steps += 1
    return steps / (time.perf_counter() - start)


def _time_core(batch_size: int, seconds: float) -> float:
    """Env-steps per second of the batched core (batch_size communities per step)."""
    core = CommunityCore(EnvConfig(n_agents=N_AGENTS), batch_size=batch_size)
    rng = np.random.default_rng(0)
    actions = rng.uniform([-1.0, 0.0], [1.0, 1.0], (64, batch_size, N_AGENTS, 2))
    core.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(50):
            if core.done:
                core.reset()
            core.step(actions[i % 64])
            steps += batch_size
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per row")
    args = parser.parse_args()

    rows: list[tuple[str, float]] = []
    try:
        from mpe2 import simple_spread_v3

        mpe = simple_spread_v3.parallel_env(N=N_AGENTS, continuous_actions=True, max_cycles=25)
        rows.append(("mpe2 simple_spread_v3 (reference)", _time_parallel_env(mpe, args.seconds)))
    except ImportError:
        Console().print("[yellow]mpe2 not installed (pip install -e .[bench]): no reference row[/yellow]")
    rows.append(("p2p_marl PettingZoo parallel env", _time_parallel_env(p2p_marl.parallel_env(n_agents=N_AGENTS),
                                                                          args.seconds)))
    for batch_size in (1, 64, 1024):
        rows.append((f"p2p_marl batched core, B={batch_size}", _time_core(batch_size, args.seconds)))

    reference = rows[0][1] if rows[0][0].startswith("mpe2") else None
    table = Table(title=f"Simulation speed, N = {N_AGENTS} agents, random actions, 1 thread")
    for column in ("environment", "env-steps/s", "agent-steps/s", "x mpe2"):
        table.add_column(column, justify="right" if column != "environment" else "left")
    for name, env_steps in rows:
        ratio = f"{env_steps / reference:.1f}" if reference else "-"
        table.add_row(name, f"{env_steps:,.0f}", f"{env_steps * N_AGENTS:,.0f}", ratio)
    console = Console(width=120)
    console.print(table)
    console.print("Targets: PettingZoo view >= 20,000 env-steps/s; batched core >= 5,000,000 agent-steps/s at B=1024.")


if __name__ == "__main__":
    main()
