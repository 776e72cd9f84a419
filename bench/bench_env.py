"""Simulation speed: the PettingZoo view, the batched core and TorchRL, with PettingZoo's mpe2 as a reference.

    python bench/bench_env.py [--seconds 2.0] [--repeats 3] [--profile] [--order-book-bound]

Random actions, one process, one thread. Prints env-steps/s (one env-step = one settlement period of one
community) and agent-steps/s (env-steps x agents), each also as a ratio to mpe2 simple_spread_v3 (N = 10)
measured in the same run. The random actions are drawn before the clock starts (a pool of 64 steps, reused
in turn), for the PettingZoo envs as for the core, so that the rows time the environments rather than the
random number generator. Each row is the best of ``--repeats`` measurements: on a shared machine the best
one is the closest to the code's own speed. ``--profile`` adds, for the PettingZoo view and the core at
B = 1 and 1024, the functions that take the most time (cProfile; time spent in numpy calls is charged to the
function making them). ``--order-book-bound`` adds a table that times the same three with the order book's
clearing replaced by a stand-in that costs nothing (nothing trades peer-to-peer, so the results are wrong and the
time is the rest of the step): the most that compiling the order book, the one kernel the speed issue allows,
could give each of them.

The core's row with ``env.safety_filter`` times the feeder safety filter on the default weak feeder: random
actions take many of its communities out of the feeder's limits, and each of those solves an LP (a trained
policy's far fewer: 8 % of MAPPO's community-steps on the test days); its ratio to the B = 64 row above is the
filter's cost under random actions, its worst case.

With TorchRL installed (``pip install -e .[torchrl]``) two more rows time ``env.rollout`` with its own random
actions (``policy=None``, drawn inside the clock, as a TorchRL user gets them): the native batched environment
(``P2PTorchRLEnv``, B = 256) and, as the reference it replaces, TorchRL's ``PettingZooWrapper`` over the
PettingZoo view (one community).
"""

from __future__ import annotations

import argparse
import contextlib
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
import p2p_marl.sim.community as community  # noqa: E402
from p2p_marl.config import EnvConfig  # noqa: E402
from p2p_marl.sim.community import ACTION_DIM, ACTION_HIGH, ACTION_LOW, CommunityCore  # noqa: E402

N_AGENTS = 10
POOL = 64  # pre-drawn random steps, used in turn
TORCHRL_B = 256  # communities per step of the native TorchRL env row
FILTER_B = 64  # communities per step of the core's row with the feeder safety filter


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


def _pettingzoo_runner():
    """``_parallel_env_runner`` over the PettingZoo view of N_AGENTS synthetic households."""
    return _parallel_env_runner(p2p_marl.parallel_env(n_agents=N_AGENTS))


def _core_runner(batch_size: int, config: EnvConfig | None = None):
    """A function stepping the batched core n times (batch_size communities per step) under pre-drawn actions;
    the community of ``config``, by default N_AGENTS synthetic households."""
    core = CommunityCore(config or EnvConfig(n_agents=N_AGENTS), batch_size=batch_size)
    rng = np.random.default_rng(0)
    actions = rng.uniform(ACTION_LOW, ACTION_HIGH, (POOL, batch_size, core.n_agents, ACTION_DIM))
    core.reset(seed=0)

    def run(n_steps: int) -> None:
        for i in range(n_steps):
            if core.done:
                core.reset()
            core.step(actions[i % POOL])

    return run


def _torchrl_rollout_runner(env):
    """A function running ``env.rollout(n)`` under random actions (the env resets at the start and each day's end)."""
    env.rollout(2)

    def run(n_steps: int) -> None:
        env.rollout(n_steps, break_when_any_done=False)

    return run


def _pettingzoo_wrapper_env():
    """TorchRL's PettingZooWrapper over the PettingZoo view: the TorchRL path before P2PTorchRLEnv, kept here as
    the reference it is measured against."""
    from pettingzoo.utils.wrappers import BaseParallelWrapper
    from torchrl.envs import PettingZooWrapper

    from p2p_marl.sim.community import INFO_KEYS

    class StepInfoKeysAtReset(BaseParallelWrapper):
        """The same info keys at reset and step (PettingZooWrapper sizes its info spec from the reset infos)."""

        def reset(self, seed=None, options=None):
            observations, infos = self.env.reset(seed=seed, options=options)
            return observations, {a: {"day": info["day"], **dict.fromkeys(INFO_KEYS, 0.0)} for a, info in infos.items()}

        def step(self, actions):
            observations, rewards, terminations, truncations, infos = self.env.step(actions)
            day = int(self.unwrapped.core.days[0])
            return observations, rewards, terminations, truncations, {a: {"day": day, **info}
                                                                      for a, info in infos.items()}

    env = StepInfoKeysAtReset(p2p_marl.parallel_env(n_agents=N_AGENTS))
    return PettingZooWrapper(env, return_state=True, group_map={"prosumer": list(env.possible_agents)},
                             categorical_actions=True, seed=0)


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


@contextlib.contextmanager
def _free_order_book():
    """The core's clearing replaced, while in the block, by a stand-in that costs nothing: nothing trades P2P and
    the price is the step's mid price."""
    def nothing_trades(side_kwh, limit_price_per_kwh, retail_price_per_kwh, feed_in_price_per_kwh, mechanism, k):
        no_trade_kwh = np.zeros_like(side_kwh)
        return no_trade_kwh, no_trade_kwh[0], no_trade_kwh[1], 0.5 * (retail_price_per_kwh + feed_in_price_per_kwh)

    clear_sides = community.clear_sides
    community.clear_sides = nothing_trades
    try:
        yield
    finally:
        community.clear_sides = clear_sides


def _order_book_bound(seconds: float, repeats: int, console: Console) -> None:
    """Print each view's speed as it is and with a free order book (``_free_order_book``), measured in turn."""
    table = Table(title="The most a compiled order book could give: the step with the clearing free, "
                        f"best of {repeats} x {seconds:g} s")
    for column in ("environment", "env-steps/s as is", "with the order book free", "at most", "target"):
        table.add_column(column, justify="right" if column != "environment" else "left")
    views = (("p2p_marl PettingZoo parallel env", _pettingzoo_runner, 1, "20,000"),
             ("p2p_marl batched core, B=1", lambda: _core_runner(1), 1, "-"),
             ("p2p_marl batched core, B=1024", lambda: _core_runner(1024), 1024, "1,000,000 (10M agent-steps/s)"))
    for name, runner, batch_size, target in views:
        as_is = _steps_per_second(runner(), seconds, repeats) * batch_size
        with _free_order_book():
            free = _steps_per_second(runner(), seconds, repeats) * batch_size
        table.add_row(name, f"{as_is:,.0f}", f"{free:,.0f}", f"{free / as_is:.2f}x", target)
    console.print(table)


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
    parser.add_argument("--order-book-bound", action="store_true",
                        help="also time the step with the order book free: the most compiling it could give")
    args = parser.parse_args()
    console = Console(width=120)

    rows: list[tuple[str, float, int]] = []  # (environment, env-steps/s, communities per step)
    try:
        from mpe2 import simple_spread_v3

        mpe = simple_spread_v3.parallel_env(N=N_AGENTS, continuous_actions=True, max_cycles=25)
        rows.append(("mpe2 simple_spread_v3 (reference)",
                     _steps_per_second(_parallel_env_runner(mpe), args.seconds, args.repeats), 1))
    except ImportError:
        console.print("[yellow]mpe2 not installed (pip install -e \".\\[bench]\"): no reference row[/yellow]")
    pettingzoo_run = _pettingzoo_runner()
    rows.append(("p2p_marl PettingZoo parallel env", _steps_per_second(pettingzoo_run, args.seconds, args.repeats), 1))
    for batch_size in (1, 64, 1024):
        steps = _steps_per_second(_core_runner(batch_size), args.seconds, args.repeats)
        rows.append((f"p2p_marl batched core, B={batch_size}", steps * batch_size, batch_size))
    filtered = EnvConfig(n_agents=N_AGENTS, safety_filter=True)
    steps = _steps_per_second(_core_runner(FILTER_B, filtered), args.seconds, args.repeats)
    rows.append((f"p2p_marl batched core, B={FILTER_B}, env.safety_filter", steps * FILTER_B, FILTER_B))
    try:
        import torch

        from p2p_marl.integrations.torchrl import make_torchrl_env

        torch.set_num_threads(1)
        wrapper_run = _torchrl_rollout_runner(_pettingzoo_wrapper_env())
        rows.append(("TorchRL PettingZooWrapper over the PettingZoo env (old path)",
                     _steps_per_second(wrapper_run, args.seconds, args.repeats), 1))
        native_run = _torchrl_rollout_runner(make_torchrl_env(n_agents=N_AGENTS, batch_size=TORCHRL_B, seed=0))
        steps = _steps_per_second(native_run, args.seconds, args.repeats)
        rows.append((f"p2p_marl TorchRL env (P2PTorchRLEnv), B={TORCHRL_B}", steps * TORCHRL_B, TORCHRL_B))
    except ImportError:
        console.print("[yellow]torchrl not installed (pip install -e .[torchrl]): no TorchRL rows[/yellow]")

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
    torchrl_rows = [env_steps for name, env_steps, _ in rows if name.startswith(("TorchRL", "p2p_marl TorchRL"))]
    if len(torchrl_rows) == 2:
        console.print(f"TorchRL: the native env runs {torchrl_rows[1] / torchrl_rows[0]:,.0f}x the env-steps/s of "
                      "the PettingZooWrapper path.")
    console.print("Targets: PettingZoo view >= 20,000 env-steps/s; batched core >= 10,000,000 agent-steps/s at B=1024; "
                  f"TorchRL env >= 100,000 agent-steps/s at B={TORCHRL_B}.")

    if args.profile:
        _profile("p2p_marl PettingZoo parallel env", pettingzoo_run, 5000, console)
        _profile("p2p_marl batched core, B=1", _core_runner(1), 5000, console)
        _profile("p2p_marl batched core, B=1024", _core_runner(1024), 100, console)
    if args.order_book_bound:
        _order_book_bound(args.seconds, args.repeats, console)


if __name__ == "__main__":
    main()
