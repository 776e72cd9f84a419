"""The learners: a registry from name to (Learner class, hyperparameter dataclass), and ``load_policy``.

Every learner follows the ``Learner`` contract of ``p2p_marl.algos.base``; its hyperparameter dataclass has a
``name`` field equal to its registry name (``configs/algo/<name>.yaml`` selects it with ``algo=<name>``).
Registering a learner is one line in ``REGISTRY``; modules are imported on first use.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, NamedTuple

from p2p_marl.algos.base import Learner
from p2p_marl.baselines.policy import Policy
from p2p_marl.config import ConfigError

log = logging.getLogger(__name__)


class AlgoSpec(NamedTuple):
    module: str  # the learner's module
    learner: str  # its Learner subclass
    config: str  # its hyperparameter dataclass


REGISTRY: dict[str, AlgoSpec] = {
    "qlearning": AlgoSpec("p2p_marl.algos.qlearning", "QLearning", "QLearningConfig"),
    "dqn": AlgoSpec("p2p_marl.algos.dqn", "DQN", "DQNConfig"),
    "mappo": AlgoSpec("p2p_marl.algos.mappo", "MAPPO", "MAPPOConfig"),
    "maddpg": AlgoSpec("p2p_marl.algos.maddpg", "MADDPG", "MADDPGConfig"),
}


# Keys added to a learner's hyperparameters after runs had been saved without them, each with the value such runs
# trained with: a saved run is rebuilt, resumed, named and grouped with its variant as it trained.
ADDED_KEYS: dict[str, dict[str, Any]] = {
    "mappo": {"penalty_reward": "share", "penalty_weight": 1.0, "trade_reward": "price", "input_norm": False,
              "value_heads": False, "reward_baseline": "zero", "infeasible_penalty_per_kwh": 0.0,
              "imitation_teacher": "optimum", "imitation_rounds": 0, "imitation_coef": 0.0,
              "actor_all_households": False, "critic_warmup_iterations": 0, "voltage_margin_pu": 0.0,
              "actor_recurrent": False, "actor_window_channels": 0, "imitation_refresh_steps": 0,
              "imitation_smoothing_per_kwh": 0.0, "imitation_regret_weight": 0.0, "imitation_feeder_weight": 1.0},
    "maddpg": {"penalty_reward": "share", "penalty_weight": 1.0, "trade_reward": "price", "imitation_days": 0,
               "imitation_epochs": 50, "imitation_teacher": "optimum", "imitation_rounds": 0, "imitation_coef": 0.0,
               "voltage_margin_pu": 0.0, "lr_end_fraction": 1.0, "lr_decay_steps": 600_000,
               "critic_warmup_iterations": 0, "actor_q_normalised": False, "actor_others_current": False,
               "actor_joint_gradient": False, "imitation_smoothing_per_kwh": 0.0, "imitation_regret_weight": 0.0,
               "imitation_feeder_weight": 1.0},
    "dqn": {"double_q": False, "n_step": 1, "infeasible_penalty_per_kwh": 0.0, "imitation_days": 0,
            "imitation_epochs": 10, "imitation_teacher": "mpc", "imitation_rounds": 0, "imitation_coef": 0.0,
            "imitation_margin": 0.05, "lr_end_fraction": 1.0, "lr_decay_steps": 600_000, "voltage_margin_pu": 0.0,
            "penalty_reward": "share", "penalty_weight": 1.0, "imitation_smoothing_per_kwh": 0.0},
    "qlearning": {"infeasible_penalty_per_kwh": 0.0},
}


def saved_hyperparameters(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters a saved run (a checkpoint's or a run directory's config) trained with: its own, and
    for a key it predates (``ADDED_KEYS``), the value it trained with."""
    return {**ADDED_KEYS.get(hyperparameters.get("name"), {}), **hyperparameters}


def get_algo(name: Any) -> tuple[type[Learner], type]:
    """(Learner class, hyperparameter dataclass) of a registered learner; ``ConfigError`` naming the choices."""
    if name not in REGISTRY:
        raise ConfigError(f"algo {name!r} is not registered; choose one of {sorted(REGISTRY)}")
    spec = REGISTRY[name]
    module = importlib.import_module(spec.module)
    return getattr(module, spec.learner), getattr(module, spec.config)


def make_hyperparameters(hyperparameters: dict[str, Any]) -> Any:
    """The validated hyperparameter dataclass of the learner named by ``hyperparameters["name"]``; unknown
    keys and bad values raise ``ConfigError`` naming them."""
    name = hyperparameters.get("name")
    _, config_class = get_algo(name)
    known = set(config_class.__dataclass_fields__)
    unknown = sorted(set(hyperparameters) - known)
    if unknown:
        raise ConfigError(f"unknown {name} hyperparameter(s) {unknown}; known: {sorted(known)}")
    return config_class(**hyperparameters)


def build_learner(env_config: Any, hyperparameters: dict[str, Any], seed: int, threads: int = 1) -> Learner:
    """A fresh learner from an ``EnvConfig``, a dict of hyperparameters with the learner's ``name``, a seed and
    the CPU threads it may use (``Learner``)."""
    learner_class, _ = get_algo(hyperparameters.get("name"))
    return learner_class(env_config, make_hyperparameters(hyperparameters), seed, threads)


def load_policy(path: str | Path, env_config: Any = None, run_checkpoint: str = "best") -> Policy:
    """The deterministic policy of a trained learner, from a checkpoint file or a training run directory
    (then its checkpoint of the best evaluation on validation days, or with ``run_checkpoint="last"`` its latest,
    the final one of a finished run), ready for ``evaluate.py`` and ``p2p_marl.evaluation.compare.rollout_days``.
    With ``env_config`` (the ``EnvConfig`` it will play on), a checkpoint trained for another environment is
    refused before the learner is built; one trained on the same environment with other observation-only
    settings (``forecast_bins``, ``extra_features``: ``Checkpoint.trained_observation``) keeps them. The policy
    carries the settings it was trained with as ``observation_settings`` (key -> value), and ``rollout_days``
    plays it on ``env_config`` with them (the same physics, market and forecasts, observed as in training; a
    plain ``rollout`` on a core that observes otherwise refuses it).

    Raises ``FileNotFoundError`` for a missing path or a run directory without checkpoints and
    ``p2p_marl.training.checkpoint.CheckpointError`` for a file that is not an intact checkpoint or does not fit
    ``env_config``; both name the file.
    """
    return load_trained(path, env_config, run_checkpoint)[0]


def load_trained(path: str | Path, env_config: Any = None,
                 run_checkpoint: str = "best") -> tuple[Policy, dict[str, Any]]:
    """``load_policy``, together with the training configuration saved in the checkpoint (``TrainConfig`` as
    a dict: env, algo, seed, total_env_steps, ...)."""
    # Imported here: the checkpoint module builds learners through this registry (it imports this module).
    from p2p_marl.training.checkpoint import load_checkpoint, resolve_checkpoint

    resolved = resolve_checkpoint(Path(path), run_checkpoint)
    log.info("Loading %s", resolved)
    checkpoint = load_checkpoint(resolved)
    if env_config is not None:
        checkpoint.check_environment(checkpoint.observed_config(env_config))
        if own := checkpoint.observation_settings(env_config):
            log.info("%s observes as it was trained: %s", resolved, ", ".join(f"{k}={v}" for k, v in own.items()))
    policy = checkpoint.build_learner().policy()
    policy.observation_settings = checkpoint.trained_observation()
    return policy, checkpoint.config
