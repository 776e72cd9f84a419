"""The batched community simulator: B communities of N households advanced together, one settlement period a step.

This is the only place where the physics and the market are put together; every environment view
(PettingZoo, AEC, gymnasium, vector) and every learner runs on it.

One step of ``dt_h`` hours, for every household i of every community b:

1. The battery setpoint ``action[..., 0] * battery_kw`` is clipped to power and SoC limits. The PV inverter
   spills ``curtailed_kw = action[..., 2] * pv_kw`` (a share of the available PV; 0 uses it all), so that a
   household can keep its export off a full feeder. With ``safety_filter`` the feeder's safety filter then moves
   the battery power and curtailment of a community whose step would leave the feeder's limits by the least it
   takes to keep it within them (``p2p_marl.sim.safety_filter``; infos ``safety_filter_kwh``), and the step
   settles what it lets through.
2. Net energy at the meter: ``net_kwh = (load_kw - pv_kw + curtailed_kw + charge_kw - discharge_kw) * dt_h``
   (> 0 buys, < 0 sells). The limit price is ``feed_in + action[..., 1] * (retail - feed_in)``.
3. The double auction clears the net positions; what does not clear settles with the grid:
   ``grid_import_kwh = max(net_kwh, 0) - p2p_buy_kwh`` at the retail price and
   ``grid_export_kwh = max(-net_kwh, 0) - p2p_sell_kwh`` at the feed-in tariff.
4. LinDistFlow gives bus voltages and line/transformer loadings from the net power (load reactive power
   from ``load_power_factor``), plus the feeder's passive loads where it has them (a SimBench grid's commercial
   and agricultural loads: their profiles' power, at their buses, outside the market). Network penalties
   (money):

       import-side = (voltage_penalty_per_pu_h * undervoltage_pu + overload_penalty_per_kvah * overload_kva
                      on elements carrying power towards the households) * dt_h
       export-side = the same with overvoltage and elements carrying power towards the substation

   The import-side penalty is shared among the net importers in proportion to their import, the export-side
   one among the net exporters in proportion to their export (equally, if nobody is on that side).
5. Cost (money, the negative of the reward with ``cooperative_weight = 0``):

       cost = grid_import_kwh * retail - grid_export_kwh * feed_in + p2p_payment - p2p_revenue
              + degradation_cost_per_kwh * (charge_kw + discharge_kw) * dt_h + penalty
              + end_settlement (last step of the episode only)

   Stored energy is not free: at the end of the episode each battery settles the change of its stored energy
   against the episode's start (``settle_end_energy``). A shortfall is bought back, a surplus sold:

       end_settlement = end_refill_price_per_kwh / charge_efficiency * max(start_kwh - end_kwh, 0)
                        - end_surplus_price_per_kwh * discharge_efficiency * max(end_kwh - start_kwh, 0)

   with the day's highest retail price and the feed-in tariff by default. A stored kWh displaces at most
   ``retail_peak * discharge_efficiency`` of imports, less than refilling it costs, so draining the start
   energy never pays; and a kWh left over is worth what exporting it would earn, no more.

   With a network charge on P2P trades (``p2p_fee_per_kwh > 0``, see ``p2p_marl.sim.fees``) the cost adds each
   household's fee, ``p2p_fee``; the infos also report the feeder's line losses ``feeder_loss_kwh`` (the
   I^2 R estimate from the step's flows, ``p2p_marl.sim.feeder.line_losses_kw``), which nobody is billed for.

   With loss allocation (``loss_allocation``, see ``p2p_marl.sim.fees``) each household's cost adds its
   ``loss_charge``: its share of the losses, at the step's retail price, paid to the utility.

   reward = -((1 - w) * cost + w * mean(cost over the community)), w = ``cooperative_weight``; the sum of the
   rewards is the negative community cost whatever w is.

Shared community battery (``shared_battery_kwh`` > 0; none by default, when nothing above changes): one more
battery per community, at feeder bus ``shared_battery_bus`` (0 = the transformer's LV busbar), with the
households' efficiencies, SoC bounds, start SoC (drawn like theirs on training days), wear cost and end-of-day
settlement, clipped by the same ``feasible_power``. It is one more participant of the step:

* Its setpoint comes from the caller's ``operator_action`` (B, 2) = (setpoint share in [-1, 1] of
  ``shared_battery_kw``, limit price share in [0, 1]), or, without one, from its rule: charge the community's
  surplus and discharge into its deficit, ``setpoint = -sum_n net_kw`` (the households' net after their own
  batteries), discharging no further than its start energy (draining that never pays: the end-of-day
  settlement buys it back at the day's highest retail price); bidding retail while it charges and asking
  feed-in while it discharges (share 1 / 0).
  ``shared_battery_control="operator"`` makes the PettingZoo/AEC views expose a ``community_operator`` agent
  whose action this is; the perfect-foresight optimum and MPC pass the dispatch they plan.
* Its net power ``charge - discharge`` enters the power flow at its bus and the market as one more order:
  it buys and sells P2P at the clearing rule's prices, settles the rest with the grid at retail / feed-in and
  pays P2P fees like a household (``p2p_marl.sim.fees``). The network penalty and loss charges stay with
  the households.
* Its bill, ``shared_battery_bill`` = grid import * retail - grid export * feed-in + net P2P payment + fee +
  wear + end settlement, is the community's: each household's cost carries ``shared_battery_bill / N`` (the
  battery is owned in equal shares). Money stays budget-balanced: the households' P2P payments net of
  receipts plus the battery's are zero, and the community's summed cost is what leaves it (grid bills of the
  households and the battery, fees, wear, penalties, settlements, loss charges).

Its infos (``SHARED_BATTERY_INFO_KEYS``, repeated over the households like the other community values) appear
only when it exists, as ``LOSS_INFO_KEYS`` appear only with loss allocation and ``SAFETY_FILTER_INFO_KEYS`` only
with the safety filter: ``core.info_keys`` lists a core's.

Observations are local and normalised into finite bounds (see ``OBS_FEATURES``): the step being settled is
metered, later steps come from the configured forecaster (``p2p_marl.sim.forecasts``; persistence by default,
so nothing from the future). ``state()`` is the global state for centralised critics, with the same forecasts.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

import numpy as np

from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.auction import BUY, SELL, SIDE_SIGN, clear_sides
from p2p_marl.sim.battery import BatteryParams, end_settlement, feasible_power, next_energy
from p2p_marl.sim.feeder import Feeder, flow_rows, line_losses_kw, power_flow_arrays, radial_feeder
from p2p_marl.sim.safety_filter import filtered_power
from p2p_marl.sim.fees import fee_matrix_per_kwh, loss_charges, p2p_fees
from p2p_marl.sim.forecasts import build_forecaster, observation_table
from p2p_marl.sim.profiles import ProfileSet, load_csv_profiles, split_days, synthetic_profiles
from p2p_marl.sim.simbench import SimbenchCommunity, simbench_community
from p2p_marl.sim.tariffs import end_settlement_prices, time_of_use_prices

# Local observation of one agent, all in [low, high] below.
OBS_FEATURES = (
    "time_sin",  # time of day of the step about to be settled
    "time_cos",
    "load",  # this step's load / power_scale_kw (metered while the step is dispatched)
    "pv",  # this step's PV / power_scale_kw
    "soc",  # fraction of capacity; 0 without a battery
    "has_battery",
    "retail_price",  # / price_scale_per_kwh
    "feed_in_price",
    "next_retail_price",  # the tariff is published in advance
    "last_clearing_price",
    "voltage_deviation",  # (own bus voltage at the last step - 1) / 0.1, clipped to [-1, 1]
    # Forecasts from the configured forecaster (p2p_marl.sim.forecasts), / power_scale_kw, 0 at the episode's end:
    "next_load",  # own load forecast of the next step
    "next_pv",
    "load_ahead",  # own mean load forecast over the next forecast_horizon_h (the window cut at the episode's end)
    "pv_ahead",
    "community_load_ahead",  # community mean of load_ahead
    "community_pv_ahead",
    "community_net",  # last step's mean net power / (2 * power_scale_kw), clipped to [-1, 1]
    "soc_start",  # SoC at the episode's start: the level the end-of-day settlement is measured against
)  # then, with forecast_bins = K > 0, load_bin_1 .. load_bin_K, pv_bin_1 .. pv_bin_K, then the configured
# extra_features (EXTRA_FEATURES): see observation_features
OBS_LOW = np.array([-1, -1, 0, 0, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, -1, 0], dtype=np.float64)
OBS_HIGH = np.ones(len(OBS_FEATURES), dtype=np.float64)
# Global state = shared features once + per-agent features for every agent.
STATE_SHARED = tuple(OBS_FEATURES.index(f) for f in
                     ("time_sin", "time_cos", "retail_price", "feed_in_price", "next_retail_price",
                      "last_clearing_price", "community_load_ahead", "community_pv_ahead", "community_net"))
STATE_PER_AGENT = tuple(OBS_FEATURES.index(f) for f in
                        ("load", "pv", "soc", "has_battery", "voltage_deviation", "next_load", "next_pv",
                         "load_ahead", "pv_ahead", "soc_start"))


def observation_features(config: EnvConfig) -> tuple[str, ...]:
    """The names of a local observation's features in order: OBS_FEATURES, then with ``forecast_bins`` K > 0
    the forecast window's profile, the household's mean load forecast over each K-th of the window
    (``load_bin_1`` the nearest) and then its PV's, / power_scale_kw in [0, 1] (p2p_marl.sim.forecasts), then
    the ``extra_features`` (p2p_marl.config.EXTRA_FEATURES: the households' battery SoCs, the household's place
    on the feeder and the feeder's loading, each one number; the community's forecast window, 2 K numbers)."""
    bins = range(1, config.forecast_bins + 1)
    extra = []
    for name in config.extra_features:
        if name == "community_window":
            extra += [f"community_{kind}_bin_{k}" for kind in ("load", "pv") for k in bins]
        else:
            extra.append(name)
    return (OBS_FEATURES + tuple(f"load_bin_{k}" for k in bins) + tuple(f"pv_bin_{k}" for k in bins)
            + tuple(extra))


# Per agent: battery setpoint share in [-1, 1], limit price share in [0, 1], PV curtailment share in [0, 1].
ACTION_LOW = np.array([-1.0, 0.0, 0.0])
ACTION_HIGH = np.array([1.0, 1.0, 1.0])
ACTION_DIM = len(ACTION_LOW)
REAL_KINDS = "biuf"  # numpy dtype kinds an action may be made of: bool, signed and unsigned integers, floats

INFO_KEYS = (
    "load_kwh", "pv_kwh", "pv_curtailed_kwh", "battery_charge_kwh", "battery_discharge_kwh", "soc", "bid_price",
    "p2p_buy_kwh", "p2p_sell_kwh", "p2p_payment", "p2p_revenue", "grid_import_kwh", "grid_export_kwh",
    "clearing_price", "retail_price", "feed_in_price", "degradation_cost", "penalty", "end_settlement", "cost",
    "voltage_pu", "p2p_fee", "feeder_loss_kwh",
    "feeder_undervoltage_pu", "feeder_overvoltage_pu", "feeder_overload_kva",
)
FEEDER_KPI_KEYS = INFO_KEYS[-3:]  # the per-community feeder KPIs, in the order _network_penalty returns them
# The shared community battery's step (community values, repeated over the households): energies in kWh, its
# SoC, its net P2P payment (paid - received) and fee, and its bill (money), of which each household pays 1 / N.
SHARED_BATTERY_INFO_KEYS = (
    "shared_battery_charge_kwh", "shared_battery_discharge_kwh", "shared_battery_soc", "shared_battery_p2p_buy_kwh",
    "shared_battery_p2p_sell_kwh", "shared_battery_p2p_payment", "shared_battery_grid_import_kwh",
    "shared_battery_grid_export_kwh", "shared_battery_p2p_fee", "shared_battery_bill",
)
LOSS_INFO_KEYS = ("loss_charge",)  # each household's charge for the feeder's losses (money), within its cost
# With the safety filter (EnvConfig.safety_filter): how much it moved the household's battery energy and curtailed PV
# this step (kWh, |change of battery energy| + |change of curtailed energy|); 0 where the step was within the limits.
SAFETY_FILTER_INFO_KEYS = ("safety_filter_kwh",)
# The community operator's action (shared_battery_control="operator"): setpoint share, limit price share.
OPERATOR_ACTION_LOW = np.array([-1.0, 0.0])
OPERATOR_ACTION_HIGH = np.array([1.0, 1.0])


def build_profiles(cfg: EnvConfig) -> ProfileSet:
    """The configured profiles: the SimBench grid's or the CSV file's if given, else the seeded synthetic year."""
    if cfg.simbench_code is not None:
        return simbench_community_of(cfg).profiles
    if cfg.data_csv is not None:
        profiles = load_csv_profiles(cfg.data_csv, cfg.dt_h)
        if profiles.n_households != cfg.n_agents:
            raise ConfigError(f"n_agents={cfg.n_agents} but {cfg.data_csv} holds {profiles.n_households} households; "
                              "set n_agents to match the file")
        return profiles
    return synthetic_profiles(cfg.n_agents, cfg.dt_h, n_days=cfg.n_days, prosumer_share=cfg.prosumer_share,
                              seed=cfg.community_seed)


def build_feeder(cfg: EnvConfig) -> Feeder:
    if cfg.simbench_code is not None:
        return simbench_community_of(cfg).feeder
    return radial_feeder(cfg.n_agents, n_laterals=cfg.n_laterals, segment_km=cfg.segment_km,
                         r_ohm_per_km=cfg.r_ohm_per_km, x_ohm_per_km=cfg.x_ohm_per_km,
                         line_rating_kva=cfg.line_rating_kva, transformer_kva=cfg.transformer_kva,
                         v_nominal_kv=cfg.v_nominal_kv, v_slack_pu=cfg.v_slack_pu)


def simbench_community_of(cfg: EnvConfig) -> SimbenchCommunity:
    """The configured SimBench grid (cached per code, dt_h, PV scale and agents); n_agents must match its agent
    loads."""
    community = simbench_community(cfg.simbench_code, cfg.dt_h, cfg.simbench_pv_scale, cfg.simbench_agents)
    if community.n_households != cfg.n_agents:
        raise ConfigError(f"n_agents={cfg.n_agents} but simbench_code={cfg.simbench_code!r} with simbench_agents="
                          f"{cfg.simbench_agents!r} has {community.n_households} agent loads; set n_agents to match")
    return community


class CommunityCore:
    """B communities of the same households, each on its own day, stepping in lockstep."""

    def __init__(self, config: EnvConfig, batch_size: int = 1, profiles: ProfileSet | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.config = cfg = config
        self.batch_size = batch_size
        self.n_agents = cfg.n_agents
        self.dt_h = cfg.dt_h
        self.steps_per_episode = cfg.steps_per_episode
        self.profiles = profiles if profiles is not None else build_profiles(cfg)
        if self.profiles.steps_per_day != cfg.steps_per_day:
            raise ConfigError(f"profiles have {self.profiles.steps_per_day} steps a day but dt_h={cfg.dt_h} "
                              f"needs {cfg.steps_per_day}")
        if cfg.day is not None and cfg.day >= self.profiles.n_days:
            raise ConfigError(f"day={cfg.day} is out of range; allowed [0, {self.profiles.n_days - 1}]")
        self.train_days, self.validation_days, self.test_days = split_days(
            self.profiles.n_days, cfg.test_share, cfg.community_seed, cfg.validation_share)
        self.split_days = {"train": self.train_days, "validation": self.validation_days, "test": self.test_days,
                           "all": np.arange(self.profiles.n_days)}

        self.has_battery = self.profiles.has_pv.astype(bool)
        self.battery = BatteryParams(
            capacity_kwh=np.where(self.has_battery, cfg.battery_kwh, 0.0),
            max_kw=np.where(self.has_battery, cfg.battery_kw, 0.0),
            charge_efficiency=cfg.charge_efficiency, discharge_efficiency=cfg.discharge_efficiency,
            soc_min=cfg.soc_min, soc_max=cfg.soc_max)
        self.feeder = build_feeder(cfg)
        if self.feeder.n_passive != self.profiles.n_passive:
            raise ConfigError(f"the feeder has {self.feeder.n_passive} passive loads but the profiles "
                              f"{self.profiles.n_passive}; give profiles that match the configured feeder")
        self.has_shared_battery = cfg.shared_battery_kwh > 0
        if cfg.shared_battery_bus >= self.feeder.n_bus:
            raise ConfigError(f"shared_battery_bus={cfg.shared_battery_bus} is out of range; allowed [0, "
                              f"{self.feeder.n_bus - 1}] (the feeder's buses, 0 = the transformer's LV busbar)")
        self.shared_battery = BatteryParams(
            capacity_kwh=np.array([cfg.shared_battery_kwh]), max_kw=np.array([cfg.shared_battery_kw]),
            charge_efficiency=cfg.charge_efficiency, discharge_efficiency=cfg.discharge_efficiency,
            soc_min=cfg.soc_min, soc_max=cfg.soc_max)
        # The power flow's and the market's participants: the households, then the shared battery if there is one.
        self.flow_rows = flow_rows(self.feeder, (cfg.shared_battery_bus,) if self.has_shared_battery else ())
        self.p2p_fee_matrix_per_kwh = fee_matrix_per_kwh(self.feeder, cfg.p2p_fee_per_kwh, cfg.p2p_fee_basis,
                                                         self.flow_rows)
        self.info_keys = (INFO_KEYS + (SHARED_BATTERY_INFO_KEYS if self.has_shared_battery else ())
                          + (LOSS_INFO_KEYS if cfg.loss_allocation != "none" else ())
                          + (SAFETY_FILTER_INFO_KEYS if cfg.safety_filter else ()))
        self.retail_per_kwh, self.feed_in_per_kwh = time_of_use_prices(cfg)
        self.end_refill_price_per_kwh, self.end_surplus_price_per_kwh = end_settlement_prices(
            cfg, self.retail_per_kwh, self.feed_in_per_kwh)
        self.q_per_p = math.tan(math.acos(cfg.load_power_factor))
        self.power_scale_kw = float(max(self.profiles.load_kw.max(), self.profiles.pv_kw.max(), 1e-6))
        self.price_scale_per_kwh = float(max(self.retail_per_kwh.max(), 1e-9))
        self.obs_features = observation_features(cfg)
        self.obs_dim = len(self.obs_features)
        # Bounds of each feature: the forecast profile's and the extra features, after the named ones, are in [0, 1].
        self.obs_low = np.concatenate([OBS_LOW, np.zeros(self.obs_dim - len(OBS_FEATURES))])
        self.obs_high = np.ones(self.obs_dim)
        self._bins_end = len(OBS_FEATURES) + 2 * cfg.forecast_bins  # the extra features follow the bins
        # Where the community's forecast window is observed (extra_features community_window), or None.
        self._community_window = (slice(self.obs_features.index("community_load_bin_1"),
                                        self.obs_features.index("community_load_bin_1") + 2 * cfg.forecast_bins)
                                  if "community_window" in cfg.extra_features else None)
        self._loading_column = (self.obs_features.index("feeder_loading") if "feeder_loading" in cfg.extra_features
                                else None)
        self._soc_feature_columns = [(self.obs_features.index(name), name) for name in cfg.extra_features
                                     if name in ("community_soc", "community_soc_spread")]
        # The state leaves the extra features out: it holds every household's SoC, and its per-household layout
        # tells a critic who is where on the feeder.
        self._state_per_agent = STATE_PER_AGENT + tuple(range(len(OBS_FEATURES), self._bins_end))
        self.state_dim = len(STATE_SHARED) + len(self._state_per_agent) * self.n_agents

        # Per-step constants, computed once. For a single community a step costs the number of numpy calls,
        # not arithmetic, so whatever does not change between steps is not recomputed there.
        self._retail_steps = self.retail_per_kwh.tolist()  # Python floats: cheapest to combine with arrays
        self._feed_in_steps = self.feed_in_per_kwh.tolist()
        # (steps_per_day, 2, B): the retail and feed-in price of each step, one row each for every community.
        self._tariff_rows_per_kwh = np.repeat(np.stack([self.retail_per_kwh, self.feed_in_per_kwh], axis=1)[:, :, None],
                                              batch_size, axis=2)
        # Voltage band per side (BUY: undervoltage below v_min, SELL: overvoltage above v_max), see _network_penalty.
        self._voltage_band_pu = np.array([cfg.v_min_pu, cfg.v_max_pu])[:, None, None]
        self._obs_template = self._observation_template()
        # Load and PV of every day and step side by side, (n_days, steps_per_day, 2, N), so that one gather
        # fetches both for the step, in kW.
        self.forecaster = build_forecaster(cfg, self.profiles)
        self._profiles_kw = self.forecaster.profiles_kw  # the truth, stack_profiles(self.profiles)
        self._day_obs, self._community_window_table = self._day_observation_tables()
        self._has_capacity = self.battery.capacity_kwh > 0

        self._rng = np.random.default_rng()
        self.t = 0
        self.days = np.zeros(batch_size, dtype=np.int64)
        self.energy_kwh = np.zeros((batch_size, self.n_agents))
        self.start_energy_kwh = np.zeros((batch_size, self.n_agents))
        self._start_soc = np.zeros((batch_size, self.n_agents))
        self.last_clearing_price = np.zeros(batch_size)
        self.last_voltage_pu = np.ones((batch_size, self.n_agents))
        self.last_net_kw = np.zeros(batch_size)
        self.last_loading = np.zeros(batch_size)
        self.shared_energy_kwh = np.zeros((batch_size, 1))  # the shared battery's, (B, 1); zero without one
        self.shared_start_energy_kwh = np.zeros((batch_size, 1))

    # ------------------------------------------------------------------ episode control
    def reset(self, seed: int | None = None, days: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes; ``days`` (B,) picks the day of each community, else they are drawn from the split.

        Batteries start at ``soc_initial``, except on days drawn from the training split, where each battery's
        start is drawn uniformly from [train_soc_initial_min, train_soc_initial_max].
        """
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
            self._rng = np.random.default_rng(seed)
        cfg, shape = self.config, (self.batch_size, self.n_agents)
        start_soc = np.full(shape, cfg.soc_initial)
        shared_start_soc = np.full((self.batch_size, 1), cfg.soc_initial)
        if days is not None:
            days = self._checked_days(days)
        elif cfg.day is not None:
            days = np.full(self.batch_size, cfg.day, dtype=np.int64)
        else:
            days = self._rng.choice(self.split_days[cfg.split], size=self.batch_size)
            if cfg.split == "train":
                start_soc = self._rng.uniform(cfg.train_soc_initial_min, cfg.train_soc_initial_max, size=shape)
                if self.has_shared_battery:
                    shared_start_soc = self._rng.uniform(cfg.train_soc_initial_min, cfg.train_soc_initial_max,
                                                         size=shared_start_soc.shape)
        self.days = days
        self.t = 0
        self.start_energy_kwh = start_soc * self.battery.capacity_kwh
        self.energy_kwh = self.start_energy_kwh.copy()
        self._start_soc = np.where(self._has_capacity, start_soc, 0.0)
        self.shared_start_energy_kwh = shared_start_soc * self.shared_battery.capacity_kwh
        self.shared_energy_kwh = self.shared_start_energy_kwh.copy()
        retail0 = self.retail_per_kwh[0]
        self.last_clearing_price = np.full(self.batch_size, 0.5 * (retail0 + self.feed_in_per_kwh[0]))
        self.last_voltage_pu = np.full((self.batch_size, self.n_agents), self.feeder.v_slack_pu)
        self.last_net_kw = np.zeros(self.batch_size)
        self.last_loading = np.zeros(self.batch_size)
        return self.observe()

    def _checked_days(self, days: Any) -> np.ndarray:
        """``reset``'s ``days`` as (B,) int64: one day index for every community or one each, whole numbers in
        range; ``ValueError`` otherwise (a float or a string would be truncated or parsed to a day silently)."""
        values = np.asarray(days)
        if (values.dtype == bool or not np.issubdtype(values.dtype, np.integer)
                or values.shape not in ((), (1,), (self.batch_size,))
                or values.min() < 0 or values.max() >= self.profiles.n_days):
            each = f", or {self.batch_size} of them (one per community)" if self.batch_size > 1 else ""
            raise ValueError(f"days must be a whole day index in [0, {self.profiles.n_days - 1}]{each}; got {days!r}")
        return np.broadcast_to(values.astype(np.int64), (self.batch_size,)).copy()

    @property
    def done(self) -> bool:
        return self.t >= self.steps_per_episode

    # ------------------------------------------------------------------ dynamics
    def step(self, actions: np.ndarray, operator_action: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, bool, dict[str, np.ndarray]]:
        """Advance every community one step.

        ``actions`` (B, N, 3): battery setpoint share in [-1, 1], price share in [0, 1] and PV curtailment share
        in [0, 1]; values outside are clipped to those ranges, NaN or infinite values, strings and complex
        numbers raise ``ValueError``.
        ``operator_action`` (B, 2): the shared battery's setpoint and price share (module docstring), clipped the
        same way; None runs its rule. Only with a shared battery.
        Returns (observations (B, N, obs_dim), rewards (B, N), done, infos: a (B, N) array for each of
        ``info_keys``).
        """
        if self.done:
            raise RuntimeError("the episode is over; call reset() before step()")
        actions = self._checked_action(actions, "actions", (self.batch_size, self.n_agents, ACTION_DIM),
                                       "(setpoint, price and curtailment share per agent)")
        if operator_action is not None:
            if not self.has_shared_battery:
                raise ValueError("operator_action acts for the shared battery, and this community has none (set "
                                 "shared_battery_kwh and shared_battery_kw > 0)")
            operator_action = self._checked_action(operator_action, "operator_action", (self.batch_size, 2),
                                                   "(the shared battery's setpoint and price share per community)")
        cfg, battery, dt_h, t = self.config, self.battery, self.dt_h, self.t
        batch_size, n_agents = self.batch_size, self.n_agents
        price_share = _clip(actions[..., 1], 0.0, 1.0)

        load_kw, pv_kw = self.step_profiles_kw()
        charge_kw, discharge_kw = self.battery_power_kw(actions)
        curtailed_kw = self.curtailed_power_kw(actions, pv_kw)
        extra_infos = {}
        if cfg.safety_filter:
            asked_battery_kw, asked_curtailed_kw = charge_kw - discharge_kw, curtailed_kw
            battery_kw, curtailed_kw, _ = filtered_power(self, load_kw, pv_kw, asked_battery_kw, asked_curtailed_kw)
            charge_kw, discharge_kw = np.maximum(battery_kw, 0.0), np.maximum(-battery_kw, 0.0)
            extra_infos["safety_filter_kwh"] = (np.abs(battery_kw - asked_battery_kw)
                                                + np.abs(curtailed_kw - asked_curtailed_kw)) * dt_h
        net_kw = load_kw - pv_kw + curtailed_kw + charge_kw - discharge_kw
        retail, feed_in = self._retail_steps[t], self._feed_in_steps[t]  # the same for every community
        bid_price = feed_in + price_share * (retail - feed_in)
        q_kvar = self.reactive_kvar(load_kw, self.days, t)
        # The step's participants (B, P): the households, then the shared battery as one more column.
        storage_charge_kw, storage_discharge_kw = charge_kw, discharge_kw
        market_net_kw, market_bid_price, market_q_kvar = net_kw, bid_price, q_kvar
        if self.has_shared_battery:
            shared_charge_kw, shared_discharge_kw, shared_price_share = self._shared_battery_power(
                net_kw, operator_action)
            storage_charge_kw = np.concatenate([charge_kw, shared_charge_kw], axis=1)
            storage_discharge_kw = np.concatenate([discharge_kw, shared_discharge_kw], axis=1)
            market_net_kw = np.concatenate([net_kw, shared_charge_kw - shared_discharge_kw], axis=1)
            market_bid_price = np.concatenate([bid_price, feed_in + shared_price_share * (retail - feed_in)], axis=1)
            market_q_kvar = np.concatenate([q_kvar, np.zeros((batch_size, 1))], axis=1)  # at unity power factor
        # Stacked sides (2, B, P), see p2p_marl.sim.auction: [BUY] what a participant imports, [SELL] exports.
        side_kw = np.maximum(SIDE_SIGN * market_net_kw, 0.0)
        side_kwh = side_kw * dt_h

        traded_kwh, p2p_payment, p2p_revenue, clearing_price = clear_sides(
            side_kwh, market_bid_price, *self._tariff_rows_per_kwh[t], cfg.market, cfg.k)
        grid_kwh = np.maximum(side_kwh - traded_kwh, 0.0)  # the rest settles with the grid: import, export

        voltage_pu, household_voltage_pu, line_p_kw, line_flow_kva, total_p_kw, transformer_kva = (
            power_flow_arrays(self.feeder, market_net_kw, market_q_kvar, self.flow_rows,
                              *self.passive_power(self.days, t)))
        penalty, feeder_kpis = self._network_penalty(side_kw[..., :n_agents], voltage_pu, line_p_kw, line_flow_kva,
                                                     total_p_kw, transformer_kva)
        loss_kwh = line_losses_kw(self.feeder, line_flow_kva, voltage_pu) * dt_h

        degradation = cfg.degradation_cost_per_kwh * (storage_charge_kw + storage_discharge_kw) * dt_h
        self.energy_kwh = next_energy(self.energy_kwh, charge_kw, discharge_kw, battery, dt_h)
        start_kwh, end_kwh = self.start_energy_kwh, self.energy_kwh
        if self.has_shared_battery:
            penalty = np.concatenate([penalty, np.zeros((batch_size, 1))], axis=1)  # the households bear it
            self.shared_energy_kwh = next_energy(self.shared_energy_kwh, shared_charge_kw, shared_discharge_kw,
                                                 self.shared_battery, dt_h)
            start_kwh = np.concatenate([start_kwh, self.shared_start_energy_kwh], axis=1)
            end_kwh = np.concatenate([end_kwh, self.shared_energy_kwh], axis=1)
        self.t += 1
        if self.done and cfg.settle_end_energy:
            # The efficiencies are all the settlement reads of the battery parameters: the same for the shared one.
            settlement = end_settlement(start_kwh, end_kwh, battery, self.end_refill_price_per_kwh,
                                        self.end_surplus_price_per_kwh)
        else:
            settlement = np.zeros_like(degradation)
        # Each participant's bill (B, P); the shared battery's column is shared out below.
        cost = (grid_kwh[BUY] * retail - grid_kwh[SELL] * feed_in
                + p2p_payment - p2p_revenue + degradation + penalty + settlement)
        if cfg.p2p_fee_per_kwh > 0.0:
            fee = p2p_fees(traded_kwh, cfg.p2p_fee_per_kwh, self.p2p_fee_matrix_per_kwh, cfg.p2p_fee_payer)
            cost = cost + fee
        else:
            fee = np.zeros_like(cost)  # no fee: the bill's sum above, untouched
        if cfg.loss_allocation != "none":
            loss_charge = loss_charges(loss_kwh, retail, net_kw * dt_h, traded_kwh[:, :, :n_agents],
                                       cfg.loss_allocation)
            cost[:, :n_agents] += loss_charge
            extra_infos["loss_charge"] = loss_charge
        if self.has_shared_battery:
            shared_bill = cost[:, n_agents]
            cost = cost[:, :n_agents] + (shared_bill / n_agents)[:, None]
            shared_values = (shared_charge_kw[:, 0] * dt_h, shared_discharge_kw[:, 0] * dt_h,
                             self.shared_energy_kwh[:, 0] / self.shared_battery.capacity_kwh[0],
                             traded_kwh[BUY, :, n_agents], traded_kwh[SELL, :, n_agents],
                             p2p_payment[:, n_agents] - p2p_revenue[:, n_agents], grid_kwh[BUY, :, n_agents],
                             grid_kwh[SELL, :, n_agents], fee[:, n_agents], shared_bill)
            extra_infos.update({key: np.repeat(value[:, None], n_agents, axis=1)
                                for key, value in zip(SHARED_BATTERY_INFO_KEYS, shared_values)})
        w = cfg.cooperative_weight
        if w == 0.0:
            reward = -cost  # own bill only (the default): no community mean to mix in
        else:
            reward = -((1.0 - w) * cost + w * (cost.sum(axis=1, keepdims=True) / n_agents))

        self.last_clearing_price = clearing_price
        self.last_voltage_pu = household_voltage_pu
        # The community's mean net power (its shared battery's included, the passive loads apart).
        self.last_net_kw = market_net_kw.sum(axis=1) / n_agents
        if self._loading_column is not None:  # only where observed: the default step does not pay for it
            self.last_loading = np.maximum((line_flow_kva / self.feeder.line_rating_kva).max(axis=1, initial=0.0),
                                           transformer_kva / self.feeder.transformer_kva)
        soc = self.soc()

        # Per-community values, repeated for each agent: (clearing price, retail, feed-in, losses, 3 feeder KPIs).
        community_values = np.empty((7, batch_size, n_agents))
        community_values[0] = clearing_price[:, None]
        community_values[1] = retail
        community_values[2] = feed_in
        community_values[3] = loss_kwh[:, None]
        community_values[4:] = feeder_kpis[:, :, None]
        households = slice(0, n_agents)
        infos = {
            "load_kwh": load_kw * dt_h,
            "pv_kwh": pv_kw * dt_h,
            "pv_curtailed_kwh": curtailed_kw * dt_h,
            "battery_charge_kwh": charge_kw * dt_h,
            "battery_discharge_kwh": discharge_kw * dt_h,
            "soc": soc,
            "bid_price": bid_price,
            "p2p_buy_kwh": traded_kwh[BUY][:, households],
            "p2p_sell_kwh": traded_kwh[SELL][:, households],
            "p2p_payment": p2p_payment[:, households],
            "p2p_revenue": p2p_revenue[:, households],
            "grid_import_kwh": grid_kwh[BUY][:, households],
            "grid_export_kwh": grid_kwh[SELL][:, households],
            "clearing_price": community_values[0],
            "retail_price": community_values[1],
            "feed_in_price": community_values[2],
            "degradation_cost": degradation[:, households],
            "penalty": penalty[:, households],
            "end_settlement": settlement[:, households],
            "cost": cost,
            "voltage_pu": household_voltage_pu,
            "p2p_fee": fee[:, households],
            "feeder_loss_kwh": community_values[3],
            **dict(zip(FEEDER_KPI_KEYS, community_values[4:])),
            **extra_infos,
        }
        return self._observe(soc), reward, self.done, infos

    def step_profiles_kw(self) -> tuple[np.ndarray, np.ndarray]:
        """(load_kw, pv_kw) (B, N) of the step about to be played: the metered truth that ``step`` settles."""
        profiles_kw = self._profiles_kw[self.days, self.t]
        return profiles_kw[:, 0], profiles_kw[:, 1]

    def battery_power_kw(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(charge_kw, discharge_kw) (B, N) that ``step`` plays for ``actions`` now: each setpoint share clipped to
        [-1, 1], times the battery's power, within what the battery can do this step (``feasible_power``)."""
        setpoint_kw = _clip(actions[..., 0], -1.0, 1.0) * self.battery.max_kw
        return feasible_power(setpoint_kw, self.energy_kwh, self.battery, self.dt_h)

    def curtailed_power_kw(self, actions: np.ndarray, pv_kw: np.ndarray) -> np.ndarray:
        """(B, N) PV that ``step`` spills for ``actions`` given the step's PV ``pv_kw`` (B, N): each curtailment
        share clipped to [0, 1], times the PV."""
        return _clip(actions[..., 2], 0.0, 1.0) * pv_kw

    def _checked_action(self, action, name: str, shape: tuple[int, ...], layout: str) -> np.ndarray:
        """``action`` (the argument ``name``) as a float64 array of ``shape``; ``ValueError`` naming it and the
        layout, or the first non-finite entry's community (and agent)."""
        action = real_array(action, f"{name} {layout}")
        if action.shape != shape:
            raise ValueError(f"{name} must have shape {shape} {layout}, got {action.shape}")
        if not np.isfinite(action).all():
            bad = np.argwhere(~np.isfinite(action))[0]
            whose = f"agent {bad[1]} (community {bad[0]})" if action.ndim == 3 else f"community {bad[0]}"
            raise ValueError(f"action of {whose} is not finite: {action[tuple(bad[:-1])].tolist()}; actions must "
                             "be finite numbers")
        return action

    def _shared_battery_power(self, household_net_kw: np.ndarray, operator_action: np.ndarray | None
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The shared battery's (charge_kw, discharge_kw, limit price share), each (B, 1): the operator's action,
        or the rule of the module docstring."""
        if operator_action is None:
            setpoint_kw = -household_net_kw.sum(axis=1, keepdims=True)
            # Discharge only what it stored above its start energy today: draining below it never pays (the
            # end-of-day settlement buys it back at the day's highest retail price).
            above_start_kwh = np.maximum(self.shared_energy_kwh - self.shared_start_energy_kwh, 0.0)
            setpoint_kw = np.maximum(setpoint_kw, -above_start_kwh * self.shared_battery.discharge_efficiency
                                     / self.dt_h)
        else:
            setpoint_kw = _clip(operator_action[:, :1], -1.0, 1.0) * self.shared_battery.max_kw
        charge_kw, discharge_kw = feasible_power(setpoint_kw, self.shared_energy_kwh, self.shared_battery,
                                                 self.dt_h)
        if operator_action is None:
            price_share = (charge_kw > 0).astype(np.float64)  # bid retail while charging, ask feed-in otherwise
        else:
            price_share = _clip(operator_action[:, 1:], 0.0, 1.0)
        return charge_kw, discharge_kw, price_share

    def _network_penalty(self, side_kw: np.ndarray, voltage_pu: np.ndarray, line_p_kw: np.ndarray,
                         line_flow_kva: np.ndarray, total_p_kw: np.ndarray, transformer_kva: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Penalty (B, N) of the module docstring's step 4, and the feeder KPIs (3, B) of FEEDER_KPI_KEYS."""
        cfg, feeder = self.config, self.feeder
        kpis = np.zeros((3, self.batch_size))
        within_limits = (cfg.v_min_pu <= voltage_pu.min() and voltage_pu.max() <= cfg.v_max_pu
                         and (line_flow_kva <= feeder.line_rating_kva).all()
                         and transformer_kva.max() <= feeder.transformer_kva)
        if within_limits:
            # The usual case, every community within its limits: no excess, nothing to share out.
            return np.zeros(side_kw.shape[1:]), kpis
        # Band excess summed over buses, (2, B): [BUY] below v_min, [SELL] above v_max.
        band_excess_pu = np.maximum(SIDE_SIGN * (self._voltage_band_pu - voltage_pu), 0.0).sum(axis=2)
        line_excess = np.maximum(line_flow_kva - feeder.line_rating_kva, 0.0)
        trafo_excess = np.maximum(transformer_kva - feeder.transformer_kva, 0.0)
        kpis[:2] = band_excess_pu
        kpis[2] = line_excess.sum(axis=1) + trafo_excess
        # Overloads go to the side the element's active power flows to: > 0 towards the households (import side).
        line_import = np.where(line_p_kw >= 0, line_excess, 0.0)
        trafo_import = np.where(total_p_kw >= 0, trafo_excess, 0.0)
        overload_kva = np.array([line_import.sum(axis=1) + trafo_import,
                                 (line_excess - line_import).sum(axis=1) + (trafo_excess - trafo_import)])
        side_penalty = (cfg.voltage_penalty_per_pu_h * band_excess_pu + cfg.overload_penalty_per_kvah * overload_kva)
        shares = _share(side_penalty * self.dt_h, side_kw)
        return shares[BUY] + shares[SELL], kpis

    def reactive_kvar(self, load_kw: np.ndarray, days: np.ndarray | int, steps: int | slice) -> np.ndarray:
        """Households' reactive load at ``steps`` of ``days`` with active load ``load_kw``: the profiles' own where
        they carry one (SimBench; MPC then plans on the data's reactive load, which no forecaster forecasts), else
        ``load_kw`` at the config's load_power_factor."""
        if self.profiles.load_kvar is None:
            return load_kw * self.q_per_p
        return self.profiles.load_kvar[days, steps]

    def passive_power(self, days: np.ndarray | int, steps: int | slice) -> tuple[np.ndarray, np.ndarray] | tuple[()]:
        """(net kW, kvar) of the feeder's passive loads at ``steps`` of ``days``, the profiles' truth (MPC plans on
        it too: they are the grid's, not the community's to forecast); () without passive loads."""
        if self.profiles.passive_kw is None:
            return ()
        return self.profiles.passive_kw[days, steps], self.profiles.passive_kvar[days, steps]

    # ------------------------------------------------------------------ views
    def soc(self) -> np.ndarray:
        """State of charge as a fraction of capacity (B, N); 0 for households without a battery."""
        return np.divide(self.energy_kwh, self.battery.capacity_kwh, out=np.zeros(self.energy_kwh.shape),
                         where=self._has_capacity)

    def observe(self) -> np.ndarray:
        """Local observations (B, N, obs_dim), each feature within [obs_low, obs_high]."""
        return self._observe(self.soc())

    def _observe(self, soc: np.ndarray) -> np.ndarray:
        """``observe()`` with the SoC given: ``step()`` has computed it already for the infos."""
        obs = np.empty((self.batch_size, self.n_agents, self.obs_dim))
        obs[:] = self._obs_template[self.t]
        day_obs = self._day_obs[self.days, self.t]  # (B, N, 8 + 2 K), see _day_observation_tables
        obs[..., 2:4] = day_obs[..., :2]
        obs[..., 4] = soc  # within [0, 1] already: energy stays in [soc_min, soc_max] * capacity
        obs[..., 9] = _clip(self.last_clearing_price / self.price_scale_per_kwh, 0.0, 1.0)[:, None]
        obs[..., 10] = _clip((self.last_voltage_pu - 1.0) / 0.1, -1.0, 1.0)
        obs[..., 11:17] = day_obs[..., 2:8]
        obs[..., 17] = _clip(self.last_net_kw / (2.0 * self.power_scale_kw), -1.0, 1.0)[:, None]
        obs[..., 18] = self._start_soc
        if self._bins_end > len(OBS_FEATURES):
            obs[..., len(OBS_FEATURES):self._bins_end] = day_obs[..., 8:]
        if self._community_window is not None:
            obs[..., self._community_window] = self._community_window_table[self.days, self.t][:, None, :]
        if self._soc_feature_columns:
            self._write_soc_features(obs, soc)
        if self._loading_column is not None:
            obs[..., self._loading_column] = _clip(self.last_loading / 2.0, 0.0, 1.0)[:, None]
        return obs

    def _write_soc_features(self, obs: np.ndarray, soc: np.ndarray) -> None:
        """The ``extra_features`` (EXTRA_FEATURES) that change with the SoC (B, N) into ``obs``; ``feeder_position``,
        a constant per household, is in the template already, and the community's window in its own table."""
        owners_soc = soc[:, self._has_capacity]  # (B, batteries); none: the community features stay 0
        if owners_soc.shape[1] == 0:
            return
        for column, name in self._soc_feature_columns:
            if name == "community_soc":
                obs[..., column] = owners_soc.mean(axis=1)[:, None]
            else:  # community_soc_spread; the minimum only catches rounding: SoCs in [0, 1] spread by <= 0.5
                obs[..., column] = np.minimum(owners_soc.std(axis=1) / 0.5, 1.0)[:, None]

    def _day_observation_tables(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The features that depend only on the day, the step and the household, (n_days, T + 1, N, 8 + 2 K)
        for t = 0 .. T (T = steps_per_episode, K = forecast_bins), in the order of obs_features: load, pv (the
        last step's again at t = T), then next_load, next_pv, load_ahead, pv_ahead, community_load_ahead and
        community_pv_ahead, then the K load and K PV bins (the forecasts the observations hold, issued at every
        step of every day). One gather a step fetches them. Beside it, with the extra feature ``community_window``,
        the households' mean of those bins, (n_days, T + 1, 2 K), stored once per community (else None)."""
        cfg = self.config
        forecast = observation_table(self.forecaster, round(cfg.forecast_horizon_h / cfg.dt_h),
                                     self.steps_per_episode, self.power_scale_kw,
                                     cfg.forecast_bins)  # (n_days, T + 1, 4 + 2 K, N)
        metered = np.minimum(np.arange(self.steps_per_episode + 1), cfg.steps_per_day - 1)
        table = np.empty(forecast.shape[:2] + (self.n_agents, 4 + forecast.shape[2]))
        table[..., :2] = np.clip(self._profiles_kw[:, metered] / self.power_scale_kw, 0.0, 1.0).swapaxes(2, 3)
        table[..., 2:6] = forecast[:, :, :4].swapaxes(2, 3)
        table[..., 6:8] = forecast[:, :, 2:4].mean(axis=3)[:, :, None, :]
        table[..., 8:] = forecast[:, :, 4:].swapaxes(2, 3)
        window = forecast[:, :, 4:].mean(axis=3) if "community_window" in cfg.extra_features else None
        return table, window

    def _observation_template(self) -> np.ndarray:
        """The features that depend only on the step and the household, (steps_per_day + 1, N, obs_dim) for
        t = 0 .. steps_per_day; the others are zero here and written by ``_observe``."""
        steps = self.config.steps_per_day
        phase = [2.0 * math.pi * t / steps for t in range(steps + 1)]
        t_now = np.minimum(np.arange(steps + 1), steps - 1)
        t_next = np.minimum(t_now + 1, steps - 1)
        template = np.zeros((steps + 1, self.n_agents, self.obs_dim))
        template[..., 0] = np.array([math.sin(p) for p in phase])[:, None]
        template[..., 1] = np.array([math.cos(p) for p in phase])[:, None]
        template[..., 5] = self.has_battery
        template[..., 6] = (self.retail_per_kwh[t_now] / self.price_scale_per_kwh)[:, None]
        template[..., 7] = (self.feed_in_per_kwh[t_now] / self.price_scale_per_kwh)[:, None]
        template[..., 8] = (self.retail_per_kwh[t_next] / self.price_scale_per_kwh)[:, None]
        if "feeder_position" in self.obs_features:
            own_sensitivity = self.feeder.voltage_sens_p_pu_per_kw[np.arange(self.n_agents), self.feeder.household_bus]
            template[..., self.obs_features.index("feeder_position")] = (
                own_sensitivity / max(float(own_sensitivity.max()), 1e-300))
        return np.clip(template, self.obs_low, self.obs_high)

    def state(self, observations: np.ndarray | None = None) -> np.ndarray:
        """Global state (B, state_dim) for centralised critics; ``observations``, if given, must be this step's
        ``observe()`` (as ``reset``/``step`` return it), which saves computing them again."""
        obs = self.observe() if observations is None else observations
        per_agent = obs[:, :, self._state_per_agent].reshape(self.batch_size, -1)
        return np.concatenate([obs[:, 0, STATE_SHARED], per_agent], axis=1)

    def operator_observation(self, observations: np.ndarray | None = None) -> np.ndarray:
        """The community operator's observation (B, state_dim + 2), within [operator_observation_low, ..._high]:
        the global state (``observations`` as for ``state``), then the shared battery's SoC now and at the
        episode's start."""
        capacity_kwh = self.shared_battery.capacity_kwh[0]
        return np.concatenate([self.state(observations), self.shared_energy_kwh / capacity_kwh,
                               self.shared_start_energy_kwh / capacity_kwh], axis=1)

    @property
    def operator_observation_low(self) -> np.ndarray:
        return np.concatenate([self.state_low, [0.0, 0.0]])

    @property
    def operator_observation_high(self) -> np.ndarray:
        return np.concatenate([self.state_high, [1.0, 1.0]])

    @property
    def state_low(self) -> np.ndarray:
        return self._state_layout(self.obs_low)

    @property
    def state_high(self) -> np.ndarray:
        return self._state_layout(self.obs_high)

    def _state_layout(self, per_feature: np.ndarray) -> np.ndarray:
        """A value per observation feature laid out as ``state()`` lays out the features."""
        return np.concatenate([per_feature[list(STATE_SHARED)],
                               np.tile(per_feature[list(self._state_per_agent)], self.n_agents)])


def real_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a float64 array; ``ValueError`` naming ``what`` unless it is a rectangular array of real numbers
    (numpy would parse strings of digits and drop the imaginary part of complex numbers, a silently different
    action). The message shows the value on one line, summarised where it is long."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:  # ragged nesting; a torch tensor that requires grad
        raise ValueError(f"{what} must be a rectangular array of real numbers, got {reprlib.repr(value)} "
                         f"({error})") from None
    if array.dtype.kind not in REAL_KINDS:
        shown = " ".join(np.array2string(array, threshold=12, edgeitems=2, separator=", ").split())
        raise ValueError(f"{what} must be real numbers, got {shown} of dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _clip(values: np.ndarray, low, high) -> np.ndarray:
    """np.clip without its Python-level overhead, which dominates on one community's small arrays."""
    return np.minimum(np.maximum(values, low), high)


def _share(total: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Split each community's ``total`` (..., B) over agents in proportion to ``weight`` (..., B, N), equally if
    all zero."""
    weight_sum = weight.sum(axis=-1, keepdims=True)
    has_weight = weight_sum > 0
    fraction = np.where(has_weight, weight / np.where(has_weight, weight_sum, 1.0), 1.0 / weight.shape[-1])
    return total[..., None] * fraction
