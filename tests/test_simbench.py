"""SimBench LV grids as communities (p2p_marl.sim.simbench): the data that enters the environment is SimBench's
own, the feeder is the grid's and agrees with pandapower's AC power flow, and every preset is a valid
PettingZoo environment with the core's invariants."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from pettingzoo.test import parallel_api_test

simbench = pytest.importorskip("simbench")

import p2p_marl  # noqa: E402
from p2p_marl.config import SIMBENCH_LV_CODES, ConfigError, EnvConfig  # noqa: E402
from p2p_marl.sim.community import CommunityCore  # noqa: E402
from p2p_marl.sim.simbench import (ac_validation, extreme_steps, simbench_community,  # noqa: E402
                                   simbench_net)

from conftest import assert_episode_invariants, load_script, run_evaluate, table_cells  # noqa: E402
from test_optimal import act_out  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "env"
PRESETS = sorted(path.stem for path in CONFIGS.glob("simbench_*.yaml"))
SCENARIO_0_GRIDS = [code for code in SIMBENCH_LV_CODES if code.endswith("--0-sw")]
# LinDistFlow against AC at each grid's most extreme quarter hours: 1 % of the 0.1 p.u. voltage band (a bus is
# misjudged only within 0.001 p.u. of a limit), and 1 % of a rating for the flows. Measured worst cases: 0.0005
# p.u. and 0.26 % (README, "SimBench feeders"); the neglected terms are second order in drops below 0.03 p.u.
AC_VOLTAGE_TOLERANCE_PU = 1e-3
AC_LOADING_TOLERANCE_PCT = 1.0
# The presets' 2024/2034 scenarios export more PV: drops up to 0.034 p.u., and the neglected terms grow with the
# square of the drop (worst measured 0.0028 p.u. and 1.2 % on 1-LV-rural1--2-sw, bench/simbench_ac.py).
PRESET_AC_VOLTAGE_TOLERANCE_PU = 3e-3
PRESET_AC_LOADING_TOLERANCE_PCT = 1.5


def preset_keys(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def preset(name: str, **overrides) -> EnvConfig:
    return EnvConfig(**{**preset_keys(name), **overrides})


RURAL = preset("simbench_rural1")


def test_presets_cover_a_rural_a_semi_urban_and_an_urban_grid():
    codes = [preset(name).simbench_code for name in PRESETS]
    assert any("rural" in code for code in codes) and any("semiurb" in code for code in codes)
    assert any("urban6" in code for code in codes)


@pytest.mark.parametrize("dt_h", [0.25, 0.5, 1.0])
def test_the_profiles_in_the_env_are_simbench_absolute_values(dt_h):
    """What the environment meters on a day equals SimBench's own absolute values of every household load and PV
    unit (MW -> kW), averaged over the step when the step is longer than SimBench's 15 minutes; the passive loads'
    profiles are their load less the PV at them."""
    config = RURAL.replace(dt_h=dt_h)
    net = simbench_net(config.simbench_code)
    values = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    quarter_hours = round(dt_h / 0.25)
    core = CommunityCore(config)
    community = simbench_community(config.simbench_code, dt_h)
    households, passive = community.household_load, community.passive_load
    for day in (0, 172, 365):  # New Year, midsummer, the leap year's last day
        core.reset(days=np.array([day]))
        metered_kwh = []
        while not core.done:
            metered_kwh.append(core.step(np.zeros((1, core.n_agents, 3)))[3])
        rows = slice(day * 96, (day + 1) * 96)

        def step_mean_kw(frame):
            array = frame.to_numpy()[rows] * 1e3
            return array.reshape(-1, quarter_hours, array.shape[1]).mean(axis=1)

        load_kw, load_kvar = step_mean_kw(values[("load", "p_mw")]), step_mean_kw(values[("load", "q_mvar")])
        metered_load_kw = np.stack([info["load_kwh"][0] for info in metered_kwh]) / dt_h
        pv_kw = np.stack([info["pv_kwh"][0] for info in metered_kwh]) / dt_h
        np.testing.assert_allclose(metered_load_kw, load_kw[:, households], rtol=1e-12, atol=1e-12)
        sgen_kw = step_mean_kw(values[("sgen", "p_mw")])
        expected_pv_kw = np.zeros((pv_kw.shape[0], len(net.load)))
        load_bus = net.load.bus.to_numpy()
        for sgen, household in enumerate(community.sgen_household):
            owner = households[household] if household >= 0 else passive[load_bus[passive] == net.sgen.bus[sgen]][0]
            expected_pv_kw[:, owner] += sgen_kw[:, sgen]
        np.testing.assert_allclose(pv_kw, expected_pv_kw[:, households], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(core.profiles.load_kvar[day], load_kvar[:, households], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(core.profiles.passive_kw[day], (load_kw - expected_pv_kw)[:, passive],
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(core.profiles.passive_kvar[day], load_kvar[:, passive], rtol=1e-12, atol=1e-12)


def test_households_pv_and_feeder_come_from_the_grid():
    community = simbench_community(RURAL.simbench_code, RURAL.dt_h)
    net = simbench_net(RURAL.simbench_code)
    feeder = community.feeder
    # The households (H0 and heat pumps) are the agents; the agricultural loads (L1, L2 profiles) are passive.
    assert sorted([*community.household_load, *community.passive_load]) == list(range(len(net.load)))
    assert community.n_households == RURAL.n_agents == 18 and feeder.n_passive == 10
    assert all(kind[0] == "L" for kind in community.passive_profile_types)
    assert not any(kind[0] in "GL" for kind in community.load_profile_types)
    # Every load sits at its bus, every PV unit at its owner's bus, preferably a household (H0).
    load_bus = net.load.bus.to_numpy()
    np.testing.assert_array_equal(community.bus_index[feeder.household_bus], load_bus[community.household_load])
    np.testing.assert_array_equal(community.bus_index[feeder.passive_bus], load_bus[community.passive_load])
    owned = community.sgen_household >= 0
    np.testing.assert_array_equal(load_bus[community.household_load[community.sgen_household[owned]]],
                                  net.sgen.bus[owned])
    types = np.array(community.load_profile_types)
    for bus, owner in zip(net.sgen.bus[owned], community.sgen_household[owned]):
        households_at_bus = load_bus[community.household_load[np.char.startswith(types, "H0")]] == bus
        assert types[owner].startswith("H0") or not households_at_bus.any()
    # A PV unit is passive only where no household shares its bus.
    agent_buses = set(load_bus[community.household_load].tolist())
    assert not set(net.sgen.bus[~owned].tolist()) & agent_buses
    assert community.profiles.has_pv.sum() == len(set(community.sgen_household[owned].tolist()))
    # Every line once, with its length, impedance and rating; the transformer's rating and impedance.
    assert sorted(community.line_index.tolist()) == sorted(net.line.index.tolist())
    lines = net.line.loc[community.line_index]
    np.testing.assert_allclose(community.line_km, lines.length_km)
    np.testing.assert_allclose(feeder.r_ohm, lines.r_ohm_per_km * lines.length_km)
    np.testing.assert_allclose(feeder.line_rating_kva, np.sqrt(3) * 0.4 * lines.max_i_ka * 1e3)
    trafo = net.trafo.iloc[0]
    assert feeder.transformer_kva == pytest.approx(trafo.sn_mva * 1e3)
    assert feeder.transformer_r_ohm == pytest.approx(trafo.vkr_percent / 100 * 0.4**2 / trafo.sn_mva)
    assert 0 < community.feeder_length_km <= community.line_km.sum()


def test_passive_loads_load_the_feeder_as_the_same_loads_would_as_idle_agents():
    """LinDistFlow is linear, so the passive loads superposed on the households give the feeder exactly the
    voltages, flows and losses of a community in which every load is an agent and the former passive ones stay
    idle (no battery, no curtailment), while the market and the bills are the households' alone."""
    households = CommunityCore(RURAL)
    every_load = CommunityCore(RURAL.replace(simbench_agents="all_loads", n_agents=28))
    community = simbench_community(RURAL.simbench_code, RURAL.dt_h)
    assert every_load.profiles.has_pv[community.passive_load].sum() > 0  # passive PV is in the comparison too
    for core in (households, every_load):
        core.reset(days=np.array([172]))
    idle = np.zeros((1, every_load.n_agents, 3))
    while not households.done:
        _, _, _, infos = households.step(np.zeros((1, households.n_agents, 3)))
        _, _, _, every_infos = every_load.step(idle)
        for key in ("feeder_loss_kwh", "feeder_undervoltage_pu", "feeder_overvoltage_pu", "feeder_overload_kva"):
            np.testing.assert_allclose(infos[key][0, 0], every_infos[key][0, 0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(infos["voltage_pu"], every_infos["voltage_pu"][:, community.household_load],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(infos["grid_import_kwh"].sum() - infos["grid_export_kwh"].sum(),
                                   (infos["load_kwh"] - infos["pv_kwh"]).sum(), atol=1e-9)


def test_pv_scale_multiplies_every_pv_profile():
    base = simbench_community(RURAL.simbench_code, RURAL.dt_h)
    doubled = CommunityCore(RURAL.replace(simbench_pv_scale=2.0)).profiles
    np.testing.assert_allclose(doubled.pv_kw, 2.0 * base.profiles.pv_kw, rtol=1e-15)
    np.testing.assert_array_equal(doubled.load_kw, base.profiles.load_kw)


@pytest.mark.parametrize("code, voltage_tolerance_pu, loading_tolerance_pct", [
    *[(code, AC_VOLTAGE_TOLERANCE_PU, AC_LOADING_TOLERANCE_PCT) for code in SCENARIO_0_GRIDS],
    *[(preset(name).simbench_code, PRESET_AC_VOLTAGE_TOLERANCE_PU, PRESET_AC_LOADING_TOLERANCE_PCT)
      for name in PRESETS]])
def test_lindistflow_matches_pandapower_ac_on_every_simbench_lv_grid(code, voltage_tolerance_pu,
                                                                        loading_tolerance_pct):
    """SimBench's own net under pandapower's AC power flow, at the year's highest export (sunny noon) and
    highest load (winter evening), against the LinDistFlow feeder built from it (passive loads included)."""
    for step in extreme_steps(code).values():
        comparison = ac_validation(code, step)
        assert comparison.voltage_error_pu < voltage_tolerance_pu, comparison
        assert comparison.loading_error_pct < loading_tolerance_pct, comparison
        assert comparison.max_voltage_drop_pu > 10 * comparison.voltage_error_pu, comparison  # not a no-load case


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_a_pettingzoo_parallel_env(name):
    parallel_api_test(p2p_marl.parallel_env(**preset_keys(name), max_cycles=8), num_cycles=20)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_keeps_the_core_invariants(name):
    assert_episode_invariants(CommunityCore(preset(name), batch_size=4), seed=0)


def test_the_optimum_acts_out_at_its_lp_cost_on_a_simbench_grid():
    """The LP and the environment see the same per-household reactive power, so the environment charges the
    optimal schedule exactly its LP cost (with network penalties where the feeder binds)."""
    core = CommunityCore(RURAL)
    act_out(RURAL, core.test_days[:3])


def test_without_simbench_the_reactive_load_follows_the_power_factor():
    core = CommunityCore(EnvConfig(n_agents=3, n_days=5))
    load_kw = core.profiles.load_kw[1, 2:5]
    assert core.profiles.load_kvar is None
    np.testing.assert_array_equal(core.reactive_kvar(load_kw, 1, slice(2, 5)), load_kw * core.q_per_p)


@pytest.mark.parametrize("overrides, message", [
    (dict(simbench_code="1-LV-rural9--0-sw"), "simbench_code='1-LV-rural9--0-sw' is not a SimBench LV grid"),
    (dict(data_csv="homes.csv"), "choose one source of profiles"),
    (dict(dt_h=0.2), "dt_h=0.2 must be a multiple of SimBench's 15-minute step"),
    (dict(segment_km=0.1), "segment_km=0.1 applies to the synthetic community only"),
    (dict(prosumer_share=0.3), "prosumer_share=0.3 applies to the synthetic community only"),
])
def test_bad_simbench_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        preset("simbench_rural1", **overrides)


def test_pv_scale_without_a_grid_is_an_error():
    with pytest.raises(ConfigError, match="simbench_pv_scale=2.0 applies to SimBench grids only"):
        EnvConfig(simbench_pv_scale=2.0)


def test_n_agents_must_match_the_grids_agent_loads():
    with pytest.raises(ConfigError, match=r"n_agents=10 but simbench_code='1-LV-rural1--2-sw' with simbench_agents="
                                          r"'households' has 18 agent loads"):
        CommunityCore(RURAL.replace(n_agents=10))
    with pytest.raises(ConfigError, match=r"simbench_agents='all_loads' has 28 agent loads"):
        CommunityCore(RURAL.replace(simbench_agents="all_loads"))


@pytest.mark.parametrize("overrides, message", [
    (dict(simbench_agents="everyone"), "simbench_agents='everyone' is not allowed; choose one of"),
    (dict(simbench_code=None, n_agents=10, simbench_agents="all_loads"),
     "simbench_agents='all_loads' applies to SimBench grids only"),
])
def test_bad_simbench_agents_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        preset("simbench_rural1", **overrides)


def test_a_missing_simbench_package_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "simbench", None)  # import simbench raises ImportError
    with pytest.raises(ConfigError, match=r"needs the simbench package: pip install -e \"\.\[simbench\]\""):
        simbench_net.__wrapped__(RURAL.simbench_code)  # past the cache, which may hold the net already


def test_the_readme_table_of_a_preset_comes_from_its_evaluation(tmp_path, capsys):
    done = run_evaluate("env=simbench_rural1", "max_days=1", "tensorboard=false",
                        "methods=[grid_only,mpc_household,optimal]", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    load_script(CONFIGS.parents[1] / "bench" / "simbench_table.py", "simbench_table").main([str(tmp_path)])
    header, _, row = capsys.readouterr().out.splitlines()
    columns = dict(zip(table_cells(header), table_cells(row)))
    assert [columns[key] for key in ("grid", "agents", "passive loads", "PV", "batteries", "test days")] == [
        "1-LV-rural1--2-sw", "18", "10", "6", "6", "1"]
    share = json.loads((tmp_path / "summary.json").read_text())["mpc_household"]["share_of_optimal_saving"]["mean"]
    assert columns["mpc_household"] == f"{share:.2f}" and share <= 1.0  # the optimum bounds every share
    assert columns["mpc_persistence"] == "–"  # not evaluated
