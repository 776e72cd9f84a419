"""BenchMARL: p2p_marl as BenchMARL tasks, so its MAPPO, MADDPG, IPPO, QMIX, ... run on the community.

From the command line (BenchMARL's own Hydra config, with the p2p_marl tasks added to its task group)::

    python -m p2p_marl.integrations.benchmarl algorithm=mappo task=p2p_marl/community_10 \
        experiment.max_n_frames=96000 experiment.loggers=[csv]

From Python::

    from benchmarl.algorithms import MappoConfig
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models import MlpConfig
    from p2p_marl.integrations.benchmarl import P2PMarlTask

    task = P2PMarlTask.COMMUNITY_10.get_from_yaml()  # or .get_task({"n_agents": 20, ...}) with EnvConfig keys
    Experiment(task=task, algorithm_config=MappoConfig.get_from_yaml(), model_config=MlpConfig.get_from_yaml(),
               critic_model_config=MlpConfig.get_from_yaml(), seed=0, config=ExperimentConfig.get_from_yaml()).run()

A task's config holds EnvConfig fields (``benchmarl_conf/task/p2p_marl/<task>.yaml``). The environment is the
TorchRL adapter (``p2p_marl.integrations.torchrl``): one agent group ``prosumer``, the global state for
centralised critics (MAPPO, MADDPG, QMIX), continuous actions or, for discrete algorithms, the
``DiscreteActionWrapper`` grid. BenchMARL runs ``num_envs`` copies of it in a ``SerialEnv``.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any, Callable

import hydra
import torch
import yaml
from benchmarl.environments import PettingZooClass, Task, task_config_registry
from benchmarl.hydra_config import load_experiment_from_hydra
from benchmarl.utils import DEVICE_TYPING
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torchrl.envs import EnvBase

from p2p_marl.config import make_config
from p2p_marl.integrations.torchrl import make_torchrl_env

ENV_NAME = "p2p_marl"
CONF_DIR = Path(__file__).parent / "benchmarl_conf"


class P2PMarlClass(PettingZooClass):
    """The BenchMARL task class; the spec helpers (observation, state, info, action) are PettingZoo's.

    The config is validated as an EnvConfig at construction, so a bad key or value fails before any run.
    """

    def __init__(self, name: str, config: dict[str, Any] | None):
        super().__init__(name, config)
        self.env_config = make_config(**self.config)

    def get_env_fun(self, num_envs: int, continuous_actions: bool, seed: int | None,
                    device: DEVICE_TYPING) -> Callable[[], EnvBase]:
        env_config = self.env_config.replace(action_mode="continuous" if continuous_actions else "discrete")
        # BenchMARL calls this once and builds its num_envs copies from the returned function; seeding every
        # copy alike would make them all draw the same days, so the k-th copy built gets seed + k.
        seeds = itertools.count(seed) if seed is not None else itertools.repeat(None)
        return lambda: make_torchrl_env(env_config, seed=next(seeds), device=device)

    def supports_continuous_actions(self) -> bool:
        return True

    def supports_discrete_actions(self) -> bool:
        return True

    def has_state(self) -> bool:
        return True

    def has_render(self, env: EnvBase) -> bool:
        return False

    def max_steps(self, env: EnvBase) -> int:
        return self.env_config.steps_per_episode

    @staticmethod
    def env_name() -> str:
        return ENV_NAME


class P2PMarlTask(Task):
    """The p2p_marl BenchMARL tasks; their default configs live in ``benchmarl_conf/task/p2p_marl/``."""

    COMMUNITY_10 = None
    COMMUNITY_10_STRONG = None
    COMMUNITY_50 = None

    @staticmethod
    def associated_class():
        return P2PMarlClass

    def get_from_yaml(self, path: str | Path | None = None) -> P2PMarlClass:
        """The task with its config read from ``path``, by default this package's YAML for the task."""
        if path is None:
            path = CONF_DIR / "task" / ENV_NAME / f"{self.name.lower()}.yaml"
        return self.get_task(config=yaml.safe_load(Path(path).read_text()) or {})


def register() -> None:
    """Make ``task=p2p_marl/<task>`` resolvable by BenchMARL's Hydra loader (``load_task_config_from_hydra``)."""
    task_config_registry.update({f"{ENV_NAME}/{task.name.lower()}": task for task in P2PMarlTask})


@hydra.main(version_base=None, config_path="benchmarl_conf", config_name="run")
def main(cfg: DictConfig) -> None:
    """BenchMARL's ``benchmarl/run.py`` with the p2p_marl tasks registered."""
    torch.set_num_threads(1)  # small MLPs: one thread is fastest (see shared FACTS)
    register()
    task_name = HydraConfig.get().runtime.choices.task
    with warnings.catch_warnings():
        # BenchMARL looks for a typed TaskConfig dataclass inside its own package and warns when there is none;
        # P2PMarlClass validates the task config as an EnvConfig instead.
        warnings.filterwarnings("ignore", message="TaskConfig python dataclass not found")
        experiment = load_experiment_from_hydra(cfg, task_name=task_name)
    experiment.run()


if __name__ == "__main__":
    main()
