"""The environment's configuration: one flat dataclass, validated once at construction.

Every field is also a keyword argument of the entry points, e.g.
``p2p_marl.parallel_env(n_agents=37, dt_h=0.25)``, and a key of ``configs/env/*.yaml``.
Units are in the names: kW, kWh, hours, money per kWh (the config's currency), p.u.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from typing import Any

MARKETS = ("uniform", "pay_as_bid", "mid_market", "sdr", "bill_sharing")  # see p2p_marl.sim.auction
SPLITS = ("train", "validation", "test", "all")
ACTION_MODES = ("continuous", "discrete")
FORECASTERS = ("persistence", "noisy", "oracle", "file")  # see p2p_marl.sim.forecasts
# SimBench's six low-voltage grids in its three scenarios (0 today, 1 2024, 2 2034), see p2p_marl.sim.simbench.
SIMBENCH_LV_CODES = tuple(f"1-LV-{grid}--{scenario}-sw" for grid in ("rural1", "rural2", "rural3", "semiurb4",
                                                                       "semiurb5", "urban6") for scenario in (0, 1, 2))
# Keys of the synthetic community and feeder that a SimBench grid brings itself.
SIMBENCH_REPLACES = ("n_days", "prosumer_share", "n_laterals", "segment_km", "r_ohm_per_km", "x_ohm_per_km",
                     "line_rating_kva", "transformer_kva", "v_nominal_kv", "v_slack_pu", "load_power_factor")
# Which of a SimBench grid's loads are agents: its households (H0 and heat pumps; the commercial G and agricultural
# L loads are passive) or every load.
SIMBENCH_AGENTS = ("households", "all_loads")
P2P_FEE_BASES = ("flat", "distance")  # see p2p_marl.sim.fees
P2P_FEE_PAYERS = ("buyer", "seller", "both")
SHARED_BATTERY_CONTROLS = ("rule", "operator")  # see p2p_marl.sim.community
LOSS_ALLOCATIONS = ("none", "p2p_volume", "net_energy")  # see p2p_marl.sim.fees
# Observation features a household may add to its own (EnvConfig.extra_features), each in [0, 1], after the
# forecast bins in this order, whatever order the config lists them in:
EXTRA_FEATURES = (
    "community_soc",  # the households' mean battery SoC at the step's start (not the shared battery's): one number
    # a trading platform can publish
    "community_soc_spread",  # the standard deviation of those SoCs / 0.5 (the largest a [0, 1] spread can be)
    "feeder_position",  # own voltage sensitivity to own power / the community's largest: 1 on the weakest bus
    "feeder_loading",  # the last step's highest loading of a line or the transformer, as a share of its rating, / 2
    # (0.5 at the rating; clipped to [0, 1]): one number a distribution operator can publish
    "community_window",  # the households' mean load and PV forecast over each of the forecast_bins parts of the
    # window (needs forecast_bins > 0): 2 x forecast_bins numbers, community_load_bin_k then community_pv_bin_k,
    # the community's profile ahead as a trading platform can publish it
)


def ordered_extra_features(names: Iterable[str]) -> list[str]:
    """``names`` in the order they are observed (EXTRA_FEATURES'): one spelling per observation. ``names`` may be
    observation features: ``community_load_bin_1`` stands for ``community_window``."""
    names = set(names)
    if "community_load_bin_1" in names:
        names.add("community_window")
    return [name for name in EXTRA_FEATURES if name in names]


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and the allowed range."""


@dataclass
class EnvConfig:
    """Not frozen so that Hydra can compose it; validated in __post_init__ and meant to be treated as read-only."""

    # Community
    n_agents: int = 10
    prosumer_share: float = 0.6  # share of households with PV and a battery
    community_seed: int = 0  # households, profiles and the train/validation/test split

    # SimBench (p2p_marl.sim.simbench, the simbench extra): a SimBench LV grid's loads, PV, profiles and feeder
    # instead of the synthetic community and feeder; n_agents must equal the grid's number of agent loads.
    simbench_code: str | None = None  # e.g. 1-LV-rural1--0-sw; one of SIMBENCH_LV_CODES
    simbench_pv_scale: float = 1.0  # multiplies every SimBench PV profile (PV penetration studies)
    simbench_agents: str = "households"  # households (G and L loads passive) or all_loads; see SIMBENCH_AGENTS

    # Time
    dt_h: float = 0.5  # settlement period; must divide 24 h
    max_cycles: int | None = None  # steps per episode, at most a day's; None = one whole day

    # Data
    data_csv: str | None = None  # real profiles (see p2p_marl.sim.profiles); None = synthetic year
    n_days: int = 365  # synthetic days
    test_share: float = 0.2  # share of days held out for reported results (test days)
    validation_share: float = 0.1  # share of days held out for model selection and tuning (validation days)
    split: str = "train"  # days an episode samples from: train, validation, test or all
    day: int | None = None  # a fixed day index for every episode (overrides split)

    # Forecasts (p2p_marl.sim.forecasts): where the observations' and the MPC benchmark's view of the future
    # comes from. persistence is built from the past only; noisy and oracle see the future (ablations).
    forecaster: str = "persistence"  # persistence, noisy, oracle or file
    forecast_horizon_h: float = 24.0  # window of the load_ahead / pv_ahead features (cut at the episode's end)
    forecast_bins: int = 0  # > 0: the window's profile as 2 x forecast_bins more features (load_bin_k, pv_bin_k)
    extra_features: list[str] = dataclasses.field(default_factory=list)  # any of EXTRA_FEATURES; [] = none
    forecast_nrmse: float = 0.3  # noisy: normalised RMSE of a forecast a day ahead ...
    forecast_nrmse_next: float = 0.1  # ... and of the next step's (growing like a random walk's in between)
    forecast_autocorrelation: float = 0.9  # noisy: correlation of the error between neighbouring steps
    forecast_seed: int = 0  # noisy: seed of the errors
    forecast_csv: str | None = None  # file: forecasts in the profile CSV format, for the days of data_csv

    # Battery (identical for every prosumer)
    battery_kwh: float = 10.0
    battery_kw: float = 5.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min: float = 0.1
    soc_max: float = 0.95
    soc_initial: float = 0.5  # start of a chosen day (evaluation, ``day=``, ``reset(days=...)``, other splits)
    # Episodes the core draws from the training days start at a SoC drawn uniformly from this range, so that a
    # learner meets every starting level and the end-of-day settlement (below) rather than one fixed start.
    train_soc_initial_min: float = 0.2
    train_soc_initial_max: float = 0.8
    degradation_cost_per_kwh: float = 0.005  # per kWh of throughput at the meter

    # End-of-episode settlement of stored energy (see p2p_marl.sim.community): energy below the start level is
    # bought back at end_refill_price_per_kwh / charge_efficiency per stored kWh, energy above it is credited at
    # end_surplus_price_per_kwh * discharge_efficiency. None = the day's highest retail price / the feed-in
    # tariff: draining the start energy never pays, and a surplus is worth no more than exporting it.
    settle_end_energy: bool = True
    end_refill_price_per_kwh: float | None = None
    end_surplus_price_per_kwh: float | None = None

    # Tariffs: time-of-use retail (off-peak / shoulder / peak) and a flat feed-in tariff
    retail_offpeak_per_kwh: float = 0.08
    retail_shoulder_per_kwh: float = 0.13
    retail_peak_per_kwh: float = 0.18
    feed_in_per_kwh: float = 0.04
    offpeak_end_h: float = 7.0  # off-peak runs from offpeak_start_h over midnight to here
    peak_start_h: float = 17.0
    peak_end_h: float = 21.0
    offpeak_start_h: float = 22.0

    # Market
    market: str = "uniform"  # uniform k-double auction, pay_as_bid, mid_market, sdr or bill_sharing
    k: float = 0.5  # uniform price = k * marginal bid + (1 - k) * marginal ask
    # Network charge on P2P volume, paid to the network operator (p2p_marl.sim.fees); 0 = none. The basis is
    # flat or by electrical distance between the traders (the same mean rate over pairs); the payer is the
    # buyer, the seller or both (half each).
    p2p_fee_per_kwh: float = 0.0
    p2p_fee_basis: str = "flat"
    p2p_fee_payer: str = "buyer"
    # The feeder's losses (infos feeder_loss_kwh) charged to the households at the step's retail price, paid to
    # the utility (p2p_marl.sim.fees.loss_charges): none (the default: nobody is billed for them), p2p_volume
    # (each household pays for its P2P energy's share of the energy the meters move) or net_energy (every
    # household for its share, P2P and grid energy alike).
    loss_allocation: str = "none"

    # Shared community battery (p2p_marl.sim.community), off at 0 kWh: a battery of the community at feeder bus
    # shared_battery_bus (0 = the transformer's LV busbar), with the households' efficiencies, SoC bounds, start
    # SoC, wear cost and end-of-day settlement. It trades in the market like a household; its bill is split
    # equally among the households. shared_battery_control: run by its rule (charge the community's surplus,
    # discharge into its deficit) or, in the PettingZoo/AEC views, by a community-operator agent.
    shared_battery_kwh: float = 0.0
    shared_battery_kw: float = 0.0
    shared_battery_bus: int = 0
    shared_battery_control: str = "rule"

    # Feeder (radial LV, LinDistFlow)
    # Defaults: a weak rural feeder that binds. Two 1.25 km laterals of NAYY 4x35 cable (about 85 kVA) behind a
    # transformer tapped up to 1.04 p.u. to hold evening voltages: with idle batteries, sunny-day PV export
    # leaves the voltage band on about half of the days, and the optimum must store or curtail PV to stay in
    # it. configs/env/community_10_strong.yaml is the earlier strong feeder (4x70, 0.75 km, 1.03 p.u.), which
    # never binds, for studies of the market alone.
    n_laterals: int = 2
    segment_km: float = 0.25
    r_ohm_per_km: float = 0.868
    x_ohm_per_km: float = 0.086
    line_rating_kva: float = 85.0
    transformer_kva: float = 100.0
    v_nominal_kv: float = 0.4
    v_slack_pu: float = 1.04
    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    load_power_factor: float = 0.95  # household load's lagging power factor; PV and battery at unity
    voltage_penalty_per_pu_h: float = 10.0  # money per p.u. of band excess per bus and hour
    overload_penalty_per_kvah: float = 0.5  # money per kVA of line/transformer overload and hour
    # A feeder safety filter in the loop (p2p_marl.sim.safety_filter): where a step's battery power and curtailment
    # would leave the voltage band or overload a line or the transformer, the least change of them that keeps the
    # step within the limits is played instead (infos safety_filter_kwh). Off by default: the learners and
    # benchmarks then bear the penalties of their own violations.
    safety_filter: bool = False

    # Reward and actions
    cooperative_weight: float = 0.0  # 0 = own bill only, 1 = community mean bill
    action_mode: str = "continuous"
    # Discrete mode (the PettingZoo and TorchRL discrete views): 5 x 3 x 2 = 30 actions. The value-based learners
    # choose their own grid (QLearningConfig, DQNConfig: n_battery_levels, n_price_levels, n_curtail_levels).
    n_battery_levels: int = 5  # discrete mode: evenly spaced setpoints in [-1, 1]
    n_price_levels: int = 3  # discrete mode: evenly spaced price shares in [0, 1] (1 level: 0.5)
    n_curtail_levels: int = 2  # discrete mode: evenly spaced PV curtailment shares in [0, 1] (1 level: none)

    def __post_init__(self) -> None:
        _validate(self)
        self.extra_features = ordered_extra_features(self.extra_features)  # a list, as Hydra gives it

    @property
    def steps_per_day(self) -> int:
        return int(round(24.0 / self.dt_h))

    @property
    def steps_per_episode(self) -> int:
        return self.steps_per_day if self.max_cycles is None else self.max_cycles

    def replace(self, **changes: Any) -> "EnvConfig":
        return dataclasses.replace(self, **changes)

    def differing(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The entries of ``settings`` (key -> value) whose value is not this config's."""
        return {key: value for key, value in settings.items() if getattr(self, key) != value}


def make_config(config: EnvConfig | None = None, **kwargs: Any) -> EnvConfig:
    """An EnvConfig from an optional base config and keyword overrides; unknown keys are named."""
    known = {f.name for f in dataclasses.fields(EnvConfig)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(f"unknown environment config key(s) {unknown}; known keys: {sorted(known)}")
    base = config if config is not None else EnvConfig()
    return dataclasses.replace(base, **kwargs) if kwargs else base


# (key, low, high, low inclusive, high inclusive) of a numeric field.
Range = tuple[str, float, float, bool, bool]
# The run-level keys that training and evaluation share: a seed numpy and torch take, and the CPU threads (torch's
# and the MPC LPs solved at a time).
SEED_RANGE: Range = ("seed", 0, 2**63 - 1, True, True)
THREADS_RANGE: Range = ("threads", 1, 1024, True, True)

# The levels of a discrete action grid (p2p_marl.envs.discrete_action_table): the environment's discrete views
# have one, and DQN and Q-learning each keep their own in their configs. No learner trains on the environment's,
# so runs that differ only in DISCRETE_VIEW_KEYS were trained on the same environment.
DISCRETE_GRID_RANGES: tuple[Range, ...] = (
    ("n_battery_levels", 2, 101, True, True),
    ("n_price_levels", 1, 101, True, True),
    ("n_curtail_levels", 1, 101, True, True),
)
DISCRETE_VIEW_KEYS = tuple(key for key, *_ in DISCRETE_GRID_RANGES)
# Keys added to EnvConfig after runs had been saved without them, each with the value such runs trained with: a
# saved run is grouped with its variant as it trained (p2p_marl.evaluation.compare).
ADDED_ENV_KEYS: dict[str, Any] = {"forecast_bins": 0, "extra_features": [], "safety_filter": False}

_RANGES: tuple[Range, ...] = (
    ("n_agents", 1, 10_000, True, True),
    ("prosumer_share", 0.0, 1.0, True, True),
    ("dt_h", 0.0, 24.0, False, True),
    ("n_days", 3, 3660, True, True),
    ("forecast_horizon_h", 0.0, 24.0, False, True),
    ("forecast_bins", 0, 10_000, True, True),
    ("forecast_nrmse", 0.0, 10.0, True, True),
    ("forecast_nrmse_next", 0.0, 10.0, True, True),
    ("community_seed", 0, 2**63 - 1, True, True),
    ("forecast_seed", 0, 2**63 - 1, True, True),
    ("forecast_autocorrelation", 0.0, 1.0, True, False),
    ("test_share", 0.0, 1.0, False, False),
    ("validation_share", 0.0, 1.0, False, False),
    ("battery_kwh", 0.0, math.inf, True, False),
    ("battery_kw", 0.0, math.inf, True, False),
    ("charge_efficiency", 0.0, 1.0, False, True),
    ("discharge_efficiency", 0.0, 1.0, False, True),
    ("soc_min", 0.0, 1.0, True, True),
    ("soc_max", 0.0, 1.0, True, True),
    ("soc_initial", 0.0, 1.0, True, True),
    ("train_soc_initial_min", 0.0, 1.0, True, True),
    ("train_soc_initial_max", 0.0, 1.0, True, True),
    ("degradation_cost_per_kwh", 0.0, math.inf, True, False),
    ("retail_offpeak_per_kwh", 0.0, math.inf, True, False),
    ("retail_shoulder_per_kwh", 0.0, math.inf, True, False),
    ("retail_peak_per_kwh", 0.0, math.inf, True, False),
    ("feed_in_per_kwh", 0.0, math.inf, True, False),
    ("offpeak_end_h", 0.0, 24.0, True, True),
    ("peak_start_h", 0.0, 24.0, True, True),
    ("peak_end_h", 0.0, 24.0, True, True),
    ("offpeak_start_h", 0.0, 24.0, True, True),
    ("k", 0.0, 1.0, True, True),
    ("simbench_pv_scale", 0.0, 100.0, True, True),
    ("p2p_fee_per_kwh", 0.0, math.inf, True, False),
    ("shared_battery_kwh", 0.0, math.inf, True, False),
    ("shared_battery_kw", 0.0, math.inf, True, False),
    ("shared_battery_bus", 0, 100_000, True, True),
    ("n_laterals", 1, 1000, True, True),
    ("segment_km", 0.0, 10.0, False, True),
    ("r_ohm_per_km", 0.0, math.inf, True, False),
    ("x_ohm_per_km", 0.0, math.inf, True, False),
    ("line_rating_kva", 0.0, math.inf, False, False),
    ("transformer_kva", 0.0, math.inf, False, False),
    ("v_nominal_kv", 0.0, math.inf, False, False),
    ("v_slack_pu", 0.9, 1.1, True, True),
    ("v_min_pu", 0.0, 1.0, False, True),
    ("v_max_pu", 1.0, 2.0, True, False),
    ("load_power_factor", 0.0, 1.0, False, True),
    ("voltage_penalty_per_pu_h", 0.0, math.inf, True, False),
    ("overload_penalty_per_kvah", 0.0, math.inf, True, False),
    ("cooperative_weight", 0.0, 1.0, True, True),
    *DISCRETE_GRID_RANGES,
)

_INT_FIELDS = {"n_agents", "community_seed", "forecast_seed", "forecast_bins", "n_days", "n_laterals",
               "shared_battery_bus", *DISCRETE_VIEW_KEYS}
_OPTIONAL_PRICES = ("end_refill_price_per_kwh", "end_surplus_price_per_kwh")


def check_ranges(config: Any, ranges: Sequence[Range], integers: Iterable[str], section: str = "") -> None:
    """Raise ``ConfigError`` for the first field of ``config`` that is not an integer (for ``integers``) or
    not a finite number in its range; the message names ``section.key`` (``key`` for an empty section) and
    the allowed range. Shared by the environment's, the training loop's and every learner's config."""
    prefix = f"{section}." if section else ""
    for key in integers:
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{prefix}{key} must be an integer, got {value!r}")
    for key, low, high, low_inc, high_inc in ranges:
        value = getattr(config, key)
        allowed = f"{'[' if low_inc else '('}{low}, {high}{']' if high_inc else ')'}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{prefix}{key} must be a finite number in {allowed}, got {value!r}")
        if value < low or (value == low and not low_inc) or value > high or (value == high and not high_inc):
            raise ConfigError(f"{prefix}{key}={value!r} is out of range; allowed {allowed}")


def _validate(cfg: EnvConfig) -> None:
    optional_integers = [name for name in ("max_cycles", "day") if getattr(cfg, name) is not None]
    optional_prices = [(name, 0.0, math.inf, True, False) for name in _OPTIONAL_PRICES
                       if getattr(cfg, name) is not None]
    check_ranges(cfg, _RANGES + tuple(optional_prices), sorted(_INT_FIELDS) + optional_integers)
    if not isinstance(cfg.safety_filter, bool):
        raise ConfigError(f"safety_filter must be true or false, got {cfg.safety_filter!r}")
    if cfg.safety_filter and cfg.shared_battery_kwh > 0:
        raise ConfigError(f"safety_filter=true with shared_battery_kwh={cfg.shared_battery_kwh!r}: the filter moves "
                          "the households' power only, and a shared battery's rule follows it; set "
                          "safety_filter=false or shared_battery_kwh=0")
    if not isinstance(cfg.settle_end_energy, bool):
        raise ConfigError(f"settle_end_energy must be true or false, got {cfg.settle_end_energy!r}")
    if cfg.test_share + cfg.validation_share >= 1.0:
        raise ConfigError(f"test_share + validation_share = {cfg.test_share + cfg.validation_share:g} must be below "
                          "1 so that training days remain")
    steps = 24.0 / cfg.dt_h
    if abs(steps - round(steps)) > 1e-9:
        raise ConfigError(f"dt_h={cfg.dt_h!r} must divide 24 h into a whole number of steps (e.g. 0.25, 0.5, 1.0)")
    if cfg.max_cycles is not None and not 1 <= cfg.max_cycles <= round(steps):
        # An episode is one day at most: a longer one would silently stop at the day's end.
        raise ConfigError(f"max_cycles={cfg.max_cycles!r} is out of range; allowed None (a whole day) or an integer "
                          f"in [1, {round(steps)}] (the steps of a day at dt_h={cfg.dt_h!r})")
    if cfg.day is not None and cfg.day < 0:
        raise ConfigError(f"day={cfg.day!r} is out of range; allowed None or a day index >= 0")
    if not cfg.soc_min <= cfg.soc_initial <= cfg.soc_max:
        raise ConfigError(
            f"soc_initial={cfg.soc_initial!r} must lie in [soc_min, soc_max] = [{cfg.soc_min}, {cfg.soc_max}]"
        )
    for name in ("train_soc_initial_min", "train_soc_initial_max"):
        if not cfg.soc_min <= getattr(cfg, name) <= cfg.soc_max:
            raise ConfigError(f"{name}={getattr(cfg, name)!r} must lie in [soc_min, soc_max] = "
                              f"[{cfg.soc_min}, {cfg.soc_max}]")
    if cfg.train_soc_initial_min > cfg.train_soc_initial_max:
        raise ConfigError(f"train_soc_initial_min={cfg.train_soc_initial_min!r} must not exceed "
                          f"train_soc_initial_max={cfg.train_soc_initial_max!r}")
    hours = (cfg.offpeak_end_h, cfg.peak_start_h, cfg.peak_end_h, cfg.offpeak_start_h)
    if not hours[0] <= hours[1] <= hours[2] <= hours[3]:
        # Out of this order the periods overlap or vanish, and time_of_use_prices would quietly drop one.
        raise ConfigError(f"offpeak_end_h, peak_start_h, peak_end_h, offpeak_start_h = {', '.join(map(repr, hours))}: "
                          "the tariff's hours must run offpeak_end_h <= peak_start_h <= peak_end_h <= offpeak_start_h "
                          "(off-peak from offpeak_start_h over midnight to offpeak_end_h, the peak between, shoulder "
                          "elsewhere; equal hours leave a period out)")
    if cfg.v_min_pu >= cfg.v_max_pu:
        raise ConfigError(f"v_min_pu={cfg.v_min_pu!r} must be below v_max_pu={cfg.v_max_pu!r}")
    if cfg.feed_in_per_kwh > min(cfg.retail_offpeak_per_kwh, cfg.retail_shoulder_per_kwh, cfg.retail_peak_per_kwh):
        raise ConfigError(
            f"feed_in_per_kwh={cfg.feed_in_per_kwh!r} must not exceed the lowest retail price "
            "(retail_offpeak_per_kwh, retail_shoulder_per_kwh, retail_peak_per_kwh)"
        )
    if cfg.forecast_nrmse_next > cfg.forecast_nrmse:
        raise ConfigError(f"forecast_nrmse_next={cfg.forecast_nrmse_next!r} must not exceed forecast_nrmse="
                          f"{cfg.forecast_nrmse!r}: a forecast's error grows with its lead")
    horizon_steps = cfg.forecast_horizon_h / cfg.dt_h
    if abs(horizon_steps - round(horizon_steps)) > 1e-9:
        raise ConfigError(f"forecast_horizon_h={cfg.forecast_horizon_h!r} must be a whole number of steps of "
                          f"dt_h={cfg.dt_h!r} h")
    if cfg.forecast_bins > 0 and round(horizon_steps) % cfg.forecast_bins:
        raise ConfigError(f"forecast_bins={cfg.forecast_bins!r} must divide the forecast window's "
                          f"{round(horizon_steps)} steps (forecast_horizon_h / dt_h) into equal bins; allowed 0 or "
                          f"a divisor of {round(horizon_steps)}")
    features = cfg.extra_features
    if (isinstance(features, str) or not isinstance(features, Sequence)
            or any(name not in EXTRA_FEATURES for name in features) or len(set(features)) != len(features)):
        raise ConfigError(f"extra_features={features!r} must list distinct names from {list(EXTRA_FEATURES)} "
                          "(or none: [])")
    if "community_window" in features and cfg.forecast_bins == 0:
        raise ConfigError(f"extra_features={list(features)!r}: community_window needs forecast_bins > 0 (here 0), "
                          f"the households' mean of their forecast bins; set forecast_bins to a divisor of "
                          f"{round(horizon_steps)} or drop community_window")
    for name, allowed in (("market", MARKETS), ("split", SPLITS), ("action_mode", ACTION_MODES),
                          ("forecaster", FORECASTERS), ("p2p_fee_basis", P2P_FEE_BASES),
                          ("p2p_fee_payer", P2P_FEE_PAYERS), ("simbench_agents", SIMBENCH_AGENTS),
                          ("loss_allocation", LOSS_ALLOCATIONS), ("shared_battery_control", SHARED_BATTERY_CONTROLS)):
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"{name}={getattr(cfg, name)!r} is not allowed; choose one of {list(allowed)}")
    if (cfg.shared_battery_kwh > 0) != (cfg.shared_battery_kw > 0):
        raise ConfigError(f"shared_battery_kwh={cfg.shared_battery_kwh!r} with shared_battery_kw="
                          f"{cfg.shared_battery_kw!r}: a shared battery needs both > 0 (both 0, the default, is none)")
    if cfg.shared_battery_kwh == 0 and (cfg.shared_battery_bus != 0 or cfg.shared_battery_control != "rule"):
        raise ConfigError(f"shared_battery_bus={cfg.shared_battery_bus!r} / shared_battery_control="
                          f"{cfg.shared_battery_control!r} apply to a shared battery only; set shared_battery_kwh and "
                          "shared_battery_kw > 0 too")
    if cfg.shared_battery_control == "operator" and cfg.action_mode != "continuous":
        raise ConfigError(f"shared_battery_control='operator' needs action_mode='continuous' (the operator's action "
                          f"is continuous), got action_mode={cfg.action_mode!r}")
    if cfg.data_csv is not None and not isinstance(cfg.data_csv, str):
        raise ConfigError(f"data_csv must be a file path or None, got {cfg.data_csv!r}")
    synthetic_n_days = EnvConfig.__dataclass_fields__["n_days"].default
    if cfg.data_csv is not None and cfg.n_days != synthetic_n_days:
        # Silently ignoring it would let a user believe the file was cut to n_days days.
        raise ConfigError(f"n_days={cfg.n_days!r} applies to synthetic profiles only; with data_csv every day of "
                          f"the file is used (leave n_days at its default {synthetic_n_days})")
    if cfg.simbench_code is not None:
        _validate_simbench(cfg)
    else:
        for name in ("simbench_pv_scale", "simbench_agents"):
            default = EnvConfig.__dataclass_fields__[name].default
            if getattr(cfg, name) != default:
                raise ConfigError(f"{name}={getattr(cfg, name)!r} applies to SimBench grids only; set simbench_code "
                                  f"too (or leave {name} at its default {default!r})")
    if cfg.forecast_csv is not None and not isinstance(cfg.forecast_csv, str):
        raise ConfigError(f"forecast_csv must be a file path or None, got {cfg.forecast_csv!r}")
    if (cfg.forecaster == "file") != (cfg.forecast_csv is not None):
        raise ConfigError(f"forecaster={cfg.forecaster!r} with forecast_csv={cfg.forecast_csv!r}: forecaster=file "
                          "reads forecast_csv, and forecast_csv is read by forecaster=file only")
    if cfg.forecast_csv is not None and cfg.data_csv is None:
        raise ConfigError("forecast_csv needs data_csv: its forecasts are matched to the data file's households "
                          "and dates")


def check_households_only(cfg: EnvConfig, view: str) -> None:
    """``ConfigError`` unless ``view`` (a view or trainer that acts for the households alone) can run ``cfg``: the
    community operator (``shared_battery_control="operator"``) is an agent of the PettingZoo/AEC views only."""
    if cfg.shared_battery_control == "operator":
        raise ConfigError(f"shared_battery_control='operator' adds an agent that only the PettingZoo/AEC views "
                          f"expose; {view} acts for the households alone (set shared_battery_control=rule)")


def check_days_left_to(cfg: EnvConfig, entry: str, how: str) -> None:
    """``ConfigError`` unless ``cfg`` leaves the choice of days to ``entry`` (a script that picks them itself: its
    message goes on with ``how``): the default split, ``"train"``, and no fixed ``day``."""
    if cfg.split != "train" or cfg.day is not None:
        raise ConfigError(f"env.split={cfg.split!r}, env.day={cfg.day!r}: {entry} {how}")


def check_simbench_code(code: Any) -> None:
    if code not in SIMBENCH_LV_CODES:
        raise ConfigError(f"simbench_code={code!r} is not a SimBench LV grid; choose one of {list(SIMBENCH_LV_CODES)}")


def _validate_simbench(cfg: EnvConfig) -> None:
    check_simbench_code(cfg.simbench_code)
    if cfg.data_csv is not None:
        raise ConfigError(f"simbench_code={cfg.simbench_code!r} and data_csv={cfg.data_csv!r}: choose one source "
                          "of profiles")
    quarter_hours = cfg.dt_h / 0.25
    if abs(quarter_hours - round(quarter_hours)) > 1e-9:
        raise ConfigError(f"dt_h={cfg.dt_h!r} must be a multiple of SimBench's 15-minute step (0.25, 0.5, 1.0, ...) "
                          f"with simbench_code={cfg.simbench_code!r}")
    for name in SIMBENCH_REPLACES:
        default = EnvConfig.__dataclass_fields__[name].default
        if getattr(cfg, name) != default:
            # Silently ignoring it would let a user believe it changed the SimBench grid.
            raise ConfigError(f"{name}={getattr(cfg, name)!r} applies to the synthetic community only; "
                              f"simbench_code={cfg.simbench_code!r} brings its own (leave {name} at its default "
                              f"{default!r})")
