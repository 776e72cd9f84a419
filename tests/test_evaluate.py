"""evaluate.py end to end through real Hydra, its outputs read back, and the comparison API it is built on."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tbparse import SummaryReader

from p2p_marl import demo
from p2p_marl.baselines import optimal
from p2p_marl.baselines.optimal import OptimalPolicy, solve_optimal_day
from p2p_marl.baselines.safety_filter import SafetyFilter
from p2p_marl.baselines.rules import (GridOnly, IdleMidPrice, RandomActions, SelfConsumption, TruthfulBid,
                                      truthful_price_share)
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import OBS_FEATURES, CommunityCore
from p2p_marl.evaluation.compare import (DEFAULT_BENCHMARKS, evaluate_policy, load_policies, reference_costs,
                                         select_days)
from p2p_marl.evaluation import compare, grid_resolution, report, setpoint_precision, value_of_information
from p2p_marl.evaluation.setpoint_precision import MovedSetpoints, equivalent_noise_rms
from p2p_marl.evaluation.config import EvaluateConfig, register_configs, to_evaluate_config
from conftest import compose_config, launch_twice_at_once, load_script, run_evaluate, table_cells

ROOT = Path(__file__).resolve().parents[1]
SMALL_ENV = ["env.n_agents=4", "env.n_days=30"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluate")
    done = run_evaluate(*SMALL_ENV, "max_days=2", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr
    (out / "stdout.txt").write_text(done.stdout)
    return out


def read_results(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "results.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_results_csv_has_a_row_per_method_and_day(run_dir):
    rows = read_results(run_dir)
    days = sorted({row["day"] for row in rows}, key=int)
    assert len(days) == 2
    assert sorted((row["method"], row["day"]) for row in rows) == sorted(
        (method, day) for method in DEFAULT_BENCHMARKS for day in days)
    for kpi in ("community_cost", "self_sufficiency", "p2p_volume_kwh", "savings_gini", "share_of_optimal_saving",
                "voltage_violation_steps", "line_overload_kvah"):
        assert kpi in rows[0], kpi


def test_optimal_share_is_one_and_grid_only_share_is_zero(run_dir):
    rows = read_results(run_dir)
    share = {(row["method"], row["day"]): float(row["share_of_optimal_saving"]) for row in rows}
    for (method, _), value in share.items():
        if method == "grid_only":
            assert value == 0.0
        elif method == "optimal":
            assert value == pytest.approx(1.0, abs=1e-5)
        else:  # no benchmark beats the optimum
            assert value <= 1.0 + 1e-5


def test_summary_json_matches_results_csv(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_results(run_dir)
    assert list(summary) == list(DEFAULT_BENCHMARKS)
    for method, kpis in summary.items():
        assert set(kpis) == set(rows[0]) - {"method", "day"}
        for kpi, stats in kpis.items():
            values = np.array([float(row[kpi]) for row in rows if row["method"] == method])
            defined = values[np.isfinite(values)]
            assert stats["n_days"] == defined.size
            if defined.size:
                assert stats["mean"] == pytest.approx(defined.mean())
                assert stats["std"] == pytest.approx(defined.std())
            else:
                assert stats["mean"] is None and stats["std"] is None


def test_plots_are_written(run_dir):
    names = [f"dispatch_{method}.png" for method in DEFAULT_BENCHMARKS] + ["costs_by_method.png",
                                                                    "share_of_optimal_saving.png",
                                                                    "mean_day_by_method.png",
                                                                    "cost_gap_to_optimal.png"]
    for name in names:
        data = (run_dir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name


def test_cost_breakdown_adds_up_and_measures_the_gap_to_the_optimum(run_dir):
    """cost_breakdown.md: every method's parts add up to its cost, and each bracket is the part's difference to
    the optimum's, as summary.json has them (to the table's two decimals); the last column is the share of the
    optimal saving of the mean costs."""
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = (run_dir / "cost_breakdown.md").read_text().splitlines()
    headers = table_cells(lines[0])
    assert headers[:3] == ["method", "cost /day", "grid energy"] and "network penalty" in headers
    assert headers.pop() == report.SHARE_OF_MEAN_SAVING
    rows, weighted_shares = {}, {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        method, *cells, weighted_shares[method] = table_cells(line)
        rows[method] = [re.fullmatch(r"(-?[\d.]+)(?: \(([+-][\d.]+)\))?", cell).groups() for cell in cells]
    cost = {method: summary[method]["community_cost"]["mean"] for method in rows}
    for method, share in weighted_shares.items():  # the bill's weighting: the saving of the mean costs
        expected = (cost["grid_only"] - cost[method]) / (cost["grid_only"] - cost["optimal"])
        assert float(share) == pytest.approx(expected, abs=5e-4)
    assert weighted_shares["grid_only"] == "0.000" and weighted_shares["optimal"] == "1.000"
    assert list(rows) == list(DEFAULT_BENCHMARKS)
    kpi_of = {label: kpi for kpi, label in report.COST_PART_LABELS.items()} | {"cost /day": "community_cost"}
    for method, cells in rows.items():
        values = [float(value) for value, _ in cells]
        assert sum(values[1:]) == pytest.approx(values[0], abs=0.005 * len(values))
        for header, (value, delta) in zip(headers[1:], cells):
            kpi = kpi_of[header]
            assert float(value) == pytest.approx(summary[method][kpi]["mean"], abs=0.006)
            if method == "optimal":
                assert delta is None
            else:
                expected = summary[method][kpi]["mean"] - summary["optimal"][kpi]["mean"]
                assert float(delta) == pytest.approx(expected, abs=0.006)


def test_the_share_of_the_mean_saving_needs_grid_only_and_the_optimum_apart(tmp_path):
    """The last column of cost_breakdown.md weighs the days by the optimum's saving: a learner's mean cost 4 between
    grid-only's 10 and the optimum's 2 saves three quarters of it; without grid-only, or where grid-only costs what
    the optimum does (nothing to save), there is no such column."""
    def summary(**costs):
        return {method: {key: {"mean": cost if key in ("community_cost", "grid_energy_cost") else 0.0, "std": None}
                         for key in ("community_cost", *report.COST_PARTS)} for method, cost in costs.items()}

    path = tmp_path / "cost_breakdown.md"
    report.write_cost_breakdown(path, summary(grid_only=10.0, mappo=4.0, optimal=2.0))
    rows = [table_cells(line) for line in path.read_text().splitlines() if line.startswith("| ")]
    assert rows[0][-1] == report.SHARE_OF_MEAN_SAVING
    assert [row[-1] for row in rows[1:]] == ["0.000", "0.750", "1.000"]
    for costs in ({"mappo": 6.0, "optimal": 2.0}, {"grid_only": 2.0, "mappo": 6.0, "optimal": 2.0}):
        report.write_cost_breakdown(path, summary(**costs))
        assert report.SHARE_OF_MEAN_SAVING not in path.read_text()


def test_feeder_days_split_each_methods_days_by_whether_idle_batteries_violate_the_feeder(tmp_path):
    """feeder_days.md: per method, the mean of each column's KPI over the days on which grid-only violates the
    feeder and over the others, as results.csv has them per day (a transformer of 5 kVA, which idle batteries
    overload on three of these four days)."""
    done = run_evaluate(*SMALL_ENV, "env.transformer_kva=5.0", "max_days=4", "tensorboard=false",
                        "methods=[grid_only,rule_time_of_use,optimal]", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    rows = read_results(tmp_path)
    feeder_day = {row["day"]: float(row["violation_day"]) > 0.0 for row in rows if row["method"] == "grid_only"}
    assert sorted(feeder_day.values()) == [False, True, True, True]
    lines = (tmp_path / "feeder_days.md").read_text().splitlines()
    assert table_cells(lines[0])[:3] == ["method", "share (3 feeder days)", "share (1 other day)"]
    table = {cells[0]: cells[1:] for cells in map(table_cells, lines[2:]) if len(cells) > 1}
    assert list(table) == ["grid_only", "rule_time_of_use", "optimal"]
    for method, cells in table.items():
        expected = []
        for kpi, _, fmt in report.FEEDER_DAY_COLUMNS:
            half_a_digit = 0.51 * 10.0 ** -int(re.search(r"\.(\d)f", fmt).group(1))
            for on_feeder_days in (True, False):
                values = np.array([float(row[kpi]) for row in rows
                                   if row["method"] == method and feeder_day[row["day"]] == on_feeder_days])
                defined = values[np.isfinite(values)]
                expected.append((defined.mean() if defined.size else None, half_a_digit))
        for cell, (value, tolerance) in zip(cells, expected, strict=True):
            assert cell == "–" if value is None else float(cell) == pytest.approx(value, abs=tolerance)
    assert table["optimal"][:2] == ["1.00", "1.00"] and table["grid_only"][:2] == ["0.00", "0.00"]


def test_feeder_days_pool_a_learners_runs_and_need_grid_only(tmp_path):
    """Grid-only violates the feeder on days 0 and 2 of three: a learner's two runs are pooled over those days
    (shares 1.0 and 0.5 of one run and 0.2 of the other, whose day 2 has no share: 0.57, where the mean of the
    runs' means would be 0.475) and over the other day, day 1 (0.0 and 0.4: 0.20); a day without a defined share
    is left out; without grid-only's results there is no table."""
    def kpis(share, violation_day=(0.0, 0.0, 0.0)):
        return {"share_of_optimal_saving": np.array(share), "violation_day": np.array(violation_day),
                **{kpi: np.zeros(3) for kpi, _, _ in report.FEEDER_DAY_COLUMNS[1:]}}

    results = {"grid_only": kpis([0.0, 0.0, 0.0], violation_day=[1.0, 0.0, 1.0]),
               "mappo:seed0": kpis([1.0, 0.0, 0.5]), "mappo:seed1": kpis([0.2, 0.4, np.nan]),
               "rule": kpis([np.nan, 0.3, 0.6])}
    path = tmp_path / "feeder_days.md"
    report.write_feeder_days(path, results)
    lines = path.read_text().splitlines()
    assert table_cells(lines[0])[:3] == ["method", "share (2 feeder days)", "share (1 other day)"]
    table = {cells[0]: cells[1:] for cells in map(table_cells, lines[2:]) if len(cells) > 1}
    assert table == {"grid_only": ["0.00", "0.00", "0.0", "0.0", "0.00", "0.00", "0.00", "0.00"],
                     "mappo": ["0.57", "0.20", "0.0", "0.0", "0.00", "0.00", "0.00", "0.00"],
                     "rule": ["0.60", "0.30", "0.0", "0.0", "0.00", "0.00", "0.00", "0.00"]}
    path.unlink()
    report.write_feeder_days(path, {"mappo:seed0": results["mappo:seed0"]})
    assert not path.exists()


def test_the_cost_gap_by_period_splits_each_methods_gap_to_the_optimum_over_the_tariff_periods(run_dir):
    """cost_gap_by_period.md: a column per time-of-use period of the default tariff (off-peak until 07:00, shoulder,
    peak 17:00-21:00, shoulder, off-peak from 22:00), a row per method but the optimum, and the periods add up
    to its whole-day gap, which is the difference of its daily cost to the optimum's in summary.json."""
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = (run_dir / "cost_gap_by_period.md").read_text().splitlines()
    headers = table_cells(lines[0])
    assert headers == ["method", "00:00–07:00 (0.080/kWh)", "07:00–17:00 (0.130/kWh)", "17:00–21:00 (0.180/kWh)",
                       "21:00–22:00 (0.130/kWh)", "22:00–24:00 (0.080/kWh)", "whole day"]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        method, *cells = table_cells(line)
        rows[method] = [float(cell) for cell in cells]
    assert list(rows) == [method for method in DEFAULT_BENCHMARKS if method != "optimal"]
    for method, (*periods, whole_day) in rows.items():
        assert sum(periods) == pytest.approx(whole_day, abs=0.005 * len(periods))
        expected = summary[method]["community_cost"]["mean"] - summary["optimal"]["community_cost"]["mean"]
        assert whole_day == pytest.approx(expected, abs=0.006)
    assert rows["grid_only"][-1] > 0.0


def test_tensorboard_scalars_read_back(run_dir):
    scalars = SummaryReader(str(run_dir)).scalars
    rows = read_results(run_dir)
    for row in rows:
        for kpi in ("community_cost", "share_of_optimal_saving", "self_sufficiency"):
            logged = scalars[(scalars.tag == f"{row['method']}/{kpi}") & (scalars.step == int(row["day"]))]
            assert len(logged) == 1, (row["method"], kpi)
            # Event files store float32.
            assert logged.value.iloc[0] == pytest.approx(float(row[kpi]), rel=1e-6, abs=1e-6)


def test_table_is_printed_within_100_columns_without_the_highs_banner(run_dir):
    stdout = (run_dir / "stdout.txt").read_text()
    assert "2 test day(s), 4 households" in stdout
    for method in DEFAULT_BENCHMARKS:
        assert method in stdout
    table = [line for line in stdout.splitlines() if not line.startswith("[")]  # not the log lines
    assert max(len(line) for line in table) <= 100
    assert "…" not in stdout  # nothing cut
    assert "Running HiGHS" not in stdout


@pytest.fixture(scope="module")
def seeds_run_dir(tmp_path_factory) -> Path:
    """evaluate.py over a tiny Q-learning sweep, two seeds of each of two learning rates, beside two benchmarks."""
    out = tmp_path_factory.mktemp("evaluate_seeds")
    env = ["env.n_agents=3", "env.dt_h=3.0", "env.n_days=20"]  # a whole day in 8 steps: something to save
    trained = subprocess.run([sys.executable, "train.py", "-m", "algo=qlearning", "algo.learning_rate=0.1,0.5",
                              "seed=0,1", *env, "algo.num_envs=4", "total_env_steps=64", "eval_days=1",
                              "progress=false", f"hydra.sweep.dir={out / 'train'}",
                              "hydra.sweep.subdir=lr${algo.learning_rate}_seed${seed}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    runs = sorted(str(path) for path in (out / "train").iterdir() if path.is_dir())
    done = run_evaluate(*env, "max_days=3", "methods=[grid_only,optimal]", f"checkpoints=[{','.join(runs)}]",
                        f"hydra.run.dir={out / 'evaluate'}")
    assert done.returncode == 0, done.stderr
    (out / "evaluate" / "stdout.txt").write_text(done.stdout)
    return out / "evaluate"


@pytest.mark.parametrize("problem", ["other_environment", "no_checkpoints", "not_a_checkpoint"])
def test_a_bad_checkpoint_stops_evaluate_with_one_line_before_any_work(seeds_run_dir, tmp_path, problem):
    """Refused while loading, before the LPs and rollouts: exit code 1, one line naming the file, no traceback
    and no output directory."""
    trained = sorted((seeds_run_dir.parent / "train").iterdir())[0]
    households = 3
    if problem == "other_environment":
        households = 4
        message = rf"checkpoint {re.escape(str(trained))}/checkpoints/best\.pt was trained for another " \
                  r"environment: n_agents=3 \(here 4\)"
        checkpoint = trained
    elif problem == "no_checkpoints":
        checkpoint = tmp_path / "empty_run"
        checkpoint.mkdir()
        message = rf"{re.escape(str(checkpoint))} holds no checkpoint"
    else:
        checkpoint = tmp_path / "notes.pt"
        checkpoint.write_text("not a checkpoint\n")
        message = rf"{re.escape(str(checkpoint))} is not a p2p_marl training checkpoint"
    out = tmp_path / "evaluate"
    done = run_evaluate(f"env.n_agents={households}", "env.dt_h=3.0", "env.n_days=20",
                        "methods=[grid_only,optimal]", f"checkpoints=[{checkpoint}]", f"hydra.run.dir={out}")
    assert done.returncode == 1
    assert re.fullmatch(rf"evaluate.py: error: {message}.*", done.stderr.strip())
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_evaluations_started_in_the_same_second_get_directories_of_their_own(tmp_path):
    same_name = f"hydra.run.dir='${{p2p_new_dir:{tmp_path / 'evaluate'}}}'"
    command = [sys.executable, "evaluate.py", *SMALL_ENV, "max_days=1", "methods=[grid_only]", "tensorboard=false",
               same_name]
    launch_twice_at_once(command, ROOT)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["evaluate", "evaluate_2"]
    for name in ("evaluate", "evaluate_2"):
        assert len(read_results(tmp_path / name)) == 1


def test_the_optimum_is_played_from_the_reference_lps_without_solving_them_again(tmp_path, monkeypatch):
    script = load_script(ROOT / "evaluate.py", "evaluate_script")
    solved_days = []

    def counting_solve(core, day, network=True, **kwargs):
        if network:  # the optimum's own LP (a reference may also solve the day without the network)
            solved_days.append(day)
        return solve_optimal_day(core, day, network, **kwargs)

    monkeypatch.setattr(compare, "solve_optimal_day", counting_solve)
    monkeypatch.setattr(optimal, "solve_optimal_day", counting_solve)
    config = EvaluateConfig(env=EnvConfig(n_agents=4, n_days=30), methods=["grid_only", "optimal"], max_days=3,
                            tensorboard=False)
    script.evaluate(config, load_policies(config.methods, [], env_config=config.env), tmp_path)
    assert sorted(solved_days) == sorted(CommunityCore(config.env).test_days[:3].tolist())  # each day once
    rows = read_results(tmp_path)
    assert all(float(row["share_of_optimal_saving"]) == pytest.approx(1.0, abs=1e-5)
               for row in rows if row["method"] == "optimal")


def test_evaluate_counts_the_steps_the_environments_own_safety_filter_moved(tmp_path, caplog):
    """As many community-steps as the same play through the wrapper counts, and some."""
    script = load_script(ROOT / "evaluate.py", "evaluate_script")
    # The transformer tapped low: the evening peak pulls the far buses under the band, which idle batteries can lift.
    env = EnvConfig(n_agents=10, prosumer_share=0.6, v_slack_pu=0.97)
    counts = {}
    for label, safety_filter in (("grid_only", True), ("grid_only+safety_filter", False)):
        config = EvaluateConfig(env=env.replace(safety_filter=safety_filter), methods=["grid_only"], max_days=1,
                                tensorboard=False, safety_filter=not safety_filter)
        policies = load_policies(config.methods, [], env_config=config.env, safety_filter=config.safety_filter)
        (tmp_path / label).mkdir()
        with caplog.at_level("INFO", logger="evaluate"):
            script.evaluate(config, policies, tmp_path / label)
        moved = re.search(rf"{re.escape(label)}: the safety filter moved the actions of (\d+) of 48 community-steps",
                          caplog.text)
        counts[label] = int(moved.group(1))
    assert counts["grid_only"] == counts["grid_only+safety_filter"] > 0


def test_demo_table_fits_100_columns(capsys):
    demo.main(["--n-agents", "4"])
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "battery" in "".join(lines) and "…" not in "".join(lines)  # every header whole


def test_seeds_of_one_setting_are_summarised_over_runs_and_settings_kept_apart(seeds_run_dir):
    per_run = json.loads((seeds_run_dir / "summary.json").read_text())
    by_method = json.loads((seeds_run_dir / "summary_by_method.json").read_text())
    # Sorted run directories: learning rate 0.1 (seeds 0, 1) comes first, so it is qlearning#1.
    assert list(by_method) == ["grid_only", "optimal", "qlearning#1", "qlearning#2"]
    assert sorted(per_run)[2:] == ["qlearning#1:lr0.1_seed0", "qlearning#1:lr0.1_seed1",
                                   "qlearning#2:lr0.5_seed0", "qlearning#2:lr0.5_seed1"]
    assert "differ in algo.learning_rate" in (seeds_run_dir / "stdout.txt").read_text()  # Hydra logs to stdout
    for method in ("qlearning#1", "qlearning#2"):
        seeds = [label for label in per_run if label.startswith(method + ":")]
        for kpi in ("community_cost", "share_of_optimal_saving", "p2p_volume_kwh"):
            runs = [per_run[label][kpi]["mean"] for label in seeds]
            stats = by_method[method][kpi]
            assert stats["n_runs"] == 2 and stats["runs"] == runs
            assert stats["mean"] == pytest.approx(np.mean(runs))
            assert stats["std"] == pytest.approx(np.std(runs, ddof=1))
    # A benchmark is one run: its mean is the per-day mean and it has no spread over runs.
    assert by_method["optimal"]["community_cost"]["mean"] == per_run["optimal"]["community_cost"]["mean"]
    assert by_method["optimal"]["community_cost"]["n_runs"] == 1
    assert by_method["optimal"]["community_cost"]["std"] is None
    assert "mean ± std over seeds" in (seeds_run_dir / "stdout.txt").read_text()
    assert (seeds_run_dir / "costs_by_method.png").read_bytes().startswith(PNG_SIGNATURE)


def test_the_truthful_bid_keeps_a_policys_battery_and_curtailment_and_bids_its_net_at_the_meter():
    """The bid is retail exactly where the household's net at the meter, with the battery power the step will
    apply (a setpoint beyond the battery's limits clipped to them), is positive."""
    core = CommunityCore(EnvConfig(n_agents=6, n_days=10), batch_size=8)
    obs = core.reset(seed=3)
    for _ in range(5):  # batteries away from their start
        obs, *_ = core.step(RandomActions(seed=1).act(core, obs))
    core.energy_kwh[0] = core.battery.max_energy_kwh  # full: a charging setpoint cannot charge
    wrapped = TruthfulBid(RandomActions(seed=0))
    played, own = wrapped.act(core, obs), RandomActions(seed=0).act(core, obs)
    assert wrapped.name == "random+truthful_bid"
    np.testing.assert_array_equal(played[..., [0, 2]], own[..., [0, 2]])
    load_kw = obs[..., OBS_FEATURES.index("load")] * core.power_scale_kw
    pv_kw = obs[..., OBS_FEATURES.index("pv")] * core.power_scale_kw
    _, _, _, infos = core.step(played)
    applied_kw = (infos["battery_charge_kwh"] - infos["battery_discharge_kwh"]) / core.dt_h
    net_kw = load_kw - pv_kw * (1.0 - own[..., 2]) + applied_kw
    np.testing.assert_allclose(played[..., 1], (net_kw > 0).astype(float))
    assert 0 < played[..., 1].mean() < 1  # buyers and sellers among them
    asked_kw = own[..., 0] * core.battery.max_kw
    assert not np.allclose(asked_kw, applied_kw)  # the clipping mattered somewhere
    np.testing.assert_array_equal(truthful_price_share(load_kw, pv_kw, asked_kw),
                                  (load_kw - pv_kw + asked_kw > 0).astype(float))


def test_truthful_bid_adds_a_method_per_checkpointed_method(seeds_run_dir, compose_evaluate):
    runs = sorted(str(path) for path in (seeds_run_dir.parent / "train").iterdir() if path.is_dir())
    policies = load_policies(["grid_only"], runs[:3], env_config=EnvConfig(n_agents=3, dt_h=3.0, n_days=20),
                             truthful_bid=True)
    assert sorted({report.method_of(label) for label in policies}) == [
        "grid_only", "qlearning#1", "qlearning#1+truthful_bid", "qlearning#2", "qlearning#2+truthful_bid"]
    wrapped = policies["qlearning#1+truthful_bid:lr0.1_seed0"]
    assert wrapped.policy is policies["qlearning#1:lr0.1_seed0"]
    assert wrapped.observation_settings == wrapped.policy.observation_settings  # observes as it trained
    with pytest.raises(ConfigError, match=r"truthful_bid=true plays checkpoints .* and checkpoints is empty"):
        to_evaluate_config(compose_evaluate("truthful_bid=true"))


def test_safety_filter_adds_a_method_per_benchmark_and_checkpointed_method(seeds_run_dir):
    runs = sorted(str(path) for path in (seeds_run_dir.parent / "train").iterdir() if path.is_dir())
    policies = load_policies(["grid_only"], runs[:3], env_config=EnvConfig(n_agents=3, dt_h=3.0, n_days=20),
                             safety_filter=True)
    assert sorted({report.method_of(label) for label in policies}) == [
        "grid_only", "grid_only+safety_filter", "qlearning#1", "qlearning#1+safety_filter", "qlearning#2",
        "qlearning#2+safety_filter"]
    filtered = policies["qlearning#1+safety_filter:lr0.1_seed0"]
    assert filtered.policy is policies["qlearning#1:lr0.1_seed0"]
    assert filtered.observation_settings == filtered.policy.observation_settings  # observes as it trained


def test_a_run_trained_through_the_safety_filter_is_its_own_method_and_asks_to_be_played_through_it(
        seeds_run_dir, tmp_path, caplog):
    env = ["env.n_agents=3", "env.dt_h=3.0", "env.n_days=20"]
    trained = subprocess.run([sys.executable, "train.py", "algo=qlearning", "env.safety_filter=true", *env,
                              "algo.num_envs=4", "total_env_steps=64", "eval_days=1", "progress=false",
                              f"hydra.run.dir={tmp_path / 'filtered'}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    plain = sorted(str(path) for path in (seeds_run_dir.parent / "train").iterdir() if path.is_dir())[0]
    runs, env_config = [plain, str(tmp_path / "filtered")], EnvConfig(n_agents=3, dt_h=3.0, n_days=20)
    with caplog.at_level("WARNING", logger="p2p_marl.evaluation.compare"):
        policies = load_policies([], runs, env_config=env_config)
    assert list(policies) == ["qlearning#1:lr0.1_seed0", "qlearning#2:filtered"]
    assert "filtered was trained through the feeder safety filter" in caplog.text
    assert "qlearning#2+safety_filter" in caplog.text
    for played_through in ({"safety_filter": True}, {"env_config": env_config.replace(safety_filter=True)}):
        caplog.clear()
        with caplog.at_level("WARNING", logger="p2p_marl.evaluation.compare"):
            load_policies([], runs, **{"env_config": env_config, **played_through})
        assert "trained through the feeder safety filter" not in caplog.text


def test_summarize_runs_skips_runs_without_a_value_and_plots_any_summary(tmp_path):
    """A KPI undefined in one run (a clearing price where a seed never trades) is averaged over the others."""
    def day_stats(mean):
        return {"mean": mean, "std": None if mean is None else 0.1, "n_days": 0 if mean is None else 5}

    summary = {"grid_only": {"price": day_stats(None), "cost": day_stats(9.0)},
               "dqn:a": {"price": day_stats(0.10), "cost": day_stats(5.0)},
               "dqn:b": {"price": day_stats(None), "cost": day_stats(6.0)},
               "dqn:c": {"price": day_stats(0.14), "cost": day_stats(7.0)},
               "mappo:x": {"price": day_stats(0.12), "cost": day_stats(4.0)}}
    by_method = report.summarize_runs(summary)
    assert by_method["dqn"]["price"] == {"mean": pytest.approx(0.12), "std": pytest.approx(np.std([0.1, 0.14],
                                                                                                  ddof=1)),
                                         "n_runs": 3, "runs": [0.10, None, 0.14]}
    assert by_method["dqn"]["cost"]["std"] == pytest.approx(1.0)
    assert by_method["mappo"]["cost"] == {"mean": 4.0, "std": None, "n_runs": 1, "runs": [4.0]}
    assert by_method["grid_only"]["price"]["mean"] is None
    for kpi in ("price", "cost", "not_a_kpi"):
        report.plot_kpi_by_method(tmp_path / f"{kpi}.png", summary, kpi, ylabel=kpi, title=kpi)
        assert (tmp_path / f"{kpi}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_the_mean_day_adds_up_to_the_daily_kpis_and_keeps_the_batteries_energy_balance(tmp_path):
    env = EnvConfig(n_agents=6, n_days=30)
    core = CommunityCore(env)
    days = core.test_days[:5]
    infos = compare.rollout_days(env, SelfConsumption(), days)
    day = report.mean_day(infos, core.has_battery)
    kpis = evaluate_policy(env, SelfConsumption(), days)
    for key in ("grid_import_kwh", "grid_export_kwh"):
        assert day[key].sum() == pytest.approx(kpis[key].mean(), rel=1e-12)
    assert np.all((day["soc"] >= env.soc_min - 1e-12) & (day["soc"] <= env.soc_max + 1e-12))
    # Stored energy moves with the metered battery energy through the efficiencies (p2p_marl.sim.battery).
    battery = core.battery
    stored_kwh = (infos["battery_charge_kwh"] * battery.charge_efficiency
                  - infos["battery_discharge_kwh"] / battery.discharge_efficiency).sum(axis=2).mean(axis=0)
    capacity_kwh = battery.capacity_kwh.sum()
    assert np.diff(day["soc"]) * capacity_kwh == pytest.approx(stored_kwh[1:], abs=1e-9)
    assert day["cost"].sum() == pytest.approx(kpis["community_cost"].mean(), rel=1e-12)
    settlement = day["cost"] - day["cost_before_settlement"]
    assert np.all(settlement[:-1] == 0.0) and settlement[-1] == pytest.approx(kpis["end_settlement"].mean())
    report.plot_mean_day_by_method(tmp_path / "mean_day.png", {"optimal": day, "mappo:seed0": day,
                                                               "mappo:seed1": day}, env.dt_h, title="test")
    assert (tmp_path / "mean_day.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("retail, periods", [
    ([0.1, 0.1, 0.2, 0.2, 0.1], [(0, 2), (2, 4), (4, 5)]),
    ([0.1, 0.1, 0.1], [(0, 3)]),
    ([0.3, 0.1, 0.2], [(0, 1), (1, 2), (2, 3)]),
])
def test_tariff_periods_are_the_runs_of_one_retail_price(retail, periods):
    assert report.tariff_periods(np.array(retail)) == periods


def test_the_cost_gap_by_period_averages_a_methods_runs_and_needs_the_reference():
    retail = np.array([0.1, 0.1, 0.2, 0.1])
    days = {"ref": {"cost": np.array([1.0, 1.0, 1.0, 1.0])},
            "mappo:seed0": {"cost": np.array([2.0, 1.0, 3.0, 1.0])},
            "mappo:seed1": {"cost": np.array([1.0, 1.0, 1.0, 2.0])}}
    gaps = report.cost_gap_by_period(days, retail, reference="ref")
    assert list(gaps) == ["mappo"]
    np.testing.assert_allclose(gaps["mappo"], [0.5, 1.0, 0.5])
    assert report.cost_gap_by_period(days, retail, reference="optimal") == {}


def test_bad_config_value_is_a_one_line_error(tmp_path):
    done = run_evaluate("env.n_agents=0", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 1
    assert done.stderr.strip() == "evaluate.py: error: env.n_agents=0 is out of range; allowed [1, 10000]"


@pytest.fixture(scope="module")
def compose_evaluate():
    register_configs()

    return lambda *overrides: compose_config("evaluate", *overrides)


def test_default_config_composes(compose_evaluate):
    config = to_evaluate_config(compose_evaluate())
    assert config.env == EnvConfig(n_agents=10, prosumer_share=0.6)
    assert config.methods == list(DEFAULT_BENCHMARKS) and config.checkpoints == [] and config.max_days is None
    assert config.run_checkpoint == "best"


@pytest.mark.parametrize("override, message", [
    ("env.soc_initial=0.99", r"^env\.soc_initial=0\.99 must lie in \[soc_min, soc_max\]"),
    ("methods=[grid_only,lottery]", r"^methods\[1\]='lottery' is not a benchmark"),
    ("max_days=0", r"^max_days=0 is out of range"),
    ("run_checkpoint=first", r"^run_checkpoint='first' is not allowed; choose best .* or last"),
    ("seed=-1", r"^seed=-1 is out of range; allowed \[0, "),
    ("threads=0", r"^threads=0 is out of range; allowed \[1, 1024\]"),
    ("env.split=validation", r"^env\.split='validation', env\.day=None: evaluate\.py plays the days that days= names"),
    ("env.day=2", r"^env\.split='train', env\.day=2: evaluate\.py plays the days that days= names"),
    ("env.community_seed=-1", r"^env\.community_seed=-1 is out of range; allowed \[0, "),
])
def test_invalid_settings_name_the_key(compose_evaluate, override, message):
    with pytest.raises(ConfigError, match=message):
        to_evaluate_config(compose_evaluate(override))


def test_threads_reach_every_mpc_benchmark(compose_evaluate):
    config = to_evaluate_config(compose_evaluate("threads=2"))
    policies = load_policies(config.methods, config.checkpoints, config.seed, safety_filter=True,
                             threads=config.threads)
    mpcs = {name: policy for name, policy in policies.items() if name.startswith("mpc")}
    assert len(mpcs) == 8 and all(getattr(policy, "policy", policy).threads == 2 for policy in mpcs.values())


def test_missing_checkpoint_is_a_clear_error(compose_evaluate, tmp_path):
    config = to_evaluate_config(compose_evaluate(f"checkpoints=[{tmp_path / 'no_such_run'}]"))
    with pytest.raises(ConfigError, match=r"checkpoints\[0\]='.*no_such_run' does not exist"):
        load_policies(config.methods, config.checkpoints, config.seed)


def test_evaluate_policy_against_references():
    env = EnvConfig(n_agents=4, n_days=20)
    days = np.array([3, 11, 17])
    references = reference_costs(env, days)
    assert references["grid_only_bills"].shape == (3, 4)
    grid_only = evaluate_policy(env, GridOnly(), days, references)
    np.testing.assert_array_equal(grid_only["community_cost"], references["grid_only"])
    np.testing.assert_array_equal(grid_only["share_of_optimal_saving"], 0.0)
    np.testing.assert_array_equal(grid_only["savings_gini"], 0.0)
    optimal = evaluate_policy(env, OptimalPolicy(network=True), days, references)
    np.testing.assert_allclose(optimal["community_cost"], references["optimal"], rtol=1e-6)
    rule = evaluate_policy(env, SelfConsumption(), days, references)
    assert np.all(rule["community_cost"] >= references["optimal"] - 1e-9)
    # Without references only the KPIs of the policy's own infos.
    plain = evaluate_policy(env, SelfConsumption(), days)
    assert set(rule) - set(plain) == {"saving_vs_grid_only", "savings_gini", "savings_jain", "share_worse_off",
                                      "share_of_optimal_saving"}
    for key, values in plain.items():
        np.testing.assert_array_equal(values, rule[key], err_msg=key)


def test_select_days():
    core = CommunityCore(EnvConfig(n_agents=4, n_days=30))
    days, plot_day = select_days(core, max_days=3)
    np.testing.assert_array_equal(days, core.test_days[:3])
    assert plot_day == days[np.argmax(core.profiles.pv_kw[days].sum(axis=(1, 2)))]
    assert select_days(core, None, int(core.test_days[-1]))[1] == core.test_days[-1]
    with pytest.raises(ConfigError, match=r"plot_day=\d+ is not among the evaluated test days"):
        select_days(core, 2, int(core.test_days[-1]))


def test_value_of_information_table_and_plot(tmp_path):
    """On one test day: MPC with the oracle reaches the optimum, forecasts' errors grow down the noisy rows, and
    no method beats the optimum."""
    value_of_information.main(["--max-days", "1", "--out", str(tmp_path)])
    assert (tmp_path / "value_of_information.png").read_bytes().startswith(PNG_SIGNATURE)
    rows = {}
    for line in (tmp_path / "value_of_information.md").read_text().splitlines()[2:]:
        method, *cells = table_cells(line)
        rows[method] = cells
    assert float(rows["MPC, oracle"][3]) == pytest.approx(1.0, abs=1e-3)
    assert rows["MPC, oracle"][:3] == ["0.00", "0.00", "0.00"]
    noisy_net_errors = [float(cells[2]) for method, cells in rows.items() if method.startswith("MPC, noisy")]
    assert len(noisy_net_errors) == 4 and noisy_net_errors == sorted(noisy_net_errors) and noisy_net_errors[0] > 0
    assert rows["rule_time_of_use"][:3] == ["–", "–", "–"]
    assert all(float(cells[3]) <= 1.0 + 1e-3 for cells in rows.values())


def test_grid_resolution_table_and_plot(tmp_path):
    """On one validation day: MPC unsnapped first, then a row per learner's grid and battery levels with as many
    actions as that grid has, none above the optimum."""
    grid_resolution.main(["--max-days", "1", "--levels", "3", "9", "--out", str(tmp_path)])
    assert (tmp_path / "grid_resolution.png").read_bytes().startswith(PNG_SIGNATURE)
    rows = [table_cells(line) for line in (tmp_path / "grid_resolution.md").read_text().splitlines()[2:]]
    assert [row[:3] for row in rows] == [["MPC, continuous", "–", "continuous"],
                                         ["MPC on dqn's grid", "3", str(3 * 3 * 2 + 6)],
                                         ["MPC on dqn's grid", "9", str(9 * 3 * 2 + 6)],
                                         ["MPC on qlearning's grid", "3", "4"], ["MPC on qlearning's grid", "9", "10"]]
    assert all(float(row[3]) <= 1.0 + 1e-3 for row in rows)


@settings(max_examples=50, deadline=None)
@given(noise_rms=st.floats(0.0, 2.0), bias=st.floats(-2.0, 2.0), seed=st.integers(0, 2**32 - 1))
def test_moved_setpoints_move_only_the_battery_setpoint_and_stay_in_the_box(noise_rms, bias, seed):
    core = CommunityCore(EnvConfig(n_agents=4, n_days=30), batch_size=8)
    obs = core.reset(seed=seed)
    moved = MovedSetpoints(RandomActions(seed=seed), noise_rms, bias, seed=seed)
    moved.reset(core)
    played, own = moved.act(core, obs), RandomActions(seed=seed).act(core, obs)
    np.testing.assert_array_equal(played[..., 1:], own[..., 1:])
    assert np.all(np.abs(played[..., 0]) <= 1.0)
    if noise_rms == 0.0:
        np.testing.assert_allclose(played[..., 0], np.clip(own[..., 0] + bias, -1.0, 1.0))


def test_moved_setpoints_noise_has_its_rms_is_each_days_own_and_repeats_after_reset():
    """Idle batteries (setpoint share 0) moved by noise of RMS 0.03 and a bias of 0.01: that RMS and mean over
    many steps, a fresh draw each step and household, the same draws for a day in any batch, again after reset."""
    config = EnvConfig(n_agents=4, n_days=30)
    core = CommunityCore(config, batch_size=6)
    days = np.arange(6)
    obs = core.reset(days=days)
    moved = MovedSetpoints(IdleMidPrice(), 0.03, bias=0.01, seed=7)
    moved.reset(core)
    draws = np.stack([moved.act(core, obs)[..., 0] for _ in range(200)])  # (steps, days, households)
    assert np.sqrt(np.mean((draws - 0.01) ** 2)) == pytest.approx(0.03, rel=0.05)
    assert np.mean(draws) == pytest.approx(0.01, abs=0.002)
    assert len(np.unique(draws)) == draws.size
    alone = CommunityCore(config, batch_size=2)
    alone_obs = alone.reset(days=np.array([5, 2]))  # days 5 and 2 alone, in another order
    moved.reset(alone)
    np.testing.assert_array_equal(moved.act(alone, alone_obs)[..., 0], draws[0, [5, 2]])
    moved.reset(core)
    np.testing.assert_array_equal(moved.act(core, obs)[..., 0], draws[0])
    assert moved.name == "idle_mid_price, setpoint noise 0.03, bias +0.01"
    with pytest.raises(ValueError, match="noise_rms must be finite and >= 0"):
        MovedSetpoints(IdleMidPrice(), -0.01)
    with pytest.raises(ValueError, match="bias finite"):
        MovedSetpoints(IdleMidPrice(), 0.01, float("nan"))


def test_a_wrapped_policy_keeps_its_shared_battery_dispatch_and_observation():
    """MovedSetpoints (as every PolicyWrapper) hands the shared battery to the policy's act_operator, or to the
    battery's rule (None) for a policy without one, and observes as the policy does."""
    class Operator(IdleMidPrice):
        observation_settings = {"forecast_bins": 12}

        def act_operator(self, core, obs):
            return np.full((obs.shape[0], 2), 0.25)

    shared = EnvConfig(n_agents=4, n_days=30, shared_battery_kwh=20.0, shared_battery_kw=10.0)
    core = CommunityCore(shared, batch_size=3)
    obs = core.reset(seed=0)
    np.testing.assert_array_equal(MovedSetpoints(Operator(), 0.1).act_operator(core, obs), np.full((3, 2), 0.25))
    assert MovedSetpoints(Operator(), 0.1).observation_settings == {"forecast_bins": 12}
    assert MovedSetpoints(IdleMidPrice(), 0.1).act_operator(core, obs) is None
    assert MovedSetpoints(IdleMidPrice(), 0.1).observation_settings == {}


@settings(max_examples=100, deadline=None)
@given(points=st.lists(st.tuples(st.floats(0.001, 0.1), st.floats(0.001, 1.0)), min_size=1, max_size=6),
       start=st.floats(0.0, 1.0), fraction=st.floats(0.0, 1.0))
def test_equivalent_noise_inverts_a_falling_curve(points, start, fraction):
    """Each point's share maps back to its noise, a share between two neighbours to the noise between theirs
    (linearly), a share above the noiseless one to 0, one below the curve's end to None and NaN to NaN."""
    noise = np.concatenate([[0.0], np.cumsum([gap for gap, _ in points])])
    shares = start - np.concatenate([[0.0], np.cumsum([drop for _, drop in points])])
    curve = list(zip(noise.tolist(), shares.tolist()))
    for point_noise, point_share in curve:
        assert equivalent_noise_rms(point_share, curve) == pytest.approx(point_noise, abs=1e-9)
    for (noise_low, share_low), (noise_high, share_high) in zip(curve, curve[1:]):
        between = share_low - fraction * (share_low - share_high)
        assert equivalent_noise_rms(between, curve) == pytest.approx(noise_low + fraction * (noise_high - noise_low),
                                                                     abs=1e-9)
    assert equivalent_noise_rms(start + 0.1, curve) == 0.0
    assert equivalent_noise_rms(shares[-1] - 0.1, curve) is None
    assert np.isnan(equivalent_noise_rms(float("nan"), curve))


def test_equivalent_noise_takes_the_first_crossing_of_a_curve_that_rises_again():
    curve = [(0.0, 0.9), (0.01, 0.8), (0.02, 0.85), (0.04, 0.6)]
    assert equivalent_noise_rms(0.82, curve) == pytest.approx(0.008)
    assert equivalent_noise_rms(0.7, curve) == pytest.approx(0.032)


def test_setpoint_precision_table_and_plot(tmp_path):
    """On one test day: MPC unmoved, then each noise and bias; every noise and some bias costing MPC some of its
    share, the larger noises more; the rules and the floor placed on its scale; no row above the optimum."""
    setpoint_precision.main(["--max-days", "1", "--out", str(tmp_path)])
    assert (tmp_path / "setpoint_precision.png").read_bytes().startswith(PNG_SIGNATURE)
    mpc_table, other_table = (tmp_path / "setpoint_precision.md").read_text().split("\n\n")
    mpc_rows = [table_cells(line) for line in mpc_table.splitlines()[2:]]
    assert [row[:2] for row in mpc_rows] == (
        [["0", "0"]] + [[f"{noise:g}", "0"] for noise in setpoint_precision.NOISE_RMS]
        + [["0", f"{bias:+g}"] for bias in setpoint_precision.BIAS])
    shares = [float(row[2]) for row in mpc_rows]
    assert max(shares) <= 1.0 + 1e-3
    noisy = shares[1:1 + len(setpoint_precision.NOISE_RMS)]
    assert max(noisy) < shares[0] and noisy[-3:] == sorted(noisy[-3:], reverse=True)
    assert min(shares[1 + len(setpoint_precision.NOISE_RMS):]) < shares[0]
    other_rows = [table_cells(line) for line in other_table.splitlines()[2:]]
    assert [row[:2] for row in other_rows] == [[name, "1"] for name in setpoint_precision.OTHER_CONTROLLERS]
    assert {row[0]: row[3] for row in other_rows}["random"] == f"> {max(setpoint_precision.NOISE_RMS):g}"


def test_setpoint_precision_groups_the_runs_of_a_method_in_the_order_given():
    """Runs labelled ``<method>:<run>`` form one row per method, in order of first appearance, holding each run's
    share as evaluate_policy plays it alone; the runs' shares differ, so a run in the wrong row would show."""
    config = EnvConfig(n_agents=3, dt_h=3.0, n_days=20)
    days, _ = select_days(CommunityCore(config), 2)
    def controllers():  # fresh ones: random actions draw on from where the last play left them
        return {"random:a": RandomActions(seed=0), "idle_mid_price": IdleMidPrice(),
                "random#2:a": RandomActions(seed=2), "random:b": RandomActions(seed=1)}

    mpc_rows, other_rows = setpoint_precision.setpoint_precision(config, days, controllers())
    assert len(mpc_rows) == 1 + len(setpoint_precision.NOISE_RMS) + len(setpoint_precision.BIAS)
    references = reference_costs(config, days)
    alone = {label: np.nanmean(evaluate_policy(config, policy, days, references)["share_of_optimal_saving"])
             for label, policy in controllers().items()}
    assert len(set(alone.values())) == len(alone)
    assert [(row["method"], row["shares"]) for row in other_rows] == [
        ("random", [alone["random:a"], alone["random:b"]]), ("idle_mid_price", [alone["idle_mid_price"]]),
        ("random#2", [alone["random#2:a"]])]
    assert [row["runs"] for row in other_rows] == [2, 1, 1]


def test_setpoint_precision_places_each_setting_of_trained_runs(seeds_run_dir):
    """Two seeds of each of two Q-learning settings (labelled by load_policies): a row per setting with both runs."""
    runs = sorted(str(path) for path in (seeds_run_dir.parent / "train").iterdir() if path.is_dir())
    config = EnvConfig(n_agents=3, dt_h=3.0, n_days=20)
    days, _ = select_days(CommunityCore(config), 2)
    _, other_rows = setpoint_precision.setpoint_precision(config, days, load_policies([], runs, env_config=config))
    assert [(row["method"], row["runs"], len(row["run_equivalent_noise"])) for row in other_rows] == [
        ("qlearning#1", 2, 2), ("qlearning#2", 2, 2)]


def test_a_bad_run_directory_stops_setpoint_precision_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match=r"setpoint_precision: error: checkpoints\[0\]='nowhere' does not exist"):
        setpoint_precision.main(["nowhere", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_runs_that_differ_only_in_the_discrete_views_grid_are_one_variant():
    from p2p_marl.evaluation.compare import _training_setting

    def run(**env):
        return {"env": {"n_agents": 10, "n_price_levels": 3, "n_curtail_levels": 2, **env}, "algo": {"name": "mappo"},
                "total_env_steps": 600_000, "seed": 0}

    assert _training_setting(run(n_price_levels=1, n_curtail_levels=1)) == _training_setting(run())
    assert _training_setting(run(n_agents=12)) != _training_setting(run())
    # Runs saved before forecast_bins existed observed without the bins: one variant with forecast_bins=0.
    assert _training_setting(run()) == _training_setting(run(forecast_bins=0))
    assert _training_setting(run()) != _training_setting(run(forecast_bins=12))
    # The same extra features listed in another order on the command line: one variant; none is the default.
    assert _training_setting(run(extra_features=["feeder_position", "community_soc"])) == _training_setting(
        run(extra_features=["community_soc", "feeder_position"]))
    assert _training_setting(run()) == _training_setting(run(extra_features=[]))
    assert _training_setting(run()) != _training_setting(run(extra_features=["community_soc"]))
    # Runs saved before the safety filter was an environment option trained without it.
    assert _training_setting(run()) == _training_setting(run(safety_filter=False))
    assert _training_setting(run()) != _training_setting(run(safety_filter=True))
    # DQN and MADDPG runs saved before their learning-rate decay (and DQN's voltage margin and penalty keys,
    # MADDPG's critic warm-up) existed trained at a constant rate on the whole band, bearing the billed penalty:
    # one variant with those keys at the values they trained with.
    dqn = {**run(), "algo": {"name": "dqn"}}
    constant = {**dqn, "algo": {"name": "dqn", "lr_end_fraction": 1.0, "lr_decay_steps": 600_000,
                                "voltage_margin_pu": 0.0, "penalty_reward": "share", "penalty_weight": 1.0}}
    assert _training_setting(dqn) == _training_setting(constant)
    assert _training_setting(dqn) != _training_setting({**dqn, "algo": {"name": "dqn", "lr_end_fraction": 0.0}})
    assert _training_setting(dqn) != _training_setting({**dqn, "algo": {"name": "dqn", "voltage_margin_pu": 0.0075}})
    assert _training_setting(dqn) != _training_setting({**dqn, "algo": {"name": "dqn", "penalty_reward": "community"}})
    maddpg = {**run(), "algo": {"name": "maddpg"}}
    assert _training_setting(maddpg) == _training_setting(
        {**maddpg, "algo": {"name": "maddpg", "lr_end_fraction": 1.0, "lr_decay_steps": 600_000,
                            "critic_warmup_iterations": 0}})
    assert _training_setting(maddpg) != _training_setting(
        {**maddpg, "algo": {"name": "maddpg", "critic_warmup_iterations": 50}})
    assert _training_setting(maddpg) != _training_setting(
        {**maddpg, "algo": {"name": "maddpg", "lr_end_fraction": 0.0}})
    # MAPPO and MADDPG runs saved before imitation_feeder_weight existed weighed every demonstration alike.
    for learner in ("mappo", "maddpg"):
        before = {**run(), "algo": {"name": learner}}
        assert _training_setting(before) == _training_setting(
            {**before, "algo": {"name": learner, "imitation_feeder_weight": 1.0}})
        assert _training_setting(before) != _training_setting(
            {**before, "algo": {"name": learner, "imitation_feeder_weight": 6.0}})


def test_the_cost_gap_plot_needs_a_method_beside_the_optimum_and_draws_a_zero_gap(tmp_path):
    """``methods=[optimal]`` has no gap to draw (no file, no crash); a method exactly at the optimum still gets an
    axis."""
    parts = {kpi: {"mean": 0.0} for kpi in ("community_cost", *report.COST_PARTS)}
    optimum = {**parts, "community_cost": {"mean": 4.7}, "grid_energy_cost": {"mean": 4.7}}
    report.plot_cost_gap(tmp_path / "alone.png", {"optimal": optimum}, title="alone")
    assert not (tmp_path / "alone.png").exists()
    report.plot_cost_gap(tmp_path / "tie.png", {"optimal": optimum, "mpc_oracle": optimum}, title="tie")
    assert (tmp_path / "tie.png").read_bytes().startswith(PNG_SIGNATURE)


def small_actor(seed: int, **settings):
    """The evaluation policy of an untrained MAPPO actor on a tiny community (seeds give different actors)."""
    from p2p_marl.algos.mappo import MAPPO, MAPPOConfig

    config = MAPPOConfig(num_envs=2, hidden_sizes=[8], **settings)
    return MAPPO(EnvConfig(n_agents=3, dt_h=3.0, n_days=20), config, seed=seed).policy()


def test_an_ensemble_plays_the_mean_of_its_actors_box_points():
    from p2p_marl.algos.nets import ActorEnsemble, env_action

    first, second = small_actor(0), small_actor(1)
    core = CommunityCore(EnvConfig(n_agents=3, dt_h=3.0, n_days=20), batch_size=4)
    obs = core.reset(seed=3)
    alone = ActorEnsemble("one", [first])
    alone.reset(core)
    np.testing.assert_array_equal(alone.act(core, obs), first.act(core, obs))  # one actor: itself, exactly
    boxes = first.box_point(obs), second.box_point(obs)
    assert np.abs(boxes[0] - boxes[1]).max() > 0.01  # two different actors
    both = ActorEnsemble("two", [first, second])
    np.testing.assert_allclose(both.act(core, obs), env_action((boxes[0] + boxes[1]) / 2, core, obs, "power"),
                               rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="read the box alike"):
        ActorEnsemble("mixed", [first, small_actor(2, battery_action="net_load", infeasible_penalty_per_kwh=0.0)])
    with pytest.raises(ValueError, match="one or more trained actors"):
        ActorEnsemble("none", [])


def test_an_ensemble_of_one_recurrent_actor_plays_its_days_as_the_actor_does():
    """Each member's memory is emptied at the day's start and carried one step per step, as the actor's alone."""
    config = EnvConfig(n_agents=3, dt_h=3.0, n_days=20)
    recurrent = small_actor(0, actor_recurrent=True, num_minibatches=2)
    from p2p_marl.algos.nets import ActorEnsemble, RecurrentActorPolicy

    assert isinstance(recurrent, RecurrentActorPolicy)
    days = np.array([0, 1, 2])
    alone = compare.rollout_days(config, recurrent, days)
    together = compare.rollout_days(config, ActorEnsemble("one", [recurrent]), days)
    assert alone.keys() == together.keys()
    for key in alone:
        np.testing.assert_array_equal(together[key], alone[key], err_msg=key)


@pytest.fixture(scope="module")
def actor_runs(tmp_path_factory) -> list[str]:
    """Two seeds of a tiny MAPPO run (trained actors for the ensemble)."""
    out = tmp_path_factory.mktemp("actor_runs")
    env = ["env.n_agents=3", "env.dt_h=3.0", "env.n_days=20"]
    trained = subprocess.run([sys.executable, "train.py", "-m", "algo=mappo", "seed=0,1", *env, "algo.num_envs=4",
                              "algo.hidden_sizes=[8]", "algo.num_minibatches=2", "algo.update_epochs=1",
                              "total_env_steps=64", "eval_days=1", "progress=false", f"hydra.sweep.dir={out}",
                              "hydra.sweep.subdir=seed${seed}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    return sorted(str(path) for path in out.iterdir() if path.is_dir())


def test_ensemble_adds_a_method_per_actor_learner_of_two_or_more_runs(actor_runs, seeds_run_dir, compose_evaluate):
    value_based = sorted(str(path) for path in (seeds_run_dir.parent / "train").iterdir() if path.is_dir())[:2]
    config = EnvConfig(n_agents=3, dt_h=3.0, n_days=20)
    policies = load_policies(["grid_only"], actor_runs + value_based, env_config=config, ensemble=True)
    assert sorted({report.method_of(label) for label in policies}) == [
        "grid_only", "mappo", "mappo+ensemble", "qlearning"]  # Q-learning has no actor to average
    ensemble = policies["mappo+ensemble:2_runs"]
    assert ensemble.members == [policies["mappo:seed0"], policies["mappo:seed1"]]
    assert ensemble.observation_settings == ensemble.members[0].observation_settings  # observes as they trained
    days = np.array([0, 1])
    played = evaluate_policy(config, ensemble, days)
    assert np.all(np.isfinite(played["community_cost"]))
    wrapped = load_policies([], actor_runs, env_config=config, ensemble=True, truthful_bid=True)
    assert [label for label in wrapped if "ensemble" in label] == ["mappo+ensemble:2_runs"]  # of the runs alone
    filtered = load_policies([], actor_runs, env_config=config, ensemble=True, safety_filter=True)
    assert [label for label in filtered if "ensemble" in label] == [
        "mappo+ensemble:2_runs", "mappo+ensemble+safety_filter:2_runs"]
    twin = filtered["mappo+ensemble+safety_filter:2_runs"]
    assert isinstance(twin, SafetyFilter) and twin.policy is filtered["mappo+ensemble:2_runs"]
    assert twin.policy.members == [filtered["mappo:seed0"], filtered["mappo:seed1"]]
    narrow, every_day = config.replace(v_slack_pu=1.0, v_max_pu=1.005), np.arange(20)  # a band PV export leaves
    assert evaluate_policy(narrow, twin.policy, every_day)["violation_day"].any()
    assert not evaluate_policy(narrow, twin, every_day)["violation_day"].any() and twin.interventions > 0
    with pytest.raises(ConfigError, match=r"ensemble=true .* give none: their methods are \['mappo', 'qlearning'\]"):
        load_policies([], actor_runs[:1] + value_based[:1], env_config=config, ensemble=True)
    with pytest.raises(ConfigError, match=r"ensemble=true plays the mean .* checkpoints has 1"):
        to_evaluate_config(compose_evaluate("ensemble=true", f"checkpoints=[{actor_runs[0]}]"))


def test_one_actor_distilled_from_its_seeds_plays_closer_to_their_mean_than_a_fresh_one(actor_runs, seeds_run_dir,
                                                                                           tmp_path):
    from p2p_marl.evaluation import distil_seeds

    config = EnvConfig(n_agents=3, dt_h=3.0, n_days=20)
    ensemble = load_policies([], actor_runs, env_config=config, ensemble=True)["mappo+ensemble:2_runs"]
    saved = distil_seeds.saved_config(actor_runs[0])
    distilled, fit = distil_seeds.distilled_learner(saved, ensemble, 4, 1, 30, seed=3)
    fresh, _ = distil_seeds.distilled_learner(saved, ensemble, 4, 1, 1, seed=3)
    core = distilled.core
    obs = core.reset(seed=9)
    target = np.mean([member.box_point(obs) for member in ensemble.members], axis=0)
    errors = [np.mean((learner.policy().box_point(obs) - target) ** 2) for learner in (distilled, fresh)]
    assert errors[0] < 0.5 * errors[1]
    assert fit["imitation/samples"] == 2 * 4 * core.steps_per_episode * core.n_agents  # teacher's round + one DAgger

    distil_seeds.main([*actor_runs, "--days-per-round", "4", "--rounds", "1", "--epochs", "5", "--max-days", "2",
                       "--out", str(tmp_path)])  # on the runs' own community
    table = (tmp_path / "distil_seeds.md").read_text()
    assert [line.split(" | ")[0] for line in table.splitlines()[2:6]] == [
        "| mappo:seed0", "| mappo:seed1", "| mappo+ensemble:2_runs", "| distilled"]
    assert "validation days: share of optimal saving" in table and "fit to the ensemble" in table
    with pytest.raises(ConfigError, match="the checkpoints give none"):  # one run: no seeds to distil
        distil_seeds.distil_seeds(actor_runs[:1])
    q_learning = sorted(str(path) for path in (seeds_run_dir.parent / "train").iterdir() if path.is_dir())[0]
    with pytest.raises(ConfigError, match=r"one actor learner .* \['mappo', 'qlearning'\]"):  # a stray run
        distil_seeds.distil_seeds([*actor_runs, q_learning])


def test_distil_seeds_stops_on_bad_arguments_with_one_line(actor_runs):
    from p2p_marl.evaluation import distil_seeds

    with pytest.raises(SystemExit):
        distil_seeds.main([actor_runs[0], "--epochs", "0"])
    with pytest.raises(SystemExit, match="^distil_seeds: error: .*give none"):
        distil_seeds.main(actor_runs[:1])  # one run: nothing to distil
    with pytest.raises(SystemExit, match="^distil_seeds: error: .*does not exist"):
        distil_seeds.main([*actor_runs, "runs/no_such_run"])
