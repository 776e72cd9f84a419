"""MADDPG with parameter sharing: one deterministic actor for every agent, one centralised critic.

Read top to bottom like a CleanRL single-file algorithm. One ``iterate()``:

1. **Rollout** -- ``num_envs`` communities play one whole episode (one day) on the batched core. Every agent
   acts with the shared actor ``mu(o_i [, one-hot i])``, a tanh output in [-1, 1]^3 mapped onto
   the environment's action by ``nets.env_action``, plus Gaussian exploration noise clipped to the box. The
   noise std decays linearly from ``noise_std_start`` to ``noise_std_end`` over ``noise_decay_steps``
   community-steps and may be correlated from step to step (``noise_correlation``). The first
   ``learning_starts`` community-steps use uniform random actions instead (as CleanRL's DDPG and TD3).
2. **Replay** -- the episodes go into a replay buffer of whole days (observations (T + 1, N, obs_dim); actions
   (T, N, 3); rewards (T, N)); a transition is a (day, step) pair.
3. **Updates** -- ``gradient_steps`` minibatches of ``batch_size`` community-steps, each for all N agents.
   The critic ``Q_i(o_i, a_i, o_1..o_N, a_1..a_N [, one-hot i])`` sees every observation and every action,
   the agent's own first, and is shared across agents. It regresses on the n-step target
   ``reward_scale * sum_k gamma^k r_i(t + k) + gamma^n Q'_i(o'(t + n), mu'(o'(t + n)))`` from target networks
   (``n_step`` = 1 is the one-step target of Lowe et al. 2017; nothing is earned after the day's last step).
   The actor ascends ``Q_i(o, a_1..mu(o_i)..a_N)``: agent i's own action from the current actor, everyone
   else's from replay (Lowe et al.), with a small penalty ``action_l2`` on the pre-tanh outputs; with
   ``actor_others_current`` (off by default) everyone else's from the current actor too, not differentiated
   (as MAAC's and FACMAC's policy gradients sample the other agents from their current policies, and, as MAAC's,
   without differentiating through them: the gradient is taken where the others play now, not where they played
   when the step was stored); with ``actor_joint_gradient`` as well (off by default) the others' actions carry the
   gradient too, FACMAC-style centralised policy gradients (Peng et al. 2021) over the mean of the per-agent Qs
   rather than a mixing critic: the shared actor ascends each agent's Q through every agent's action, so a
   household's action is also pushed towards what raises its neighbours' values. Each action's Q-term gradient
   then sums up to N critics' contributions instead of one, so it weighs more against ``action_l2`` and the
   imitation loss (``actor_q_normalised`` divides by the values' scale, not this). Target
   networks track with Polyak ``tau``. ``policy_delay`` and ``target_noise_std`` add TD3's delayed actor
   updates and target smoothing (the default smooths the targets, ``target_noise_std=0.2``, without the delay).
   Optionally (``lr_end_fraction`` < 1; off by default) both learning rates decay linearly to that fraction of
   their start over the first ``lr_decay_steps`` community-steps, set once per iteration, as MAPPO's. The first
   ``critic_warmup_iterations`` iterations of the run (0 by default; counted from its start, so those of the
   ``learning_starts`` random actions, which update nothing, are among them) update the critic alone, as MAPPO's
   may: a warm-started actor then first meets the gradient of a critic that has learned its values.

Learning from a teacher (its own row beside the pure learner; off by default): with ``imitation_days`` > 0 the
actor is first fitted to a planning teacher's actions (the optimum, or MPC on the environment's forecaster, with
``imitation_rounds`` of DAgger, whose states weigh by the actor's regret there with ``imitation_regret_weight``
> 0; the states where the feeder binds with idle batteries weigh ``imitation_feeder_weight``), and the target
actor copies it; with ``imitation_coef`` > 0 every actor update also descends that weight x the imitation loss on
the kept demonstrations (``p2p_marl.algos.imitation``). The warm start's fits take Adam at ``actor_lr`` in
``IMITATION_MINIBATCHES`` minibatches per pass. With
``actor_q_normalised`` (off by default) the actor's Q term is divided by the minibatch's mean ``|Q|`` (not
differentiated), TD3+BC's balance (Fujimoto and Gu 2021: ``lambda = alpha / mean |Q|``, so ``imitation_coef`` =
1 / alpha): the imitation loss then weighs the same against the critic's gradient whatever the scale of the
returns, which grows as the critic learns them.

Training reward: the environment's reward, or, with ``cooperative_weight`` set, the core's reward with that
cooperative weight; with ``penalty_reward="community"`` each agent bears the step's whole network penalty
instead of its share (``nets.penalty_training_reward``); with ``trade_reward="marginal"`` (the default) its P2P
trades are valued at the community's marginal grid price of the step instead of the clearing price
(``nets.trade_training_reward``). The community cost that is reported and evaluated depends on none of these.

Checkpoints: episodes never straddle ``iterate()`` calls, so ``state_dict()`` (networks, target networks,
optimisers, the filled part of the replay buffer, the numpy and torch generators, counters, and with
``imitation_coef`` > 0 the demonstrations and their weights) resumes a run exactly.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from p2p_marl.algos.base import Learner
from p2p_marl.algos.imitation import (FEEDER_WEIGHT_RANGE, IMITATION_INTEGERS, IMITATION_RANGES, REGRET_WEIGHT_RANGE,
                                      ActorImitation, check_demonstration_weights, check_imitation)
from p2p_marl.algos.nets import (
    LR_SCHEDULE_INTEGERS,
    LR_SCHEDULE_RANGES,
    ActorPolicy,
    check_multi_agent_keys,
    check_trade_reward,
    env_action,
    episode_metrics,
    load_rng_state,
    mlp,
    penalty_training_reward,
    trade_training_reward,
    rng_state,
    set_learning_rates,
    training_env,
    with_agent_id,
)
from p2p_marl.baselines.policy import Policy
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import ACTION_DIM, CommunityCore
from p2p_marl.training.validation import check_bools, check_network, check_ranges
from p2p_marl.training.value_based import linear_schedule


@dataclass
class MADDPGConfig:
    """MADDPG hyperparameters; mirrored 1:1 by ``configs/algo/maddpg.yaml``."""

    name: str = "maddpg"
    num_envs: int = 16  # communities simulated in lockstep; one iteration = one day of each
    buffer_days: int = 2000  # replay capacity in community-days (x steps_per_episode transitions)
    batch_size: int = 256  # community-steps per minibatch (each trains all N agents)
    gradient_steps: int = 32  # minibatch updates per iteration
    learning_starts: int = 4000  # community-steps of uniform random actions before the first update
    gamma: float = 0.99
    n_step: int = 8  # n-step TD targets (uncorrected for exploration, as in D4PG); 1 = plain MADDPG. One-step
    # targets crawl through a 48-step day one target update at a time and stayed biased for thousands of updates
    tau: float = 0.01  # Polyak weight of the online networks in each target update
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    lr_end_fraction: float = 1.0  # both learning rates decay linearly to this fraction of their start value (1:
    lr_decay_steps: int = 600_000  # constant) over this many community-steps, then stay, as MAPPO's
    action_l2: float = 1e-3  # penalty on the actor's pre-tanh outputs (as in Lowe et al.'s code): keeps tanh
    # out of saturation, where its gradient, and so learning, would vanish
    max_grad_norm: float = 1.0
    reward_scale: float = 10.0  # the per-step bills are small (~0.01-0.3); scaled rewards suit the critic
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    noise_std_start: float = 0.3  # exploration noise std in the actor's [-1, 1] box
    noise_std_end: float = 0.1
    noise_decay_steps: int = 400_000  # community-steps of linear decay (200k to 0.05 left 1 seed of 3 stuck)
    noise_correlation: float = 0.0  # step-to-step correlation of the noise (AR(1), Ornstein-Uhlenbeck-like):
    # persistent deviations make batteries hold or fill over hours, which white noise rarely does
    policy_delay: int = 1  # critic updates per actor and target update (TD3's delay; 1 = plain MADDPG)
    target_noise_std: float = 0.2  # TD3's target smoothing: noise on the target actions (0 = plain MADDPG)
    target_noise_clip: float = 0.5
    actor_agent_id: bool = True  # append the one-hot agent identity to the actor's observation
    critic_agent_id: bool = True  # per-agent values Q_i (needed when rewards differ between agents)
    cooperative_weight: float | None = 0.0  # 0: each agent learns from its own bill; 1: from the community's mean
    # bill; null: the environment's own reward
    battery_action: str = "net_load"  # what the actor's battery output means: "power", "target_soc", "net_load" or
    # "feasible" (nets); net_load won on the validation days (README, what was tried)
    penalty_reward: str = "share"  # "share": the network penalty as billed; "community": each agent bears the step's
    # whole community penalty in its training reward (nets.penalty_training_reward)
    penalty_weight: float = 1.0  # the training reward bears this multiple of that penalty (1: as billed)
    voltage_margin_pu: float = 0.0  # train on the voltage band narrowed by this on both sides (nets.training_env)
    trade_reward: str = "marginal"  # "marginal": P2P trades valued at the community's marginal grid price of the
    # step in the training reward (nets.trade_training_reward; not with a shared battery); "price": as billed
    imitation_days: int = 0  # > 0: first fit the actor to the teacher on this many training episodes ...
    imitation_epochs: int = 50  # ... for this many passes over them; 0 days = pure RL (p2p_marl.algos.imitation)
    imitation_teacher: str = "optimum"  # "optimum" (perfect foresight) or "mpc" (on the env's forecaster)
    imitation_rounds: int = 0  # DAgger rounds after the first fit (mpc teacher): the actor plays imitation_days
    # more training episodes, the teacher labels the states it reaches, and the actor is fitted to all of them
    imitation_coef: float = 0.0  # > 0: each actor update adds this weight x the imitation loss on them
    imitation_smoothing_per_kwh: float = 0.0  # > 0: the teacher's plans break ties towards spread battery power
    # (optimal.py's power_smoothing_per_kwh); 0: HiGHS's own choice among equal plans
    imitation_regret_weight: float = 0.0  # > 0: a DAgger round's states weigh (1 + this x the student's regret
    # there / the round's mean regret) / (1 + this) in the fit and the imitation loss (imitation.regret_weights)
    imitation_feeder_weight: float = 1.0  # the demonstrations at steps where the feeder binds with idle batteries
    # weigh this, times any regret weight, in the fit and the imitation loss (imitation.feeder_weights)
    critic_warmup_iterations: int = 0  # the run's first this many iterations (learning_starts' included) update
    # the critic only (the actor stays)
    actor_q_normalised: bool = False  # the actor's Q term divided by the minibatch's mean |Q| (TD3+BC's balance)
    actor_others_current: bool = False  # the actor update's other agents act as the current actor, not as replayed
    actor_joint_gradient: bool = False  # with actor_others_current: the others' actions differentiated too
    # (FACMAC-style, over the per-agent Qs' mean rather than a mixing critic)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.name != "maddpg":
            raise ConfigError(f"maddpg.name must be 'maddpg', got {self.name!r}")
        check_ranges(self, _RANGES, _INTEGERS, "maddpg")
        check_network(self, "maddpg")
        check_multi_agent_keys(self, "maddpg")
        check_imitation(self, "maddpg", self.battery_action)
        check_demonstration_weights(self, "maddpg")
        check_bools(self, ("actor_q_normalised", "actor_others_current", "actor_joint_gradient"), "maddpg")
        if self.actor_joint_gradient and not self.actor_others_current:
            raise ConfigError("maddpg.actor_joint_gradient=true differentiates the other agents' current actions: "
                              "it needs maddpg.actor_others_current=true (replayed actions have no gradient)")
        if self.noise_std_end > self.noise_std_start:
            raise ConfigError(f"maddpg.noise_std_end={self.noise_std_end!r} must not exceed "
                              f"noise_std_start={self.noise_std_start!r}")


_INTEGERS = {"num_envs", "buffer_days", "batch_size", "gradient_steps", "learning_starts", "noise_decay_steps",
             "policy_delay", "n_step", "critic_warmup_iterations", *LR_SCHEDULE_INTEGERS, *IMITATION_INTEGERS}
_RANGES = (
    ("num_envs", 1, 100_000, True, True),
    ("buffer_days", 1, 10_000_000, True, True),
    ("batch_size", 1, 1_000_000, True, True),
    ("gradient_steps", 0, 100_000, True, True),
    ("learning_starts", 0, 10 ** 12, True, True),
    ("gamma", 0.0, 1.0, True, True),
    ("n_step", 1, 10_000, True, True),
    ("tau", 0.0, 1.0, False, True),
    ("actor_lr", 0.0, 1.0, False, True),
    ("critic_lr", 0.0, 1.0, False, True),
    *LR_SCHEDULE_RANGES,
    ("action_l2", 0.0, 1e3, True, True),
    ("max_grad_norm", 0.0, math.inf, False, False),
    ("reward_scale", 0.0, 1e6, False, True),
    ("noise_std_start", 0.0, 10.0, True, True),
    ("noise_std_end", 0.0, 10.0, True, True),
    ("noise_decay_steps", 1, 10 ** 12, True, True),
    ("noise_correlation", 0.0, 1.0, True, False),
    ("policy_delay", 1, 1000, True, True),
    ("target_noise_std", 0.0, 10.0, True, True),
    ("target_noise_clip", 0.0, 10.0, True, True),
    ("penalty_weight", 0.0, 1000.0, False, True),
    ("voltage_margin_pu", 0.0, 0.5, True, False),
    ("critic_warmup_iterations", 0, 10**9, True, True),
    *IMITATION_RANGES,
    REGRET_WEIGHT_RANGE,
    FEEDER_WEIGHT_RANGE,
)
IMITATION_MINIBATCHES = 16  # minibatches per pass of the warm start's first fit (MAPPO's num_minibatches)


class DayReplay:
    """A ring buffer of whole community-days (float32), sampled as uniform (day, step) transitions."""

    def __init__(self, capacity_days: int, steps: int, n_agents: int, obs_dim: int):
        self.capacity, self.steps = capacity_days, steps
        self.obs = np.zeros((capacity_days, steps + 1, n_agents, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity_days, steps, n_agents, ACTION_DIM), dtype=np.float32)
        self.rewards = np.zeros((capacity_days, steps, n_agents), dtype=np.float32)
        self.next_slot = 0
        self.size = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Store B days: obs (T + 1, B, N, obs_dim), actions (T, B, N, 3), rewards (T, B, N)."""
        for b in range(obs.shape[1]):
            self.obs[self.next_slot] = obs[:, b]
            self.actions[self.next_slot] = actions[:, b]
            self.rewards[self.next_slot] = rewards[:, b]
            self.next_slot = (self.next_slot + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator, n_step: int, gamma: float
               ) -> tuple[np.ndarray, ...]:
        """``batch_size`` random n-step transitions: (obs, actions, discounted sum of the next ``n_step`` rewards
        (fewer where the day ends first), the observation ``n_step`` steps later, 1 where the day ended before)."""
        day = rng.integers(self.size, size=batch_size)
        step = rng.integers(self.steps, size=batch_size)
        ahead = step[:, None] + np.arange(n_step)  # (batch, n_step)
        discount = (gamma ** np.arange(n_step) * (ahead < self.steps)).astype(np.float32)
        rewards = (self.rewards[day[:, None], np.minimum(ahead, self.steps - 1)] * discount[..., None]).sum(axis=1)
        later = np.minimum(step + n_step, self.steps)
        terminal = (step + n_step >= self.steps).astype(np.float32)
        return self.obs[day, step], self.actions[day, step], rewards, self.obs[day, later], terminal

    def state_dict(self) -> dict[str, Any]:
        # Tensors, so that checkpoints load with torch.load(weights_only=True); only the filled days, so that a
        # checkpoint early in training stays small.
        return {"obs": torch.from_numpy(self.obs[:self.size].copy()),
                "actions": torch.from_numpy(self.actions[:self.size].copy()),
                "rewards": torch.from_numpy(self.rewards[:self.size].copy()),
                "next_slot": self.next_slot, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = state["size"]
        shape = tuple(state["obs"].shape[1:])
        if size > self.capacity or shape != self.obs.shape[1:]:
            raise ValueError(f"replay buffer of {size} days shaped {shape} does not fit this learner's "
                             f"{self.capacity} days shaped {self.obs.shape[1:]}")
        self.obs[:size] = state["obs"].numpy()
        self.actions[:size] = state["actions"].numpy()
        self.rewards[:size] = state["rewards"].numpy()
        self.next_slot, self.size = state["next_slot"], size


class MADDPG(Learner):
    name = "maddpg"

    def __init__(self, env_config: EnvConfig, config: MADDPGConfig, seed: int, threads: int = 1):
        super().__init__(env_config, config, seed, threads)
        torch.set_num_threads(threads)  # small MLPs: one is fastest on a shared CPU (FACTS.md), more for a run alone
        trained_on = training_env(env_config, config.cooperative_weight, config.voltage_margin_pu, "maddpg")
        self.core = CommunityCore(trained_on, batch_size=config.num_envs)
        check_trade_reward(config.trade_reward, self.core, "maddpg")
        n_agents, obs_dim = self.core.n_agents, self.core.obs_dim
        self.device = torch.device(config.device)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        # Build the networks from the seed without touching torch's global generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            actor_in = obs_dim + n_agents * config.actor_agent_id
            critic_in = (n_agents + 1) * (obs_dim + ACTION_DIM) + n_agents * config.critic_agent_id
            self.actor = nn.Sequential(mlp(actor_in, config.hidden_sizes, ACTION_DIM, nn.ReLU, out_gain=0.01),
                                       nn.Tanh()).to(self.device)
            self.critic = mlp(critic_in, config.hidden_sizes, 1, nn.ReLU, out_gain=1.0).to(self.device)
        self.target_actor = copy.deepcopy(self.actor)
        self.target_critic = copy.deepcopy(self.critic)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.replay = DayReplay(config.buffer_days, self.core.steps_per_episode, n_agents, obs_dim)
        self.imitation = ActorImitation(self._actor_input, self.actor, self.actor.parameters(), self.actor_optimizer,
                                        config.max_grad_norm, self.generator, self.device, threads)
        self.iterations = 0
        self.updates = 0

    # ------------------------------------------------------------------ inputs
    def _actor_input(self, obs: torch.Tensor) -> torch.Tensor:
        return with_agent_id(obs, self.config.actor_agent_id)

    def _q(self, critic: nn.Module, obs: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        """Q of every agent (Bs, N) from stored observations (Bs, N, D) and each agent's joint action (Bs, N, N, 3):
        ``joint_actions[:, i]`` is the action profile that agent i's value is asked about.

        Agent i's critic input is (o_i, a_i, o_1..o_N, a_1..a_N [, one-hot i]): every observation and action,
        with the agent's own first, so that the shared critic finds an agent's own action in the same place
        for every agent instead of having to route it by identity. The first layer is evaluated in parts, the
        same affine map: o_1..o_N, most of the input, is the same for every agent, so its product is taken once
        per community-step instead of once per agent, and the one-hot identity's product is a column of the
        weights."""
        n_samples, n_agents, obs_dim = obs.shape
        first = critic[0]
        weight = first.weight  # (H, in): columns o_i, a_i, o_1..o_N, a_1..a_N [, one-hot i]
        own_end = obs_dim + ACTION_DIM
        all_obs_end = own_end + n_agents * obs_dim
        joint_end = all_obs_end + n_agents * ACTION_DIM
        own_actions = joint_actions.diagonal(dim1=1, dim2=2).transpose(1, 2)  # (Bs, N, 3): a_i of profile i
        per_agent = torch.cat([obs, own_actions, joint_actions.flatten(2)], dim=-1)
        hidden = (nn.functional.linear(per_agent, torch.cat([weight[:, :own_end], weight[:, all_obs_end:joint_end]],
                                                            dim=1), first.bias)
                  + nn.functional.linear(obs.reshape(n_samples, 1, -1), weight[:, own_end:all_obs_end]))
        if self.config.critic_agent_id:
            hidden = hidden + weight[:, joint_end:].T  # (N, H): agent i's one-hot picks column i
        return critic[1:](hidden).squeeze(-1)

    def noise_std(self) -> float:
        cfg = self.config
        return linear_schedule(cfg.noise_std_start, cfg.noise_std_end, cfg.noise_decay_steps, self.env_steps)

    # ------------------------------------------------------------------ one iteration
    def iterate(self) -> dict[str, float]:
        cfg, core = self.config, self.core
        start = time.perf_counter()
        imitation = self.imitate() if self.iterations == 0 and cfg.imitation_days > 0 else {}
        T, B = core.steps_per_episode, core.batch_size
        lr_scale = linear_schedule(1.0, cfg.lr_end_fraction, cfg.lr_decay_steps, self.env_steps)
        set_learning_rates(lr_scale, (self.actor_optimizer, cfg.actor_lr), (self.critic_optimizer, cfg.critic_lr))

        # 1. Rollout: one day of every community with exploration noise.
        noise_std = self.noise_std()
        rho = cfg.noise_correlation
        warming_up = self.env_steps < cfg.learning_starts
        noise = torch.zeros(B, core.n_agents, ACTION_DIM)
        observations, actions, rewards, costs = [], [], [], []
        obs = core.reset(seed=int(self.rng.integers(2 ** 63)))
        done = False
        while not done:
            observations.append(obs)
            with torch.no_grad():
                x = self._actor_input(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
                mu = self.actor(x).cpu()
            # AR(1) with stationary std noise_std: rho * previous + sqrt(1 - rho^2) * fresh.
            noise = rho * noise + math.sqrt(1.0 - rho ** 2) * noise_std * torch.randn(mu.shape,
                                                                                     generator=self.generator)
            if warming_up:  # uniform random actions until learning starts (as CleanRL's DDPG and TD3)
                u = (2.0 * torch.rand(mu.shape, generator=self.generator) - 1.0).numpy()
            else:
                u = (mu + noise).clamp(-1.0, 1.0).numpy()
            obs, reward, done, infos = core.step(env_action(u.astype(np.float64), core, obs, cfg.battery_action))
            actions.append(u)
            reward = trade_training_reward(reward, infos, core.config.cooperative_weight, cfg.trade_reward)
            rewards.append(penalty_training_reward(reward, infos["penalty"], core.config.cooperative_weight,
                                                   cfg.penalty_reward, cfg.penalty_weight))
            costs.append(infos["cost"])
        observations.append(obs)
        rewards_np, costs_np = np.stack(rewards), np.stack(costs)  # (T, B, N)
        self.replay.add(np.stack(observations), np.stack(actions), rewards_np)
        self.env_steps += T * B

        # 2. Updates from replay.
        stats: dict[str, list[float]] = {"critic_loss": [], "actor_loss": [], "q_value": [],
                                         **({"imitation_loss": []} if cfg.imitation_coef > 0.0 else {})}
        if self.env_steps >= cfg.learning_starts:
            for _ in range(cfg.gradient_steps):
                self._update(stats)
                self.updates += 1
        self.iterations += 1

        elapsed = time.perf_counter() - start
        return {
            **episode_metrics(rewards_np, costs_np),
            **{key: float(np.mean(values)) if values else float("nan") for key, values in stats.items()},
            "exploration": noise_std,
            "learning_rate_scale": lr_scale,
            "buffer_days": float(self.replay.size),
            "steps_per_second": T * B / elapsed,
            **imitation,
        }

    def imitate(self, teacher: Policy | None = None) -> dict[str, float]:
        """The warm start from the teacher (``imitation.ActorImitation.warm_start``; a ``teacher`` policy
        replaces the config's); the target actor starts from its result."""
        metrics = self.imitation.warm_start(self.core, self.config, self.rng, self.policy, IMITATION_MINIBATCHES,
                                            teacher)
        self.target_actor.load_state_dict(self.actor.state_dict())
        return metrics

    def _update(self, stats: dict[str, list[float]]) -> None:
        cfg = self.config
        obs, actions, rewards, next_obs, terminal = (
            torch.as_tensor(a, device=self.device)
            for a in self.replay.sample(cfg.batch_size, self.rng, cfg.n_step, cfg.gamma))
        n_agents = obs.shape[1]

        # Critic: n-step TD target from the target networks; nothing is earned after the day's last step.
        with torch.no_grad():
            next_actions = self.target_actor(self._actor_input(next_obs))
            if cfg.target_noise_std > 0.0:
                noise = torch.randn(next_actions.shape, generator=self.generator).to(self.device)
                noise = (cfg.target_noise_std * noise).clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
                next_actions = (next_actions + noise).clamp(-1.0, 1.0)
            next_joint = next_actions.unsqueeze(1).expand(-1, n_agents, -1, -1)
            bootstrap = cfg.gamma ** cfg.n_step * (1.0 - terminal[:, None])
            target = cfg.reward_scale * rewards + bootstrap * self._q(self.target_critic, next_obs, next_joint)
        joint = actions.unsqueeze(1).expand(-1, n_agents, -1, -1)
        q = self._q(self.critic, obs, joint)
        critic_loss = 0.5 * (q - target).pow(2).mean()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
        self.critic_optimizer.step()
        stats["critic_loss"].append(critic_loss.item())
        stats["q_value"].append(q.mean().item())
        if self.updates % cfg.policy_delay:
            return
        if self.iterations >= cfg.critic_warmup_iterations:
            self._update_actor(obs, joint, stats)
        # During the warm-up the target actor's step leaves it as it is: it equals the actor, which stays.
        with torch.no_grad():
            for net, target_net in ((self.actor, self.target_actor), (self.critic, self.target_critic)):
                for p, p_target in zip(net.parameters(), target_net.parameters()):
                    p_target.lerp_(p, cfg.tau)

    def _update_actor(self, obs: torch.Tensor, joint: torch.Tensor, stats: dict[str, list[float]]) -> None:
        """One actor step on a minibatch: observations (M, N, obs_dim), replayed joint actions (M, N, N, 3)."""
        cfg = self.config
        n_agents = obs.shape[1]
        own = torch.eye(n_agents, dtype=torch.bool, device=self.device)[None, :, :, None]  # [., i, j, .]: j == i
        # Agent i's own action from the current actor, everyone else's from replay (or, actor_others_current,
        # the current actor's, with its gradient only with actor_joint_gradient). The critic is frozen meanwhile:
        # the backward pass then skips its weight gradients, which the actor's step does not use.
        pre_tanh = self.actor[0](self._actor_input(obs))
        action = torch.tanh(pre_tanh).unsqueeze(1)
        if cfg.actor_joint_gradient:
            own_joint = action.expand(-1, n_agents, -1, -1)
        else:
            others = action.detach().expand(-1, n_agents, -1, -1) if cfg.actor_others_current else joint
            own_joint = torch.where(own, action, others)
        self.critic.requires_grad_(False)
        q = self._q(self.critic, obs, own_joint)
        q_term = q.mean() / q.abs().mean().detach().clamp_min(1e-8) if cfg.actor_q_normalised else q.mean()
        actor_loss = -q_term + cfg.action_l2 * pre_tanh.pow(2).mean()
        loss = actor_loss
        if cfg.imitation_coef > 0.0:
            imitation_loss = self.imitation.loss(obs.shape[0] * n_agents)
            loss = actor_loss + cfg.imitation_coef * imitation_loss
            stats["imitation_loss"].append(imitation_loss.item())
        self.actor_optimizer.zero_grad()
        loss.backward()
        self.critic.requires_grad_(True)
        nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)
        self.actor_optimizer.step()
        stats["actor_loss"].append(actor_loss.item())

    # ------------------------------------------------------------------ evaluation and checkpoints
    def policy(self) -> ActorPolicy:
        return ActorPolicy(self.name, copy.deepcopy(self.actor), self.config.actor_agent_id, self.config.battery_action)

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_actor": self.target_actor.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "replay": self.replay.state_dict(),
            "rng": rng_state(self.rng, self.generator),
            "env_steps": self.env_steps,
            "iterations": self.iterations,
            "updates": self.updates,
            **self.imitation.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("actor", "critic", "target_actor", "target_critic", "actor_optimizer", "critic_optimizer",
                    "replay"):
            getattr(self, key).load_state_dict(state[key])
        load_rng_state(self.rng, self.generator, state["rng"])
        self.env_steps = state["env_steps"]
        self.iterations = state["iterations"]
        self.updates = state["updates"]
        self.imitation.load_state_dict(state, self.iterations, self.config.imitation_coef)
