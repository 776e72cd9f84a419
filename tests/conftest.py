import csv
import importlib.util
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hypothesis import settings

from p2p_marl.sim.battery import end_settlement
from p2p_marl.sim.community import OBS_HIGH, OBS_LOW, CommunityCore
from p2p_marl.sim.profiles import ProfileSet

# Small MLPs and numpy batches run fastest single-threaded on a 2-core machine (see shared FACTS).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# A clean clone passes or fails the same way every time: each property test draws the examples a hash of the
# test gives (CI found two real-but-rare float examples only on some runs). To search for new failing examples,
# draw fresh ones: `python -m pytest --hypothesis-profile=explore`.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def meter_net_kwh(infos: dict[str, np.ndarray]) -> np.ndarray:
    """Each household's net energy at its meter in a step (kWh, > 0 imported) from the step's infos: load - PV +
    curtailed PV + battery charge - discharge."""
    return (infos["load_kwh"] - infos["pv_kwh"] + infos["pv_curtailed_kwh"] + infos["battery_charge_kwh"]
            - infos["battery_discharge_kwh"])


def run_evaluate(*overrides: str) -> subprocess.CompletedProcess:
    """``python evaluate.py`` with ``overrides`` in the repository's root, its output captured."""
    return subprocess.run([sys.executable, "evaluate.py", *overrides], cwd=CONFIG_DIR.parent, capture_output=True,
                          text=True, timeout=600)


def load_script(path: Path, name: str):
    """The Python script at ``path`` (``train.py``, a bench or an example: not a package module) loaded as module
    ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_cells(line: str) -> list[str]:
    """The stripped cells of one row of a Markdown table (``| a | b |``)."""
    return [cell.strip() for cell in line.strip("|").split("|")]


def compose_config(config_name: str, *overrides: str, hydra_config: bool = False):
    """``configs/<config_name>.yaml`` composed by Hydra as the script that reads it composes it (register the
    script's structured configs first)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=hydra_config)


def launch_twice_at_once(command: list[str], cwd: Path) -> None:
    """Start ``command`` twice at the same moment (a shell loop launching runs in the background) and check that
    both finish without error."""
    launches = [subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    for launch in launches:
        _, stderr = launch.communicate(timeout=300)
        assert launch.returncode == 0, stderr[-2000:]


def write_profile_csv(path, profiles: ProfileSet, year: int = 2023, shuffle: bool = False) -> None:
    """Write ``profiles`` in the profile CSV format (rows in a seeded random order with ``shuffle``)."""
    rows = []
    for d, day_of_year in enumerate(profiles.day_of_year):
        midnight = datetime(year, 1, 1) + timedelta(days=int(day_of_year))
        for t in range(profiles.steps_per_day):
            stamp = (midnight + timedelta(hours=t * profiles.dt_h)).isoformat()
            for n, household in enumerate(profiles.household_ids):
                rows.append([stamp, household, repr(float(profiles.load_kw[d, t, n])),
                             repr(float(profiles.pv_kw[d, t, n]))])
    if shuffle:
        random.Random(0).shuffle(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "household", "load_kw", "pv_kw"])
        writer.writerows(rows)


def assert_episode_invariants(core: CommunityCore, seed: int) -> None:
    """Play one episode of random (partly out-of-range) actions on ``core`` and check, at every step, the energy
    balance of every meter, the P2P market's energy and budget balance, prices within the tariffs, SoC bounds
    and stored energy, and the bill's parts."""
    cfg = core.config
    rng = np.random.default_rng(seed)
    shape = (core.batch_size, core.n_agents)
    obs = core.reset(seed=seed)
    total_cost = 0.0
    cfg = core.config
    rng = np.random.default_rng(seed)
    obs = core.reset(seed=seed)
    total_cost = 0.0
    while not core.done:
        assert np.all(obs >= OBS_LOW) and np.all(obs <= OBS_HIGH)
        actions = np.stack([rng.uniform(-1.5, 1.5, shape), rng.uniform(-0.2, 1.2, shape),
                            rng.uniform(-0.2, 1.2, shape)], axis=-1)
        energy_before = core.energy_kwh.copy()
        obs, reward, done, info = core.step(actions)
        assert np.all(info["pv_curtailed_kwh"] >= 0) and np.all(info["pv_curtailed_kwh"] <= info["pv_kwh"] + 1e-12)
        net = meter_net_kwh(info)
        # Energy balance at every meter.
        supply = info["p2p_buy_kwh"] - info["p2p_sell_kwh"] + info["grid_import_kwh"] - info["grid_export_kwh"]
        np.testing.assert_allclose(net, supply, atol=1e-9)
        for key in ("p2p_buy_kwh", "p2p_sell_kwh", "grid_import_kwh", "grid_export_kwh", "penalty"):
            assert np.all(info[key] >= 0), key
        # P2P energy and money balance within each community.
        np.testing.assert_allclose(info["p2p_buy_kwh"].sum(1), info["p2p_sell_kwh"].sum(1), atol=1e-9)
        np.testing.assert_allclose(info["p2p_payment"].sum(1), info["p2p_revenue"].sum(1), atol=1e-9)
        # Prices stay within the grid's tariffs.
        for key in ("bid_price", "clearing_price"):
            assert np.all(info[key] >= info["feed_in_price"] - 1e-12) and np.all(info[key] <= info["retail_price"] + 1e-12)
        # Battery: SoC bounds and stored energy = before + efficiency-weighted flows.
        assert np.all(info["soc"][:, core.has_battery] >= cfg.soc_min - 1e-9)
        assert np.all(info["soc"] <= cfg.soc_max + 1e-9)
        expected = energy_before + (cfg.charge_efficiency * info["battery_charge_kwh"]
                                    - info["battery_discharge_kwh"] / cfg.discharge_efficiency)
        np.testing.assert_allclose(core.energy_kwh, expected, atol=1e-9)
        # The bill is made of its documented parts, and rewards are its negative. Stored energy is settled
        # against the episode's start at the last step, and only there.
        settlement = end_settlement(core.start_energy_kwh, core.energy_kwh, core.battery,
                                    core.end_refill_price_per_kwh, core.end_surplus_price_per_kwh)
        np.testing.assert_allclose(info["end_settlement"], settlement if done else 0.0, atol=1e-12)
        bill = (info["grid_import_kwh"] * info["retail_price"] - info["grid_export_kwh"] * info["feed_in_price"]
                + info["p2p_payment"] - info["p2p_revenue"] + info["degradation_cost"] + info["penalty"]
                + info["end_settlement"])
        np.testing.assert_allclose(info["cost"], bill, atol=1e-12)
        np.testing.assert_allclose(reward, -info["cost"], atol=1e-12)
        total_cost += info["cost"].sum()
    assert np.isfinite(total_cost)
