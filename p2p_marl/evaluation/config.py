"""Structured config of ``evaluate.py`` (Hydra): the schema behind ``configs/evaluate.yaml``.

``EvaluateConfig`` is registered in Hydra's ConfigStore as ``evaluate_schema``; ``configs/evaluate.yaml`` puts
it first in its defaults list, so every key is type-checked while composing and ``env`` is a typed
``EnvConfig`` composed from the ``configs/env/`` group. ``to_evaluate_config`` turns the composed DictConfig
into the validated dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from p2p_marl.config import SEED_RANGE, THREADS_RANGE, ConfigError, EnvConfig, check_days_left_to, check_ranges
from p2p_marl.evaluation.compare import BENCHMARKS, DEFAULT_BENCHMARKS
from p2p_marl.run_dirs import register_resolver
from p2p_marl.training.checkpoint import RUN_CHECKPOINT_CHOICES


@dataclass
class EvaluateConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    # Benchmarks to evaluate, by name (see p2p_marl.evaluation.compare.BENCHMARKS).
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_BENCHMARKS))
    # Trained policies: checkpoint files or training run directories, loaded with p2p_marl.algos.load_policy.
    checkpoints: list[str] = field(default_factory=list)
    # Of a run directory in checkpoints: best (its best evaluation on validation days, the model selection of the
    # reported results) or last (its latest checkpoint). A checkpoint file is played as given. With
    # days=validation, best is scored on the days it was chosen on, which flatters it: compare variants there on
    # their last checkpoints (or the learning curves).
    run_checkpoint: str = "best"
    days: str = "test"  # the days to evaluate on: test (reported results) or validation (model selection)
    max_days: int | None = None  # evaluate only the first max_days of those days; None = all of them
    seed: int = 0  # seeds the zero-intelligence traders
    plot_day: int | None = None  # day index of the dispatch plots; None = the evaluated day with the most PV
    tensorboard: bool = True  # also write the KPIs as TensorBoard scalars
    # Also play every checkpoint with the rules' truthful bid in place of its own price (a method
    # <method>+truthful_bid beside it): how much of the play its bids decide. A diagnostic, not a result.
    truthful_bid: bool = False
    # Also play every benchmark and checkpoint through the feeder safety filter (p2p_marl.baselines.safety_filter:
    # the smallest change of battery power and curtailment that keeps the step within the feeder's limits), a
    # method <method>+safety_filter beside each. Not with a shared community battery.
    safety_filter: bool = False
    # Also play each method of two or more trained actors (MAPPO's or MADDPG's runs, e.g. its seeds) as one
    # policy, the mean of their actions' box points (nets.ActorEnsemble), a method <method>+ensemble beside it
    # (with safety_filter also <method>+ensemble+safety_filter): how much of the runs' errors is each run's own.
    # An ablation, not a result.
    ensemble: bool = False
    threads: int = 1  # MPC benchmarks solve this many communities' LPs at a time (the plans are the same)

    def __post_init__(self) -> None:
        for index, name in enumerate(self.methods):
            if name not in BENCHMARKS:
                raise ConfigError(f"methods[{index}]={name!r} is not a benchmark; choose from {list(BENCHMARKS)} "
                                  "(trained policies go in checkpoints)")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods={self.methods} lists a benchmark twice")
        if "mpc_file" in self.methods and self.env.forecaster != "file":
            raise ConfigError(f"methods lists mpc_file, which plans on the forecasts of env.forecast_csv, but "
                              f"env.forecaster={self.env.forecaster!r}: set env.forecaster=file and env.forecast_csv")
        if not self.methods and not self.checkpoints:
            raise ConfigError("methods and checkpoints are both empty: nothing to evaluate")
        check_days_left_to(self.env, "evaluate.py", "plays the days that days= names (test or validation), and "
                           "max_days= cuts them; leave env.split and env.day at their defaults")
        if self.days not in ("test", "validation"):
            raise ConfigError(f"days={self.days!r} is not allowed; choose test (reported results) or validation "
                              "(model selection)")
        if self.run_checkpoint not in RUN_CHECKPOINT_CHOICES:
            raise ConfigError(f"run_checkpoint={self.run_checkpoint!r} is not allowed; choose best (the run's best "
                              "evaluation on validation days) or last (its latest checkpoint)")
        if self.max_days is not None and self.max_days < 1:
            raise ConfigError(f"max_days={self.max_days} is out of range; allowed null (all test days) or >= 1")
        if self.ensemble and len(self.checkpoints) < 2:
            raise ConfigError(f"ensemble=true plays the mean of a method's trained actors, and checkpoints has "
                              f"{len(self.checkpoints)}: give two or more runs of one learner")
        if self.truthful_bid and not self.checkpoints:
            raise ConfigError("truthful_bid=true plays checkpoints with the truthful bid, and checkpoints is empty")
        if self.safety_filter and self.env.safety_filter:
            raise ConfigError("safety_filter=true adds a twin of every method played through the feeder safety filter, "
                              "and env.safety_filter=true already plays every method through it: set one of them "
                              "to false")
        if self.safety_filter and self.env.shared_battery_kwh > 0:
            raise ConfigError(f"safety_filter=true moves the households' power only, and env.shared_battery_kwh="
                              f"{self.env.shared_battery_kwh} adds a shared battery whose power follows theirs: "
                              "set safety_filter=false or env.shared_battery_kwh=0")
        check_ranges(self, (SEED_RANGE, THREADS_RANGE), ("seed", "threads"))
        if self.plot_day is not None and self.plot_day < 0:
            raise ConfigError(f"plot_day={self.plot_day} is out of range; allowed null or a day index >= 0")


def register_configs() -> None:
    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)
    register_resolver()  # p2p_new_dir: hydra.run.dir of configs/evaluate.yaml, a directory of its own


def to_evaluate_config(cfg: DictConfig) -> EvaluateConfig:
    """The validated config; a ``ConfigError`` whose message starts with the offending key (``env.n_agents=0
    is out of range; ...``)."""
    # The environment is converted on its own first so that its errors can be prefixed with ``env.``:
    # EnvConfig's messages start with its field name.
    try:
        OmegaConf.to_object(cfg.env)
    except ConfigError as error:
        raise ConfigError(f"env.{error}") from None
    config = OmegaConf.to_object(cfg)
    if not isinstance(config, EvaluateConfig):
        raise TypeError(f"the composed config is a {type(config).__name__}, not an EvaluateConfig: "
                        "put evaluate_schema first in the defaults list")
    return config
