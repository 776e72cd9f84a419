"""Hydra launcher: every job of a multirun is one Ray task, on a local Ray or on a running Ray cluster.

Hydra's own hydra-ray-launcher pins ``cloudpickle<3``, which cannot be installed beside the joblib launcher
(joblib 1.6 needs cloudpickle 3), and hydra-joblib-launcher hard-codes joblib's loky backend, so neither
reaches Ray here. This launcher is the part of hydra-ray-launcher a sweep needs: connect, submit one task per
job, gather the results. Hydra imports every plugin module on start-up, so Ray is imported only in ``launch``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def _execute_job(job_num: int, overrides: Sequence[str], hydra_context: HydraContext, config: DictConfig,
                 task_function: TaskFunction, singleton_state: dict[Any, Any], cwd: str) -> JobReturn:
    """Runs in a Ray worker: rebuild Hydra's global state there, compose this job's config and run it."""
    import os

    def task(job_config: DictConfig) -> Any:
        # train.py exits with SystemExit("...: error: ...") on bad input; Ray would take that for a crashed
        # worker and lose the message, so it becomes an ordinary failure of this job, reported by Hydra.
        try:
            return task_function(job_config)
        except SystemExit as error:
            raise RuntimeError(str(error.code)) from None

    # Relative sweep directories mean the same place as on the driver (Ray workers start elsewhere); on a
    # cluster the driver's directory must exist on every node (a shared file system).
    os.chdir(cwd)
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{job_num}"
        sweep_config.hydra.job.num = job_num
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, task_function=task, config=sweep_config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


class RayLauncher(Launcher):
    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_job: float = 1.0
                 ) -> None:
        """``address``: null starts a new local Ray (``num_cpus`` cores, null = all), even where a cluster is
        running; ``auto`` or ``<head-ip>:6379`` joins a running cluster. ``cpus_per_job``: Ray CPUs each job
        reserves, so a cluster runs (its CPUs / cpus_per_job) jobs at once. Jobs run in the driver's working
        directory, so relative sweep directories resolve as they do for the other launchers."""
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_job = cpus_per_job
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        cwd = str(Path.cwd())
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if not ray.is_initialized():
            # "local" rather than None: ray.init(None) would join any cluster already running on this machine.
            # A cluster brings its own CPUs; num_cpus only sizes a local Ray.
            ray.init(address=self.address or "local", num_cpus=None if self.address else self.num_cpus,
                     include_dashboard=False)
        log.info(f"Ray launcher: {len(job_overrides)} jobs, {self.cpus_per_job} CPU each, on "
                 f"{ray.cluster_resources().get('CPU', 0):g} CPUs; sweep output dir: {sweep_dir}")
        for idx, overrides in enumerate(job_overrides):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")

        # No retries: a job that died half-way would start again over its own run directory.
        remote_job = ray.remote(num_cpus=self.cpus_per_job, max_retries=0)(_execute_job)
        singleton_state = Singleton.get_state()
        futures = [remote_job.remote(initial_job_idx + idx, overrides, self.hydra_context, self.config,
                                     self.task_function, singleton_state, cwd)
                   for idx, overrides in enumerate(job_overrides)]
        return ray.get(futures)
