"""The benchmark scripts: their command lines refuse bad input with one line before timing anything, and the
order-book bound's stand-in acts only where it is asked to."""

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from p2p_marl.config import EnvConfig
from conftest import load_script
from p2p_marl.sim import auction, community

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("arguments, message", [
    (["--variant", "mappo:num_minibatches=100000"],
     "mappo (num_minibatches=100000): mappo.num_minibatches=100000 must be at most num_envs x steps per episode = "
     "1536 with value_heads"),
    (["--env", "shared_battery_kwh=50", "--env", "shared_battery_kw=20"],  # MADDPG's default marginal trade reward
     "maddpg with --env shared_battery_kwh=50 with --env shared_battery_kw=20: maddpg.trade_reward='marginal' needs"),
    (["--variant", "mappo:no_such_key=1"], "--variant 'mappo:no_such_key=1': 'no_such_key=1' is not <key>=<value>"),
    (["--env", "n_agents=0"], "--env: n_agents=0 is out of range"),
    (["--threads", "0"], "--threads must be an integer >= 1, got 0"),
])
def test_bench_learners_refuses_a_bad_setting_with_one_line(arguments, message):
    done = subprocess.run([sys.executable, "bench/bench_learners.py", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith(message) and "Traceback" not in done.stderr


def test_the_order_book_bound_frees_the_clearing_inside_its_block_only():
    """``bench_env.py --order-book-bound`` times the step without the clearing; outside its block the core clears."""
    bench_env = load_script(ROOT / "bench" / "bench_env.py", "bench_env")
    actions = np.zeros((8, 10, 3))
    # Half the households sell their battery's power at the lowest ask, half buy at the highest bid: they trade.
    actions[:, :5, 0], actions[:, 5:, 0], actions[:, 5:, 1] = -1.0, 1.0, 1.0
    p2p_buy_kwh = []
    for free in (True, False):
        core = community.CommunityCore(EnvConfig(n_agents=10), batch_size=8)
        core.reset(seed=0)
        with bench_env._free_order_book() if free else contextlib.nullcontext():
            p2p_buy_kwh.append(core.step(actions)[3]["p2p_buy_kwh"].sum())
    assert p2p_buy_kwh[0] == 0.0 and p2p_buy_kwh[1] > 0.0
    assert community.clear_sides is auction.clear_sides
    with pytest.raises(RuntimeError), bench_env._free_order_book():
        raise RuntimeError("a failed timing")
    assert community.clear_sides is auction.clear_sides  # restored on the way out of a failure too
