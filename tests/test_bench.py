"""The benchmark scripts' command lines refuse bad input with one line before timing anything."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("arguments, message", [
    (["--variant", "mappo:num_minibatches=100000"],
     "mappo (num_minibatches=100000): mappo.num_minibatches=100000 must be at most num_envs x steps per episode = "
     "1536 with value_heads"),
    (["--env", "shared_battery_kwh=50", "--env", "shared_battery_kw=20"],  # MADDPG's default marginal trade reward
     "maddpg with --env shared_battery_kwh=50 with --env shared_battery_kw=20: maddpg.trade_reward='marginal' needs"),
    (["--variant", "mappo:no_such_key=1"], "--variant 'mappo:no_such_key=1': 'no_such_key=1' is not <key>=<value>"),
    (["--env", "n_agents=0"], "--env: n_agents=0 is out of range"),
])
def test_bench_learners_refuses_a_bad_setting_with_one_line(arguments, message):
    done = subprocess.run([sys.executable, "bench/bench_learners.py", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith(message) and "Traceback" not in done.stderr
