"""What a person reads on the console: progress in a redirected log, no solver banner, and the helpers behind
the entry points' one-line errors and run directories."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from p2p_marl.cli import user_errors_as_one_line
from p2p_marl.config import ConfigError
from p2p_marl.evaluation.report import console
from p2p_marl.progress import Progress
from p2p_marl.run_dirs import claim_new_dir, remove_if_only_launch_records

ROOT = Path(__file__).resolve().parents[1]


def progress_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "p2p_marl.progress"]


def test_redirected_progress_is_a_line_every_five_percent(caplog):
    """Under pytest stderr is not a terminal, as in a redirected run: no bar refreshes, 20 lines for 1000
    updates, and the last one ends on the count a loop that overshoots its total really reached."""
    caplog.set_level(logging.INFO, logger="p2p_marl.progress")
    assert not sys.stderr.isatty()
    progress = Progress(5000, "dqn seed 0", "community-steps")
    for count in range(5, 5000, 5):
        progress.update(count, share="0.5")
    progress.finish(5184, share="0.6")
    lines = progress_lines(caplog)
    assert len(lines) == 20
    assert lines[0].startswith("dqn seed 0:   5% (250/5000 community-steps, ")
    assert lines[-1].startswith("dqn seed 0: 100% (5184/5184 community-steps, ") and lines[-1].endswith("share 0.6)")


def test_disabled_progress_is_silent(caplog):
    caplog.set_level(logging.INFO, logger="p2p_marl.progress")
    with Progress(10, "quiet", "steps", enabled=False) as progress:
        for count in range(1, 11):
            progress.update(count)
    assert progress_lines(caplog) == []


def test_the_highs_banner_never_reaches_the_output():
    """highspy prints its banner on the first Highs object of a process, before any option can be set."""
    code = ("from p2p_marl.config import EnvConfig; from p2p_marl.sim.community import CommunityCore; "
            "from p2p_marl.baselines.optimal import solve_optimal_day; "
            "core = CommunityCore(EnvConfig(n_agents=3, n_days=10)); print(solve_optimal_day(core, 1).cost > 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True\n" and "HiGHS" not in done.stderr


def test_claimed_directories_are_new_even_for_the_same_name(tmp_path):
    names = [claim_new_dir(str(tmp_path / "runs" / "seed0_2026-12-02_06-00-00")) for _ in range(3)]
    assert [Path(name).name for name in names] == ["seed0_2026-12-02_06-00-00", "seed0_2026-12-02_06-00-00_2",
                                                   "seed0_2026-12-02_06-00-00_3"]
    assert all(Path(name).is_dir() for name in names)


def test_only_a_directory_with_nothing_but_launch_records_is_removed(tmp_path):
    records = {".hydra", "train.log"}
    failed = tmp_path / "failed"
    (failed / ".hydra").mkdir(parents=True)
    (failed / "train.log").write_text("error\n")
    worked = tmp_path / "worked"
    (worked / "checkpoints").mkdir(parents=True)
    (worked / "train.log").write_text("training\n")
    assert remove_if_only_launch_records(failed, records) and not failed.exists()
    assert not remove_if_only_launch_records(worked, records) and worked.is_dir()


def test_a_user_error_becomes_one_line_and_hydra_full_error_keeps_the_traceback(monkeypatch):
    cleaned = []
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as stop:
        with user_errors_as_one_line("train.py", on_error=lambda: cleaned.append(True)):
            raise ConfigError("env.n_agents=0 is out of range;\n  allowed [1, 10000]")
    assert stop.value.code == "train.py: error: env.n_agents=0 is out of range; allowed [1, 10000]"
    assert cleaned == [True]
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError):
        with user_errors_as_one_line("train.py"):
            raise ConfigError("shown with its traceback")
    with pytest.raises(KeyError):  # a bug is not a user error: it keeps its traceback
        with user_errors_as_one_line("train.py"):
            raise KeyError("bug")


def test_the_tables_console_prints_bracketed_settings_as_written(capsys):
    """A learner's label names list settings in brackets; the evaluation scripts' console prints them, not as
    rich markup (which would drop them)."""
    console().print("| dqn (env.extra_features=[feeder_position]) | 0.705 |")
    assert "env.extra_features=[feeder_position]" in capsys.readouterr().out
