"""Stable-Baselines3 PPO on the centralised view: one controller sets every household's battery and price.

    python examples/sb3_central_ppo.py                    # 10 households, 20k steps (about 420 days)
    python examples/sb3_central_ppo.py --n-agents 20 --timesteps 100000

Trains on the training days (4 communities in a DummyVecEnv), then prints the mean episode return of the
deterministic policy on held-out test days next to the untrained policy's (one episode = one day; the return
is minus the community's cost of the day). The view is ``CommunityCentralEnv`` (gymnasium id
``p2p_marl/CommunityCentral-v0``):
observation = every household's local observation concatenated, action = every household's
(setpoint, price) concatenated, reward = sum of the households' rewards.
"""

from __future__ import annotations

import argparse

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from p2p_marl import CommunityCentralEnv


def main(argv: list[str] | None = None) -> tuple[float, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-agents", type=int, default=10)
    parser.add_argument("--n-days", type=int, default=365, help="synthetic days (train and test split)")
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--eval-days", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # small MLPs: one thread is fastest (see shared FACTS)
    env_kwargs = {"n_agents": args.n_agents, "n_days": args.n_days}
    # make_vec_env wraps each env in a Monitor (episode returns) and DummyVecEnv marks the end of a day as
    # truncation, so PPO bootstraps the value of the next morning instead of treating midnight as terminal.
    train_env = make_vec_env(CommunityCentralEnv, n_envs=4, seed=args.seed, env_kwargs=env_kwargs)
    steps_per_day = train_env.get_attr("config")[0].steps_per_episode
    model = PPO("MlpPolicy", train_env, n_steps=2 * steps_per_day, batch_size=steps_per_day, seed=args.seed,
                verbose=0)

    def test_return() -> float:
        # A fresh, identically seeded env each time, so both evaluations play the same test days.
        test_env = make_vec_env(CommunityCentralEnv, n_envs=1, seed=args.seed + 1,
                                env_kwargs={**env_kwargs, "split": "test"})
        return evaluate_policy(model, test_env, n_eval_episodes=args.eval_days, deterministic=True)[0]

    untrained = test_return()
    model.learn(total_timesteps=args.timesteps, progress_bar=True)
    trained = test_return()
    print(f"mean test-day return: untrained {untrained:.3f}, after {args.timesteps} steps {trained:.3f}")
    return float(untrained), float(trained)


if __name__ == "__main__":
    main()
