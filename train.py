"""Train a learner on the P2P energy community (Hydra).

    python train.py                                    # Q-learning on community_10, a short default budget
    python train.py algo=dqn env=community_10 seed=0   # DQN
    python train.py algo=dqn total_env_steps=500000 algo.learning_rate=3e-4
    python train.py -m algo=qlearning,dqn seed=0,1,2   # sweep (add hydra/launcher=local to run in parallel)
    python train.py experiment=quick                   # a preset (configs/experiment/)
    python train.py resume=runs/community_10/dqn/seed0_2026-11-25_16-00-00 [total_env_steps=...]
    tensorboard --logdir runs

Each run writes one directory, ``runs/<env>/<algo>/seed<seed>_<date>_<time>`` (a sweep:
``runs/multirun/<date>_<time>/<env>_<algo>_seed<seed>_<job>``; ``<time>_2``, ``<time>_3`` for runs or sweeps
started in the same second), holding TensorBoard event files, Hydra's record of the composed config
(``.hydra/``), the log (``train.log``), ``checkpoints/`` and, while it trains, ``train.lock`` (``resume=``
refuses a run that is still going). Keys, defaults and their meaning: ``configs/config.yaml`` and
``p2p_marl/training/config.py``; what is logged and how resume works: ``p2p_marl/training/loop.py``. Bad input
stops it with one line on stderr (``p2p_marl/cli.py``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from p2p_marl.cli import user_errors_as_one_line
from p2p_marl.config import ConfigError
from p2p_marl.run_dirs import hydra_launch_records, remove_if_only_launch_records
from p2p_marl.training.checkpoint import latest_intact_checkpoint
from p2p_marl.training.config import RESUME_OVERRIDABLE, register_configs
from p2p_marl.training.loop import HEADLINE_KPI, Trainer
from p2p_marl.training.run_lock import run_lock

register_configs()


def resumed_config(saved: dict, cfg: DictConfig) -> dict:
    """The saved config of the run being resumed, with the keys of ``RESUME_OVERRIDABLE`` that the command
    line sets; any other override is an error (it would silently not apply)."""
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    keys = {override.key_or_group for override in overrides} - {"resume"}
    refused = sorted(keys - set(RESUME_OVERRIDABLE))
    if refused:
        raise ConfigError(f"resume continues a run with its own config; only {list(RESUME_OVERRIDABLE)} may be "
                          f"set with it, got {refused}")
    return {**saved, **{key: cfg[key] for key in keys}}


def resumes_elsewhere(cfg: DictConfig, run_dir: Path) -> bool:
    """Whether ``resume=`` names another directory than the one Hydra runs in (``hydra.run.dir`` set beside it)."""
    return cfg.resume is not None and run_dir.resolve() != Path(cfg.resume).resolve()


def make_trainer(cfg: DictConfig, run_dir: Path) -> Trainer:
    """A fresh run in ``run_dir``, or the run ``cfg.resume`` continued from its newest intact checkpoint."""
    if cfg.resume is None:
        return Trainer(OmegaConf.to_container(cfg, resolve=True), run_dir)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError("resume continues one run; start it without -m/--multirun")
    if resumes_elsewhere(cfg, run_dir):
        raise ConfigError(f"resume={cfg.resume} continues that run in its own directory, and hydra.run.dir sends the "
                          f"output to {run_dir}: leave hydra.run.dir out")
    checkpoint = latest_intact_checkpoint(run_dir)
    return Trainer(resumed_config(checkpoint.config, cfg), run_dir, checkpoint)


# An absolute path, so that the configs are found however this file is loaded (tests import it).
@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent / "configs"), config_name="config")
def main(cfg: DictConfig) -> float:
    """Train one run; returns the final share of the optimal saving (for Hydra's sweepers). Bad input stops it
    with one line on stderr (``p2p_marl.cli``), and a fresh run that stops before training leaves no directory."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)

    def remove_fresh_run_dir() -> None:
        # A resume refused for another hydra.run.dir leaves that directory as fresh as a new run's.
        if cfg.resume is None or resumes_elsewhere(cfg, run_dir):
            remove_if_only_launch_records(run_dir, hydra_launch_records())

    with user_errors_as_one_line("train.py", on_error=remove_fresh_run_dir), run_lock(run_dir):
        return make_trainer(cfg, run_dir).run().get(HEADLINE_KPI, float("nan"))


if __name__ == "__main__":
    main()
