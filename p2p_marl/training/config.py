"""Structured config of ``train.py`` (Hydra): the schema behind ``configs/config.yaml``.

``register_configs()`` stores in Hydra's ConfigStore

- ``train_schema``: ``TrainConfig``, first in the defaults list of ``configs/config.yaml``, so every top-level
  key is type-checked while composing and ``env`` is a typed ``EnvConfig`` (a wrong key in ``configs/env/``
  or on the command line fails naming it);
- ``schema/algo/<name>``: the hyperparameter dataclass of every registered learner; ``configs/algo/<name>.yaml``
  starts with ``defaults: [/schema/algo/<name>@_here_, _self_]`` so its keys are checked the same way;

and the resolvers ``p2p_run_dir`` and ``p2p_hydra_subdir`` that give a fresh run a directory of its own and
send a resumed run's output to its own directory. Values are range-checked when the run starts:
``validate_config`` builds the dataclasses, whose ``__post_init__`` raise ``ConfigError`` naming the key and its
allowed range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from p2p_marl.algos import REGISTRY, get_algo, make_hyperparameters
from p2p_marl.config import (SEED_RANGE, THREADS_RANGE, ConfigError, EnvConfig, check_days_left_to,
                             check_households_only)
from p2p_marl.run_dirs import claim_new_dir, register_resolver
from p2p_marl.training.checkpoint import CHECKPOINT_DIR
from p2p_marl.training.validation import check_ranges


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: Any = MISSING  # the hyperparameters of the learner named by algo.name (configs/algo/<name>.yaml)
    seed: int = 0  # seeds the learner (networks, exploration, the days it trains on)
    total_env_steps: int = 600_000  # training budget in community-steps (batch size x core steps)
    eval_interval: int = 75_000  # community-steps between evaluations on the validation days
    eval_days: int | None = None  # evaluate on the first eval_days validation days; None = all of them
    checkpoint_interval: int = 150_000  # community-steps between checkpoints (plus one at the end)
    keep_checkpoints: int = 2  # newest checkpoint files kept in the run directory (and best.pt besides)
    resume: str | None = None  # a run directory to continue from its latest checkpoint
    progress: bool = True  # show a progress bar
    threads: int = 1  # CPU threads of the run: torch's and an MPC teacher's LPs at a time (p2p_marl.algos.base);
    # 1 for sweeps with a job per core, the cores for a run alone. Torch rounds differently with more threads:
    # a run repeats its numbers with the same count

    def __post_init__(self) -> None:
        check_ranges(self, _RANGES, _INTEGERS, "")
        if self.eval_days is not None:
            check_ranges(self, (("eval_days", 1, 10**6, True, True),), ("eval_days",), "")
        if not isinstance(self.progress, bool):
            raise ConfigError(f"progress must be true or false, got {self.progress!r}")


_INTEGERS = ("seed", "total_env_steps", "eval_interval", "checkpoint_interval", "keep_checkpoints", "threads")
_RANGES = (
    SEED_RANGE,
    ("total_env_steps", 1, 10**13, True, True),
    ("eval_interval", 1, math.inf, True, False),
    ("checkpoint_interval", 1, math.inf, True, False),
    ("keep_checkpoints", 1, 10**6, True, True),
    THREADS_RANGE,
)

# What a resumed run may change: how long it trains and how it shows progress. Anything else would make the
# continued run differ from the interrupted one.
RESUME_OVERRIDABLE = ("total_env_steps", "progress")


def validate_config(config: dict[str, Any]) -> TrainConfig:
    """The validated ``TrainConfig`` of a resolved config dict (``env`` becomes an ``EnvConfig``; ``algo``
    stays a dict, checked by constructing the learner's hyperparameter dataclass). Raises ``ConfigError``
    whose message starts with the offending key."""
    try:
        env = EnvConfig(**config["env"])
    except ConfigError as error:
        raise ConfigError(f"env.{error}") from None
    try:
        check_households_only(env, "training")
    except ConfigError as error:
        raise ConfigError(f"env.{error}") from None
    # The validation days choose a run's checkpoint and the test days report it: training on either would leak
    # them into the result.
    check_days_left_to(env, "train.py", "trains on the training days only (env.split=train, env.day=null); "
                       "evaluate.py plays the validation or test days (days=)")
    hyperparameters = make_hyperparameters(config["algo"])
    learner_weight = getattr(hyperparameters, "cooperative_weight", None)
    # 0 is the environment's default: a weight set there (not 0) that the learner's own would replace is a mistake.
    if learner_weight is not None and env.cooperative_weight not in (0.0, learner_weight):
        raise ConfigError(f"env.cooperative_weight={env.cooperative_weight!r} would be replaced by "
                          f"{hyperparameters.name}.cooperative_weight={learner_weight!r} in training: set the "
                          "learner's weight (algo.cooperative_weight), or set it to null to train on "
                          "env.cooperative_weight")
    return TrainConfig(**{**config, "env": env})


def _run_dir(resume: str | None, fresh_dir: str) -> str:
    """``hydra.run.dir``: the directory of a resumed run, else a fresh one, created here (``claim_new_dir``:
    ``fresh_dir``, or ``fresh_dir_2``, ... if a run started in the same second has it). A resume directory
    that does not exist stops before Hydra would create it."""
    if resume is None:
        return claim_new_dir(fresh_dir)
    if not Path(resume).is_dir():
        # SystemExit passes through Hydra's error handling: one clear line, no traceback.
        raise SystemExit(f"train.py: error: resume={resume} is not a directory; give the run directory of an "
                         f"earlier train.py run (relative paths start at {Path.cwd()})")
    if not (Path(resume) / CHECKPOINT_DIR).is_dir():
        # Stopped here, before Hydra writes its log into a directory that is not a run's.
        raise SystemExit(f"train.py: error: resume={resume} has no {CHECKPOINT_DIR}/ folder: it is not a train.py run "
                         "directory, or its run stopped before its first checkpoint (start that run afresh)")
    return resume


def _hydra_subdir(resume: str | None) -> str | None:
    """``hydra.output_subdir``: Hydra's record of the composed config, written only for a fresh run (a resumed
    run continues with the config in its checkpoint, which a resume command line does not spell out)."""
    return ".hydra" if resume is None else None


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for name in REGISTRY:
        store.store(group="schema/algo", name=name, node=get_algo(name)[1])
    register_resolver()  # p2p_new_dir: hydra.sweep.dir, a sweep directory of its own
    # Cached: Hydra may resolve hydra.run.dir more than once, and each must give the one directory created.
    for resolver_name, resolver in (("p2p_run_dir", _run_dir), ("p2p_hydra_subdir", _hydra_subdir)):
        if not OmegaConf.has_resolver(resolver_name):
            OmegaConf.register_new_resolver(resolver_name, resolver, use_cache=True)
