"""Learner throughput: community-steps and agent-steps per second of training, updates included.

    python bench/bench_learners.py [--iterations 4] [--repeats 3] [--variant mappo:update_epochs=4,num_minibatches=4]
    python bench/bench_learners.py --env forecast_bins=12      # every row on the comparison's observation
    python bench/bench_learners.py --threads 2                 # and every learner again on two threads

Each learner is built with its default hyperparameters (``configs/algo/``) on the default community (N = 10)
and trained for ``--iterations`` iterations after one warm-up iteration (MADDPG's and DQN's warm-up is set
past their ``learning_starts``, so the timed iterations do update). The reference row, measured in the same
run, is the batched core alone at MAPPO's batch size (B = 32) under random actions: the ratio says how much
slower a learner trains than the environment it trains on steps. "minutes / 600k" extrapolates to the
default training budget without its evaluations. One process, one torch thread (train.py's default); best of
``--repeats``. Each ``--variant learner:key=value,...`` adds a row of that learner with those hyperparameters
changed (values parsed as YAML), to weigh a setting's speed against what it does to learning; each
``--env key=value`` changes the community of every row, the reference's included (an ``EnvConfig`` key).
``--threads T`` (> 1) adds each row's learner again, built with ``threads=T`` (train.py's ``threads``: torch's
threads), measured in the same run as its one-thread row.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from p2p_marl.algos import build_learner  # noqa: E402
from p2p_marl.config import ConfigError, EnvConfig, make_config  # noqa: E402
from p2p_marl.sim.community import ACTION_HIGH, ACTION_LOW, CommunityCore  # noqa: E402

N_AGENTS = 10  # households, unless --env n_agents=... says otherwise
LEARNERS = ("mappo", "maddpg", "dqn", "qlearning")
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
BUDGET = 600_000


def _defaults(name: str) -> dict:
    """The learner's defaults as train.py composes them (the YAML without its schema line)."""
    config = OmegaConf.to_container(OmegaConf.load(os.path.join(CONFIGS, "algo", f"{name}.yaml")))
    config.pop("defaults", None)
    return config


def parse_variant(text: str) -> tuple[str, dict]:
    """``"mappo:update_epochs=4,num_minibatches=4"`` -> ("mappo", {"update_epochs": 4, "num_minibatches": 4})."""
    name, _, settings = text.partition(":")
    if name not in LEARNERS or not settings:
        raise SystemExit(f"--variant {text!r}: expected <learner>:<key>=<value>,... with a learner of {LEARNERS}")
    changes, defaults = {}, _defaults(name)
    for setting in settings.split(","):
        key, equals, value = setting.partition("=")
        if not equals or key not in defaults:
            raise SystemExit(f"--variant {text!r}: {setting!r} is not <key>=<value> with a key of {name}'s config")
        changes[key] = yaml.safe_load(value)
    return name, changes


def parse_setting(text: str) -> tuple[str, object]:
    """``"forecast_bins=12"`` -> ("forecast_bins", 12) (the value parsed as YAML)."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise SystemExit(f"--env {text!r}: expected <key>=<value>")
    return key, yaml.safe_load(value)


def _learner_rate(name: str, env: EnvConfig, iterations: int, changes: dict, threads: int) -> float:
    hyperparameters = _defaults(name) | changes
    learner = build_learner(env, hyperparameters, seed=0, threads=threads)
    while learner.env_steps <= hyperparameters.get("learning_starts", 0):
        learner.iterate()  # warm-up: past random-action collection, so the timed iterations update
    start_steps, start = learner.env_steps, time.perf_counter()
    for _ in range(iterations):
        learner.iterate()
    return (learner.env_steps - start_steps) / (time.perf_counter() - start)


def _core_rate(env: EnvConfig, batch_size: int, seconds: float) -> float:
    core = CommunityCore(env, batch_size=batch_size)
    rng = np.random.default_rng(0)
    pool = rng.uniform(ACTION_LOW, ACTION_HIGH, (64, batch_size, env.n_agents, len(ACTION_LOW)))
    core.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if core.done:
            core.reset()
        core.step(pool[steps % len(pool)])
        steps += 1
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4, help="timed iterations per learner and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per row; the best is reported")
    parser.add_argument("--variant", action="append", default=[], type=parse_variant,
                        help="learner:key=value,... a row with changed hyperparameters (repeatable)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an EnvConfig setting for every row (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="also time every learner row on this many threads")
    args = parser.parse_args()
    if args.threads < 1:
        raise SystemExit(f"--threads must be an integer >= 1, got {args.threads}")
    torch.set_num_threads(1)
    try:
        env = make_config(**({"n_agents": N_AGENTS} | dict(parse_setting(text) for text in args.env)))
    except ConfigError as error:
        raise SystemExit(f"--env: {error}") from None
    runs = [(name, name, {}, 1) for name in LEARNERS]
    runs += [(f"{name} ({', '.join(f'{k}={v}' for k, v in changes.items())})", name, changes, 1)
             for name, changes in args.variant]
    for label, name, changes, _ in runs:
        try:  # a setting a learner refuses (e.g. num_minibatches beyond its community-steps): before any timing
            build_learner(env, _defaults(name) | changes, seed=0)
        except ConfigError as error:
            raise SystemExit(f"{label}{''.join(f' with --env {text}' for text in args.env)}: {error}") from None
    if args.threads > 1:
        runs += [(f"{label}, {args.threads} threads", name, changes, args.threads)
                 for label, name, changes, _ in runs]
    rows = [("batched core alone, B=32, random actions (reference)",
             max(_core_rate(env, 32, 2.0) for _ in range(args.repeats)))]
    for label, name, changes, threads in runs:
        rows.append((label, max(_learner_rate(name, env, args.iterations, changes, threads)
                                for _ in range(args.repeats))))

    community = "".join(f", {text}" for text in args.env)
    thread_note = "1 thread" if args.threads == 1 else "1 thread unless said"
    table = Table(title=f"Learner throughput, N = {env.n_agents}{community}, default hyperparameters, {thread_note}, "
                        f"best of {args.repeats} x {args.iterations} iterations")
    for column in ("learner", "community-steps/s", "agent-steps/s", "minutes / 600k", "x core"):
        table.add_column(column, justify="right" if column != "learner" else "left")
    reference = rows[0][1]
    for name, rate in rows:
        table.add_row(name, f"{rate:,.0f}", f"{rate * env.n_agents:,.0f}", f"{BUDGET / rate / 60:.1f}",
                      f"{rate / reference:.4f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
