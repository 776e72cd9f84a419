"""BenchMARL's MAPPO (or MADDPG, IPPO, ...) on a p2p_marl task, from Python.

    pip install -e ".[benchmarl]"
    python examples/benchmarl_mappo.py                         # MAPPO on community_10, 20 iterations
    python examples/benchmarl_mappo.py --algorithm maddpg --task community_50

The same from the command line, with all of BenchMARL's Hydra options:
``python -m p2p_marl.integrations.benchmarl algorithm=mappo task=p2p_marl/community_10``.
BenchMARL prints the mean episode return per agent as it goes and logs CSV files under ``--save-folder``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from benchmarl.algorithms import IppoConfig, MaddpgConfig, MappoConfig
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models import MlpConfig

from p2p_marl.integrations.benchmarl import P2PMarlTask

ALGORITHMS = {"mappo": MappoConfig, "maddpg": MaddpgConfig, "ippo": IppoConfig}


def main(argv: list[str] | None = None) -> Experiment:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="mappo")
    parser.add_argument("--task", choices=[task.name.lower() for task in P2PMarlTask], default="community_10")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--days-per-iteration", type=int, default=20, help="collected days (48 frames each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-folder", type=Path, default=Path("runs/benchmarl"))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # small MLPs: one thread is fastest (see shared FACTS)
    task = P2PMarlTask[args.task.upper()].get_from_yaml()
    frames = args.days_per_iteration * task.env_config.steps_per_episode
    # Up to 4 communities, stepped together in one batched environment, each collecting whole days, so that every
    # iteration ends episodes to report.
    n_envs = math.gcd(args.days_per_iteration, 4)
    config = ExperimentConfig.get_from_yaml()  # BenchMARL's defaults, scaled down to a laptop below
    config.max_n_iters, config.max_n_frames = args.iterations, None
    config.on_policy_collected_frames_per_batch = config.off_policy_collected_frames_per_batch = frames
    config.on_policy_n_envs_per_worker = config.off_policy_n_envs_per_worker = n_envs
    config.on_policy_minibatch_size = frames // 4
    config.on_policy_n_minibatch_iters = 4
    config.off_policy_n_optimizer_steps = 64
    config.evaluation_interval = 5 * frames
    config.evaluation_episodes = n_envs
    config.loggers = ["csv"]
    args.save_folder.mkdir(parents=True, exist_ok=True)
    config.save_folder = str(args.save_folder.resolve())
    experiment = Experiment(task=task, algorithm_config=ALGORITHMS[args.algorithm].get_from_yaml(),
                            model_config=MlpConfig.get_from_yaml(), critic_model_config=MlpConfig.get_from_yaml(),
                            seed=args.seed, config=config)
    experiment.run()
    print(f"{args.algorithm} on p2p_marl/{args.task}: mean episode return per agent {experiment.mean_return:.3f} "
          f"after {experiment.total_frames} frames; logs in {experiment.folder_name}")
    return experiment


if __name__ == "__main__":
    main()
