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
native batched TorchRL environment (``p2p_marl.integrations.torchrl.P2PTorchRLEnv``): one agent group ``prosumer``,
the global state for centralised critics (MAPPO, MADDPG, QMIX), continuous actions or, for discrete algorithms,
the ``discrete_action_table`` grid. Like a VMAS task, it is vectorised: BenchMARL's ``num_envs`` communities
(``on_policy_n_envs_per_worker``, ``evaluation_episodes``, ...) are the ``batch_size`` of one environment, stepped
together by one ``CommunityCore``; BenchMARL adds no ``SerialEnv``.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any, Callable

import hydra
import torch
import yaml
from benchmarl.environments import Task, TaskClass, task_config_registry
from benchmarl.hydra_config import load_experiment_from_hydra
from benchmarl.utils import DEVICE_TYPING
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torchrl.data import Composite
from torchrl.envs import EnvBase

from p2p_marl.config import make_config
from p2p_marl.integrations.torchrl import GROUP, make_torchrl_env

ENV_NAME = "p2p_marl"
CONF_DIR = Path(__file__).parent / "benchmarl_conf"


class P2PMarlClass(TaskClass):
    """The BenchMARL task class over the batched ``P2PTorchRLEnv``; its specs are read the way VMAS's task reads
    them (unbatched: one community).

    The config is validated as an EnvConfig at construction, so a bad key or value fails before any run.
    """

    def __init__(self, name: str, config: dict[str, Any] | None):
        super().__init__(name, config)
        self.env_config = make_config(**self.config)

    def get_env_fun(self, num_envs: int, continuous_actions: bool, seed: int | None,
                    device: DEVICE_TYPING) -> Callable[[], EnvBase]:
        env_config = self.env_config.replace(action_mode="continuous" if continuous_actions else "discrete")
        # BenchMARL calls the returned function once per environment it needs; should it call it more than once,
        # the k-th environment built gets seed + k, so that they do not all draw the same days.
        seeds = itertools.count(seed) if seed is not None else itertools.repeat(None)
        return lambda: make_torchrl_env(env_config, batch_size=num_envs, seed=next(seeds), device=device)

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

    def group_map(self, env: EnvBase) -> dict[str, list[str]]:
        return env.group_map

    def observation_spec(self, env: EnvBase) -> Composite:
        spec = env.full_observation_spec_unbatched.clone()
        del spec["state"]
        if "info" in spec[GROUP].keys():
            del spec[GROUP, "info"]
        return spec

    def info_spec(self, env: EnvBase) -> Composite | None:
        spec = env.full_observation_spec_unbatched
        if "info" not in spec[GROUP].keys():
            return None
        return Composite({GROUP: Composite({"info": spec[GROUP, "info"].clone()}, shape=spec[GROUP].shape)})

    def state_spec(self, env: EnvBase) -> Composite:
        return Composite({"state": env.full_observation_spec_unbatched["state"].clone()})

    def action_mask_spec(self, env: EnvBase) -> None:
        return None

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec_unbatched

    @staticmethod
    def env_name() -> str:
        return ENV_NAME


class P2PMarlTask(Task):
    """The p2p_marl BenchMARL tasks; their default configs live in ``benchmarl_conf/task/p2p_marl/``."""

    COMMUNITY_10 = None
    COMMUNITY_10_STRONG = None
    COMMUNITY_50 = None
    SIMBENCH_RURAL1 = None  # the SimBench presets need the simbench extra
    SIMBENCH_SEMIURB4 = None
    SIMBENCH_URBAN6 = None

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
