"""RLlib PPO with one policy shared by every household, on a community from configs/env/.

    pip install -e ".[rllib]"
    python examples/rllib_ppo.py                          # community_10, 5 iterations, local Ray on 2 CPUs
    python examples/rllib_ppo.py --address auto --num-env-runners 16   # on a running Ray cluster (ray start)

Prints, per training iteration, the mean return of the episodes finished in it (one episode = one day; the
return is the sum over households, i.e. minus the community's cost of the day).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ray
import torch
import yaml
from ray.rllib.algorithms.ppo import PPOConfig

from p2p_marl.config import make_config
from p2p_marl.integrations import rllib as p2p_rllib

ENV_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "env"


def build_config(env_config: dict, num_env_runners: int, train_batch_size: int, seed: int) -> PPOConfig:
    """PPO over the registered environment; minibatches of a quarter of the batch, 4 epochs each."""
    config = (PPOConfig()
              .environment(p2p_rllib.ENV_NAME, env_config=env_config)
              # RLlib waits 60 s for a first batch by default, too short on a busy 2-core machine.
              .env_runners(num_env_runners=num_env_runners, rollout_fragment_length="auto", sample_timeout_s=600)
              .training(train_batch_size_per_learner=train_batch_size, minibatch_size=train_batch_size // 4,
                        num_epochs=4)
              .debugging(seed=seed))
    return p2p_rllib.share_one_policy(config)


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="community_10", choices=sorted(p.stem for p in ENV_CONFIG_DIR.glob("*.yaml")),
                        help="a configs/env/<name>.yaml (EnvConfig fields)")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--num-env-runners", type=int, default=2)
    parser.add_argument("--train-batch-size", type=int, default=1920, help="env steps per iteration (48 a day)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--address", default=None,
                        help="Ray cluster address ('auto' = the cluster this node joined); default: a local Ray")
    parser.add_argument("--env-override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="EnvConfig fields on top of --env, e.g. n_days=20")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # small MLPs: one thread per process is fastest (see shared FACTS)
    env_config = yaml.safe_load((ENV_CONFIG_DIR / f"{args.env}.yaml").read_text())
    for override in args.env_override:
        if "=" not in override:
            parser.error(f"--env-override {override!r}: expected KEY=VALUE with an EnvConfig field as KEY")
        key, value = override.split("=", 1)
        env_config[key] = yaml.safe_load(value)
    make_config(**env_config)  # a bad key or value fails here, not inside a remote env runner
    p2p_rllib.register()
    # Each env runner is an actor that holds one CPU; the learner runs in this driver process.
    context = (ray.init(num_cpus=max(2, args.num_env_runners), include_dashboard=False) if args.address is None
               else ray.init(address=args.address))
    returns = []
    with context:  # ray.shutdown() on the way out, also after an error
        algo = build_config(env_config, args.num_env_runners, args.train_batch_size, args.seed).build_algo()
        try:
            for iteration in range(1, args.iterations + 1):
                result = algo.train()
                returns.append(float(result["env_runners"]["episode_return_mean"]))
                print(f"iteration {iteration}: episode return {returns[-1]:.3f} "
                      f"(mean of {result['env_runners']['num_episodes']} days, "
                      f"{int(result['env_runners']['num_env_steps_sampled_lifetime'])} env steps so far)", flush=True)
        finally:
            algo.stop()
    return returns


if __name__ == "__main__":
    main()
