"""Policies side by side on the same days: batched rollouts, the grid-only and optimal references, KPIs.

Every method, benchmark or learner, is played through the same ``CommunityCore`` (one community per day, all
days in one batch), so its costs come from the same physics and market. The references a KPI needs:

- grid-only: the ``GridOnly`` benchmark's bills of the same days (a rollout like any other method's);
- optimal: the perfect-foresight LP's objective per day (``solve_optimal_day``), the lower bound.

Typical use (the training loop's periodic evaluation does the same)::

    references = reference_costs(env_config, days)          # once
    kpis = evaluate_policy(env_config, policy, days, references)  # per policy
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from p2p_marl.algos import saved_hyperparameters
from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.optimal import OptimalPolicy, solve_optimal_day
from p2p_marl.baselines.policy import Policy
from p2p_marl.baselines.rules import (GridOnly, IdleMidPrice, RandomActions, SelfConsumption, TimeOfUse, TruthfulBid,
                                      ZeroIntelligence)
from p2p_marl.baselines.safety_filter import SafetyFilter
from p2p_marl.config import ADDED_ENV_KEYS, DISCRETE_VIEW_KEYS, ConfigError, EnvConfig, ordered_extra_features
from p2p_marl.evaluation.kpis import agent_bills, day_kpis
from p2p_marl.evaluation.report import method_of
from p2p_marl.evaluation.rollout import rollout
from p2p_marl.progress import track
from p2p_marl.sim.community import CommunityCore

if TYPE_CHECKING:  # imported where an ensemble is built: loading torch only when a checkpoint is evaluated
    from p2p_marl.algos.nets import ActorEnsemble

log = logging.getLogger(__name__)

# Benchmark name -> factory taking the evaluation seed (the zero-intelligence traders and random actions draw
# random numbers) and the threads MPC may solve its LPs on.
BENCHMARKS: dict[str, Callable[[int, int], Policy]] = {
    "grid_only": lambda seed, threads: GridOnly(),
    "idle_mid_price": lambda seed, threads: IdleMidPrice(),
    "random": lambda seed, threads: RandomActions(seed=seed),
    "rule_self_consumption": lambda seed, threads: SelfConsumption(),
    "rule_time_of_use": lambda seed, threads: TimeOfUse(),
    "zero_intelligence": lambda seed, threads: ZeroIntelligence(seed=seed),
    # Every household planning alone on the environment's forecaster, with a household's own information.
    "mpc_household": lambda seed, threads: MPCPolicy(network=False, progress=True, household=True, threads=threads),
    # Model-predictive control on each forecaster's forecasts (mpc_file needs env.forecaster=file).
    "mpc_persistence": lambda seed, threads: MPCPolicy("persistence", progress=True, threads=threads),
    "mpc_noisy": lambda seed, threads: MPCPolicy("noisy", progress=True, threads=threads),
    "mpc_oracle": lambda seed, threads: MPCPolicy("oracle", progress=True, threads=threads),
    "mpc_file": lambda seed, threads: MPCPolicy("file", progress=True, threads=threads),
    "optimal": lambda seed, threads: OptimalPolicy(network=True, progress=True),
}
# What evaluate.py plays unless told otherwise: every benchmark that needs no input beyond the environment.
DEFAULT_BENCHMARKS = tuple(name for name in BENCHMARKS if name != "mpc_file")


def make_benchmark(name: str, seed: int = 0, threads: int = 1) -> Policy:
    """A fresh benchmark policy by name (see ``BENCHMARKS``); MPC solves ``threads`` communities' LPs at a time."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {list(BENCHMARKS)}")
    return BENCHMARKS[name](seed, threads)


# What makes two checkpoints of one learner the same method (their seeds aside): TrainConfig's keys that change
# what is learned. The others (evaluation and checkpoint cadence, progress bar, resume) do not.
TRAINING_SETTING_KEYS = ("env", "algo", "total_env_steps")


def load_policies(methods: list[str], checkpoints: list[str], seed: int = 0,
                  env_config: EnvConfig | None = None, run_checkpoint: str = "best",
                  truthful_bid: bool = False, safety_filter: bool = False, threads: int = 1,
                  ensemble: bool = False) -> dict[str, Policy]:
    """Label -> policy: the benchmarks by name, then each checkpoint (a file, or a training run directory whose
    ``run_checkpoint`` is played, loaded with ``p2p_marl.algos.load_trained``; with ``env_config``, one trained for
    another environment is refused; one that observes with its own ``forecast_bins`` or ``extra_features`` keeps
    them, see ``rollout_days``) labelled ``<method>:<file or directory name>``.

    The method of a checkpoint is its learner's name (the runs of one learner, e.g. its seeds, share it, and
    ``report.summarize_runs`` groups them). Where checkpoints of one learner were trained with different
    settings (``TRAINING_SETTING_KEYS``), pooling them would mix variants: each setting becomes its own method,
    ``<learner>#1``, ``<learner>#2``, ... in order of appearance, and the keys that differ are logged.

    With ``truthful_bid`` each checkpoint is also played with the rules' truthful bid in place of its own price
    (``rules.TruthfulBid``), labelled ``<method>+truthful_bid:<name>``: a method of its own beside the checkpoint's.
    With ``safety_filter`` every benchmark and checkpoint is also played through the feeder safety filter
    (``safety_filter.SafetyFilter``), labelled ``<benchmark>+safety_filter`` and ``<method>+safety_filter:<name>``:
    a checkpoint trained through it (``env.safety_filter``) is then also played as it was trained (a warning says
    so where neither ``safety_filter`` nor ``env_config.safety_filter`` is on).

    With ``ensemble`` each method of two or more trained actors (MAPPO's, MADDPG's runs; not the value-based
    learners) is also played as one policy, the mean of its runs' box points (``nets.ActorEnsemble``), labelled
    ``<method>+ensemble:<n>_runs``: an ablation beside the method, whose runs it pools into one controller (with
    ``safety_filter`` also played through it, ``<method>+ensemble+safety_filter:<n>_runs``). ``ConfigError`` where
    no method has two.

    A missing checkpoint path is a ``ConfigError`` naming ``checkpoints[i]``, raised before anything is loaded.
    """
    policies = {name: make_benchmark(name, seed, threads) for name in methods}
    if safety_filter:
        policies.update({f"{name}+safety_filter": SafetyFilter(make_benchmark(name, seed, threads))
                         for name in methods})
    for index, path in enumerate(checkpoints):
        if not Path(path).exists():
            raise ConfigError(f"checkpoints[{index}]={path!r} does not exist; give a checkpoint file or a "
                              f"training run directory (relative paths start at {Path.cwd()})")
    if not checkpoints:
        return policies
    # Loading a learner imports torch and the learners; only needed when there is a checkpoint.
    from p2p_marl.algos import load_trained

    loaded = [load_trained(path, env_config, run_checkpoint) for path in checkpoints]
    setting_of = [_training_setting(train_config) for _, train_config in loaded]
    settings: dict[str, list[dict]] = {}  # learner -> its distinct training settings, in order of appearance
    for (policy, _), setting in zip(loaded, setting_of):
        if setting not in settings.setdefault(policy.name, []):
            settings[policy.name].append(setting)
    for learner, variants in settings.items():
        if len(variants) > 1:
            log.warning("checkpoints of %s were trained with %d different settings, reported as %s; they "
                        "differ in %s", learner, len(variants),
                        ", ".join(f"{learner}#{k}" for k in range(1, len(variants) + 1)),
                        ", ".join(_differing_keys(variants)))
    for index, (path, (policy, _), setting) in enumerate(zip(checkpoints, loaded, setting_of)):
        variants = settings[policy.name]
        method = policy.name if len(variants) == 1 else f"{policy.name}#{variants.index(setting) + 1}"
        run_name = Path(path).resolve().name
        label = f"{method}:{run_name}"
        if label in policies:
            raise ConfigError(f"checkpoints[{index}]={path!r} gives the label {label!r} a second time; "
                              "evaluate checkpoints with different names or run directories")
        policies[label] = policy
        if setting["env"].get("safety_filter") and not (safety_filter or (env_config and env_config.safety_filter)):
            log.warning("%s was trained through the feeder safety filter (env.safety_filter=true) and plays here "
                        "without it; pass safety_filter=true for its row as trained, %s+safety_filter", path, method)
        if truthful_bid:
            policies[f"{method}+truthful_bid:{run_name}"] = TruthfulBid(policy)
        if safety_filter:
            policies[f"{method}+safety_filter:{run_name}"] = SafetyFilter(policy)
    if ensemble:
        ensembles = _ensembles(policies)
        if not ensembles:
            methods = sorted({method_of(label) for label in policies if ":" in label})
            raise ConfigError(f"ensemble=true averages the actors of two or more runs of one learner and training "
                              f"setting, and the checkpoints give none: their methods are {methods} (DQN and "
                              "Q-learning have no actor, and a learner's #1 and #2 are different settings)")
        for method, actors in ensembles.items():
            runs = f"{len(actors.members)}_runs"
            policies[f"{method}+ensemble:{runs}"] = actors
            if safety_filter:
                policies[f"{method}+ensemble+safety_filter:{runs}"] = SafetyFilter(actors)
    return policies


def _ensembles(policies: dict[str, Policy]) -> dict[str, ActorEnsemble]:
    """``load_policies``' ensembles: method -> ``ActorEnsemble`` of its two or more actors (its checkpoints')."""
    from p2p_marl.algos.nets import ActorEnsemble, ActorPolicy

    members: dict[str, list[ActorPolicy]] = {}
    for label, policy in policies.items():
        if isinstance(policy, ActorPolicy):  # a checkpoint's own row: benchmarks and wrappers are not actors
            members.setdefault(method_of(label), []).append(policy)
    return {method: ActorEnsemble(f"{method}+ensemble", actors) for method, actors in members.items()
            if len(actors) > 1}


def _training_setting(train_config: dict) -> dict:
    """The settings that make two runs of one learner different variants: ``TRAINING_SETTING_KEYS``, without
    the environment's discrete-view grid (``DISCRETE_VIEW_KEYS``), which no learner trains on, and with the
    values runs saved before a key existed trained with (``ADDED_ENV_KEYS``, ``algos.ADDED_KEYS``)."""
    setting = {key: train_config.get(key) for key in TRAINING_SETTING_KEYS}
    if isinstance(setting["algo"], dict):
        setting["algo"] = saved_hyperparameters(setting["algo"])
    if isinstance(setting["env"], dict):
        env = {**ADDED_ENV_KEYS, **setting["env"]}
        setting["env"] = {key: value for key, value in env.items() if key not in DISCRETE_VIEW_KEYS}
        # Saved as the command line listed them; observed in one order (EnvConfig.extra_features).
        setting["env"]["extra_features"] = ordered_extra_features(env["extra_features"])
    return setting


def _differing_keys(settings: list[dict]) -> list[str]:
    """The dotted keys (``algo.hidden_sizes``) whose values are not the same in all ``settings``."""
    def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(tree, dict):
            return {prefix: tree}
        return {key: value for name, sub in tree.items()
                for key, value in flat(sub, f"{prefix}.{name}" if prefix else name).items()}

    flats = [flat(setting) for setting in settings]
    keys = sorted(set().union(*flats))
    return [key for key in keys if len({repr(f.get(key)) for f in flats}) > 1]


def select_days(core: CommunityCore, max_days: int | None = None, plot_day: int | None = None,
                split: str = "test") -> tuple[np.ndarray, int]:
    """(the first ``max_days`` days of ``core``'s ``split`` ("test" or "validation"), all if None; the day to
    plot): ``plot_day`` must be one of them, None picks the sunniest (most community PV), where batteries and
    P2P trade have the most to do."""
    days = core.split_days[split][:max_days]
    if plot_day is None:
        return days, int(days[np.argmax(core.profiles.pv_kw[days].sum(axis=(1, 2)))])
    if plot_day not in days:
        raise ConfigError(f"plot_day={plot_day} is not among the evaluated {split} days {days.tolist()}")
    return days, plot_day


def _checked_days(days: np.ndarray) -> np.ndarray:
    days = np.asarray(days)
    if days.ndim != 1 or days.size == 0 or not np.issubdtype(days.dtype, np.integer):
        raise ValueError(f"days must be a non-empty 1-D array of day indices, got {days!r}")
    return days.astype(np.int64)


def rollout_days(env_config: EnvConfig, policy: Policy, days: np.ndarray) -> dict[str, np.ndarray]:
    """One episode of ``policy`` on each of ``days``, all in one batched core; infos key -> (D, T, N). A policy
    with ``observation_settings`` of its own (``p2p_marl.algos.load_policy``) observes ``env_config`` with them."""
    days = _checked_days(days)
    return rollout(CommunityCore(observed_config(env_config, policy), batch_size=len(days)), policy, days)


def observed_config(env_config: EnvConfig, policy: Policy) -> EnvConfig:
    """``env_config`` as ``policy`` observes it: with the ``observation_settings`` of a trained policy that brings
    its own (``p2p_marl.algos.load_policy``), else ``env_config`` itself."""
    settings = env_config.differing(getattr(policy, "observation_settings", {}))
    return env_config.replace(**settings) if settings else env_config


def reference_costs(env_config: EnvConfig, days: np.ndarray, progress: bool = False) -> dict[str, Any]:
    """The references of ``days``: ``grid_only`` (D,) and ``optimal`` (D,) community costs [money/day],
    ``grid_only_bills`` (D, N), each household's grid-only bill (for savings and their fairness), and
    ``optimal_schedules`` (day -> ``OptimalSchedule``, for ``OptimalPolicy.remember``: the optimum is then
    played without solving its LPs again).

    ``optimal`` is the cost of ``solve_optimal_day``'s schedule with the network constraints, one LP per day
    (``progress`` reports progress over them). Neither depends on ``safety_filter``: the grid-only community is
    played without it, and the optimum is the LP's cost, never played.
    """
    days = _checked_days(days)
    # The community without batteries, P2P trade or curtailment pays its bills without the safety filter's
    # curtailment too: with and without the filter, methods are measured against the same references.
    bills = agent_bills(rollout_days(env_config.replace(safety_filter=False), GridOnly(), days))
    core = CommunityCore(env_config, batch_size=1)
    schedules = {int(day): solve_optimal_day(core, int(day), network=True)
                 for day in track(days, len(days), "optimal LP per day", "days", enabled=progress)}
    optimal = np.array([schedules[int(day)].cost for day in days])
    return {"grid_only": bills.sum(axis=1), "optimal": optimal, "grid_only_bills": bills,
            "optimal_schedules": schedules}


def network_cost(env_config: EnvConfig, days: np.ndarray, references: dict[str, Any]) -> np.ndarray:
    """(D,) what the feeder's limits cost the community on each of ``days`` [money/day]: the optimum of
    ``references`` (``reference_costs`` of the same days) minus the optimum with the limits dropped."""
    core = CommunityCore(env_config, batch_size=1)
    without_network = np.array([solve_optimal_day(core, int(day), network=False).cost
                                for day in _checked_days(days)])
    return references["optimal"] - without_network


def evaluate_policy(env_config: EnvConfig, policy: Policy, days: np.ndarray,
                    references: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """KPI name -> (D,) per-day values of ``policy`` on ``days`` (see ``p2p_marl.evaluation.kpis``).

    With ``references`` (``reference_costs`` of the same days, in the same order) the KPIs include the saving
    vs grid-only, the fairness of savings and the share of the optimal saving.
    """
    infos = rollout_days(env_config, policy, days)
    if references is None:
        return day_kpis(infos, env_config.dt_h)
    return day_kpis(infos, env_config.dt_h, grid_only_bills=references["grid_only_bills"],
                    optimal_cost=references["optimal"])
