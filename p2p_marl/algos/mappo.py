"""MAPPO: multi-agent PPO with one actor shared by every agent and a centralised value function.

Read top to bottom like a CleanRL single-file algorithm. One ``iterate()`` is one PPO iteration:

1. **Rollout** -- ``num_envs`` communities play one whole episode (one day) in lockstep on the batched core.
   The shared actor sees each agent's local observation, forecasts included (+ every household's with
   ``actor_all_households``, an ablation of centralised execution; + its one-hot identity with ``actor_agent_id``;
   see ``nets.actor_input``). With ``actor_recurrent`` the actor also carries each household's memory of the day
   so far, empty at the day's start (``nets.RecurrentActor``): the observations' forecasts are the previous day's
   (persistence), and the memory can tell how today differs from it.
2. **Actions** -- a diagonal Gaussian over a pre-squash point ``u`` in R^3 (state-independent, learned
   ``log_std``); the environment gets ``tanh(u)`` mapped onto (setpoint, price, curtailment share) by
   ``nets.env_action``. Log-probabilities are those of ``u``: the tanh Jacobian is the same under the old
   and the new policy, so it cancels in the PPO ratio, and the entropy bonus is the Gaussian's entropy.
   The deterministic evaluation policy acts with ``tanh(mean)``.
3. **Centralised critic** -- per-agent values for per-agent rewards from the global state ``core.state()`` (the
   same forecasts included): with ``value_heads`` one network reads the state once per community-step and has
   one output per agent (one shared output without ``critic_agent_id``); otherwise it reads the state followed
   by the agent's one-hot identity (``critic_agent_id``), once per agent. It predicts returns normalised by a
   running mean/std of past returns (value normalisation, "PopArt-lite": targets are normalised, the output
   layer is not rescaled), which also takes care of the small scale of the bills; values are de-normalised
   for GAE.
4. **GAE** with ``gamma`` and ``gae_lambda``; the end of the day is terminal (nothing is earned after it).
5. **Update** -- ``update_epochs`` passes over the T * B * N agent-steps in ``num_minibatches`` minibatches
   (with ``value_heads``, the critic's k-th minibatch is the k-th part of a shuffle of the T * B community-steps,
   each with its N values, instead of the actor's agent-steps): clipped surrogate with per-minibatch advantage
   normalisation, entropy bonus, squared value error, Adam with gradient-norm clipping for actor and critic.
   A recurrent actor's minibatches are whole days of B * N / ``num_minibatches`` households, read from the day's
   start (the rollout's memory is not stored: the update rebuilds it), and the critic's are a shuffle of its own
   samples in as many parts.
   Optionally (``lr_end_fraction`` < 1; off by default, as it did not help the pure learner on community_10; 0 for
   the learner from MPC in ``experiment=comparison_from_mpc``, where it settles the policy) both learning
   rates decay linearly to that fraction of their start over the first ``lr_decay_steps`` community-steps
   (CleanRL's ``anneal_lr``) and then stay there. The first ``critic_warmup_iterations`` iterations update the
   critic only (no actor loss, no actor step): after a warm start the fitted actor then meets PPO's advantages
   from a critic that has learned its values, not from a random one.

Training reward: the environment's reward, or, with ``cooperative_weight`` set, the core's reward with
that cooperative weight (each agent learns from ``(1 - w) * own bill + w * community mean bill``); with
``penalty_reward="community"`` each agent bears the step's whole network penalty instead of its share
(``nets.penalty_training_reward``); with ``trade_reward="marginal"`` its P2P trades are valued at the
community's marginal grid price of the step instead of the clearing price (``nets.trade_training_reward``);
with ``reward_baseline="grid_only"`` it learns from each step's saving against the grid-only bill instead of
the bill (``nets.baseline_training_reward``); with ``infeasible_penalty_per_kwh`` > 0 it pays that price for
every kWh its battery setpoint asked for beyond what the battery could do (``nets.infeasible_training_reward``),
its own, unmixed by the cooperative weight. A deterministic policy that asks only for what it gets loses nothing
by it, so the best policy is unchanged; the stochastic policy in training also pays for the exploration noise
that crosses a limit, which pulls its mean a little away from full and empty.
The community cost that is reported and evaluated depends on none of these.

Learning from a teacher (``imitation_days`` > 0, the optimum or MPC, ``p2p_marl.algos.imitation``): the first
iteration fits the actor to the teacher's demonstrations (a warm start, with MPC ``imitation_rounds`` DAgger
rounds); with ``imitation_coef`` > 0 PPO's loss keeps the imitation loss on them, and with MPC and
``imitation_refresh_steps`` > 0 the first iteration after each multiple of that many community-steps starts with
a DAgger round on the actor as it is then, which replaces their oldest round. With ``imitation_regret_weight`` > 0
each DAgger round's states weigh by what the actor's step cost there by MPC's reckoning
(``imitation.regret_weights``); with ``imitation_feeder_weight`` other than 1 the states where the feeder binds
with idle batteries weigh that (``imitation.feeder_weights``).

Inputs: with ``input_norm`` actor and critic first scale their inputs by fixed per-feature statistics of
random-action training days (``nets.InputScaling``, buffers of the networks' state dicts).

Checkpoints: episodes never straddle ``iterate()`` calls, so ``state_dict()`` (networks, optimisers, the
return normaliser, the numpy and torch generators that draw episode seeds, actions and minibatches, and with
``imitation_coef`` > 0 the demonstrations and their weights, float32: about 22 MB for 128 days and 3 DAgger rounds of
community_10) resumes a run exactly as if it had not stopped.
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
    REWARD_BASELINES,
    InputScaling,
    RecurrentActor,
    RecurrentActorPolicy,
    WindowConvolution,
    actor_input,
    baseline_training_reward,
    check_multi_agent_keys,
    check_trade_reward,
    env_action,
    episode_metrics,
    infeasible_training_reward,
    input_statistics,
    load_rng_state,
    mlp,
    penalty_training_reward,
    trade_training_reward,
    rng_state,
    set_learning_rates,
    training_env,
    with_agent_id,
    with_identity_columns,
)
from p2p_marl.baselines.policy import Policy
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import ACTION_DIM, CommunityCore
from p2p_marl.training.validation import check_bools, check_network, check_ranges
from p2p_marl.training.value_based import linear_schedule


@dataclass
class MAPPOConfig:
    """MAPPO hyperparameters; mirrored 1:1 by ``configs/algo/mappo.yaml``."""

    name: str = "mappo"
    num_envs: int = 32  # communities simulated in lockstep; one iteration = one day of each
    gamma: float = 1.0  # an episode is one day of fixed length with the time of day observed: no discounting
    gae_lambda: float = 0.9  # 5 seeds on the comparison's settings: 0.779 against 0.95's 0.770 at the best
    # validation evaluation, with a lower network penalty (README, what was tried: a shorter GAE horizon)
    clip_coef: float = 0.2
    ent_coef: float = 0.005  # keeps the Gaussian from collapsing before the battery schedule is found
    update_epochs: int = 10
    num_minibatches: int = 16
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    lr_end_fraction: float = 1.0  # both learning rates decay linearly to this fraction of their start value ...
    lr_decay_steps: int = 600_000  # ... over this many community-steps, then stay (CleanRL's anneal_lr: 0.0 over
    # the whole budget, i.e. lr_decay_steps = total_env_steps; a run trained or resumed past it keeps the end rate)
    max_grad_norm: float = 0.5
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    log_std_init: float = -0.5  # initial log std of the pre-squash Gaussian
    actor_agent_id: bool = True  # append the one-hot agent identity to the actor's observation
    critic_agent_id: bool = True  # per-agent values V(state, agent id)
    actor_all_households: bool = False  # ablation, not a decentralised policy: the actor also reads every
    # household's observation (nets.actor_input), as MPC plans with every household's state
    actor_recurrent: bool = False  # a GRU after the actor's first layer remembers the day so far (nets.RecurrentActor)
    actor_window_channels: int = 0  # > 0: the actor reads its forecast window's bins (env.forecast_bins > 0) through
    # two 1-D convolutions of this many channels before its dense layers (nets.WindowConvolution); 0: dense layers only
    value_heads: bool = True  # per-agent values as one critic output each; the state read once per community-step
    # (5 seeds on the validation days: level with per-agent inputs, a quarter of the spread, 1.5x faster; README)
    return_norm_decay: float = 0.99999  # weight of the past in the running return mean/std (1 = no normalisation)
    cooperative_weight: float | None = 0.0  # 0: each agent learns from its own bill; 1: from the community's mean
    # bill (null = the env's own reward). 0 won on the validation days (README, what was tried).
    battery_action: str = "power"  # what the actor's battery output means: "power", "target_soc", "net_load" or
    # "feasible" (nets)
    penalty_reward: str = "community"  # "community": each agent bears the step's whole network penalty in its
    # training reward (nets.penalty_training_reward); "share": the penalty as billed. community won (README).
    penalty_weight: float = 1.0  # the training reward bears this multiple of that penalty (1: as billed)
    voltage_margin_pu: float = 0.0  # train on the voltage band narrowed by this on both sides (nets.training_env)
    trade_reward: str = "price"  # "price": P2P trades valued as billed; "marginal": at the community's marginal
    # grid price of the step in the training reward (nets.trade_training_reward)
    reward_baseline: str = "zero"  # "grid_only": learn from each step's saving against the grid-only bill
    # instead of the bill (nets.baseline_training_reward); the same best policy, less weather in the returns
    infeasible_penalty_per_kwh: float = 0.01  # the training reward pays this per kWh of battery setpoint beyond
    # what the battery could do (nets.infeasible_setpoint_kwh), so that "charge" at a full battery is not free;
    # battery_action "power" only (0 for the others). 0.01 won on the validation days against 0 (README)
    input_norm: bool = False  # scale actor and critic inputs to unit scale by fixed statistics (nets.InputScaling)
    imitation_days: int = 0  # > 0: first imitate the teacher on this many training episodes (``imitation``) ...
    imitation_epochs: int = 50  # ... for this many passes (num_minibatches minibatches each the first time, as
    # large ones over everything gathered at each DAgger refit); 0 days = pure RL
    imitation_teacher: str = "optimum"  # "optimum" (perfect foresight) or "mpc" (on the env's forecaster)
    imitation_rounds: int = 0  # DAgger rounds after the first fit (mpc teacher): the actor plays imitation_days
    # more training episodes, the teacher labels the states it reaches, and the actor is fitted to all of them
    imitation_coef: float = 0.0  # > 0: PPO's loss keeps this weight x the imitation loss on the demonstrations
    imitation_smoothing_per_kwh: float = 0.0  # > 0: the teacher's plans break ties towards spread battery power
    # (optimal.py's power_smoothing_per_kwh); 0: HiGHS's own choice among equal plans
    imitation_regret_weight: float = 0.0  # > 0: a DAgger round's states weigh (1 + this x the student's regret
    # there / the round's mean regret) / (1 + this) in the fit and the imitation loss (imitation.regret_weights)
    imitation_feeder_weight: float = 1.0  # the demonstrations at steps where the feeder binds with idle batteries
    # weigh this, times any regret weight, in the fit and the imitation loss (imitation.feeder_weights)
    imitation_refresh_steps: int = 0  # > 0 (at least one iteration's community-steps): the first iteration after
    # each multiple of this many community-steps starts with a DAgger round on the actor as it is then, which
    # replaces the oldest round of those demonstrations (imitation.ActorImitation.refresh); 0: never
    critic_warmup_iterations: int = 0  # the first this many iterations train the critic only (the actor stays)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.name != "mappo":
            raise ConfigError(f"mappo.name must be 'mappo', got {self.name!r}")
        check_ranges(self, _RANGES, _INTEGERS, "mappo")
        check_network(self, "mappo")
        check_multi_agent_keys(self, "mappo")
        check_bools(self, ("input_norm", "value_heads", "actor_all_households", "actor_recurrent"), "mappo")
        if self.actor_recurrent and self.imitation_days > 0:
            raise ConfigError(f"mappo.actor_recurrent=true with imitation_days={self.imitation_days!r}: the warm "
                              "start fits the actor to single steps, a recurrent actor needs whole days; set "
                              "imitation_days=0 (pure PPO) or actor_recurrent=false")
        if self.infeasible_penalty_per_kwh > 0.0 and self.battery_action != "power":
            raise ConfigError(f"mappo.infeasible_penalty_per_kwh={self.infeasible_penalty_per_kwh!r} needs "
                              f"battery_action='power', got {self.battery_action!r}: a target state of charge and "
                              "the feasible share never ask beyond the battery, and the net-load action's centre (the "
                              "self-consumption setpoint) does at a full or empty battery; set "
                              "infeasible_penalty_per_kwh=0 with it")
        check_imitation(self, "mappo", self.battery_action)
        check_demonstration_weights(self, "mappo", self.imitation_refresh_steps)
        if self.imitation_refresh_steps > 0 and (self.imitation_coef == 0.0 or self.imitation_teacher != "mpc"
                                                 or self.battery_action == "target_soc"):
            raise ConfigError(
                f"mappo.imitation_refresh_steps={self.imitation_refresh_steps!r} needs imitation_coef > 0, "
                f"imitation_teacher='mpc' and a battery_action other than 'target_soc' (got {self.imitation_coef!r}, "
                f"{self.imitation_teacher!r} and {self.battery_action!r}): a refresh relabels the demonstrations "
                "that the imitation loss reads, in the actor's states, which only MPC can plan from")
        if self.reward_baseline not in REWARD_BASELINES:
            raise ConfigError(f"mappo.reward_baseline must be one of {list(REWARD_BASELINES)}, "
                              f"got {self.reward_baseline!r}")


_INTEGERS = {"num_envs", "update_epochs", "num_minibatches", "critic_warmup_iterations", "actor_window_channels",
             "imitation_refresh_steps",
             *LR_SCHEDULE_INTEGERS, *IMITATION_INTEGERS}
_RANGES = (
    ("num_envs", 1, 100_000, True, True),
    ("gamma", 0.0, 1.0, True, True),
    ("gae_lambda", 0.0, 1.0, True, True),
    ("clip_coef", 0.0, 10.0, False, True),
    ("ent_coef", 0.0, 1.0, True, True),
    ("update_epochs", 1, 1000, True, True),
    ("num_minibatches", 1, 100_000, True, True),
    ("actor_lr", 0.0, 1.0, False, True),
    ("critic_lr", 0.0, 1.0, False, True),
    *LR_SCHEDULE_RANGES,
    ("max_grad_norm", 0.0, math.inf, False, False),
    ("log_std_init", -10.0, 2.0, True, True),
    ("return_norm_decay", 0.0, 1.0, False, True),
    ("infeasible_penalty_per_kwh", 0.0, 10.0, True, True),
    ("penalty_weight", 0.0, 1000.0, False, True),
    ("voltage_margin_pu", 0.0, 0.5, True, False),
    ("critic_warmup_iterations", 0, 10**9, True, True),
    ("actor_window_channels", 0, 1024, True, True),
    ("imitation_refresh_steps", 0, 10**12, True, True),
    *IMITATION_RANGES,
    REGRET_WEIGHT_RANGE,
    FEEDER_WEIGHT_RANGE,
)


LOG_SQRT_2PI = math.log(math.sqrt(2.0 * math.pi))


def gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Log-density of ``u`` under the diagonal Gaussian (mean, std), summed over the action dimensions (the
    operations of ``torch.distributions.Normal.log_prob``, without its argument checks)."""
    return (-((u - mean) ** 2) / (2 * std ** 2) - std.log() - LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(std: torch.Tensor) -> torch.Tensor:
    """Entropy of the diagonal Gaussian with standard deviations ``std``, summed over the action dimensions."""
    return (0.5 + 0.5 * math.log(2 * math.pi) + std.log()).sum(-1)


class RunningReturnNorm:
    """Running mean and variance of the return targets (exponentially weighted with ``decay``, bias-corrected),
    used to normalise what the critic predicts."""

    def __init__(self, decay: float):
        self.decay = decay
        self.mean = 0.0
        self.mean_sq = 0.0
        self.debias = 0.0

    def update(self, returns: np.ndarray) -> None:
        self.mean = self.decay * self.mean + (1.0 - self.decay) * float(returns.mean())
        self.mean_sq = self.decay * self.mean_sq + (1.0 - self.decay) * float((returns ** 2).mean())
        self.debias = self.decay * self.debias + (1.0 - self.decay)

    def _moments(self) -> tuple[float, float]:
        if self.debias == 0.0:
            return 0.0, 1.0
        mean = self.mean / self.debias
        var = max(self.mean_sq / self.debias - mean ** 2, 1e-8)
        return mean, math.sqrt(var)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        mean, std = self._moments()
        return (x - mean) / std

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        mean, std = self._moments()
        return x * std + mean

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "mean_sq": self.mean_sq, "debias": self.debias}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.mean_sq, self.debias = state["mean"], state["mean_sq"], state["debias"]


class MAPPO(Learner):
    name = "mappo"

    def __init__(self, env_config: EnvConfig, config: MAPPOConfig, seed: int, threads: int = 1):
        super().__init__(env_config, config, seed, threads)
        torch.set_num_threads(threads)  # small MLPs: one is fastest on a shared CPU (FACTS.md), more for a run alone
        trained_on = training_env(env_config, config.cooperative_weight, config.voltage_margin_pu, "mappo")
        self.core = CommunityCore(trained_on, batch_size=config.num_envs)
        check_trade_reward(config.trade_reward, self.core, "mappo")
        community_steps = self.core.steps_per_episode * config.num_envs
        if config.value_heads and config.num_minibatches > community_steps:
            raise ConfigError(f"mappo.num_minibatches={config.num_minibatches} must be at most num_envs x steps per "
                              f"episode = {community_steps} with value_heads: each minibatch needs a community-step")
        if 0 < config.imitation_refresh_steps < community_steps:
            raise ConfigError(f"mappo.imitation_refresh_steps={config.imitation_refresh_steps} must be 0 or at least "
                              f"num_envs x steps per episode = {community_steps}: an iteration refreshes at most once")
        households = config.num_envs * self.core.n_agents
        if config.actor_recurrent and config.num_minibatches > households:
            raise ConfigError(f"mappo.num_minibatches={config.num_minibatches} must be at most num_envs x households = "
                              f"{households} with actor_recurrent: each minibatch needs a household's day")
        n_agents, obs_dim = self.core.n_agents, self.core.obs_dim
        self.device = torch.device(config.device)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        # Build the networks from the seed without touching torch's global generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            actor_in = obs_dim * (1 + n_agents * config.actor_all_households) + n_agents * config.actor_agent_id
            # value_heads: one output per agent (one shared one without critic_agent_id), from the state alone.
            identity_in = n_agents * (config.critic_agent_id and not config.value_heads)
            value_out = n_agents if config.value_heads and config.critic_agent_id else 1
            window = self._window_convolution(env_config)
            dense_in = actor_in if window is None else window.out_dim(actor_in)
            if config.actor_recurrent:
                self.actor = RecurrentActor(dense_in, config.hidden_sizes, ACTION_DIM, out_gain=0.01)
            else:
                self.actor = mlp(dense_in, config.hidden_sizes, ACTION_DIM, nn.Tanh, out_gain=0.01)
            actor_front = self.actor.encoder if config.actor_recurrent else self.actor  # where inputs enter
            if window is not None:
                actor_front.insert(0, window)
            self.critic = mlp(self.core.state_dim + identity_in, config.hidden_sizes, value_out, nn.Tanh,
                              out_gain=1.0)
        if config.input_norm:
            statistics = input_statistics(self.core.config, seed)
            obs_mean, obs_std = (np.tile(value, 1 + n_agents * config.actor_all_households)
                                 for value in statistics["obs"])  # own, then every household's
            actor_front.insert(0, InputScaling(*with_identity_columns(obs_mean, obs_std, n_agents,
                                                                      config.actor_agent_id)))
            self.critic.insert(0, InputScaling(*with_identity_columns(*statistics["state"], n_agents,
                                                                      bool(identity_in))))
        self.actor, self.critic = self.actor.to(self.device), self.critic.to(self.device)
        self.log_std = nn.Parameter(torch.full((ACTION_DIM,), float(config.log_std_init), device=self.device))
        self.actor_optimizer = torch.optim.Adam([*self.actor.parameters(), self.log_std], lr=config.actor_lr,
                                                eps=1e-5, foreach=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, eps=1e-5,
                                                 foreach=True)
        self.return_norm = RunningReturnNorm(config.return_norm_decay)
        self.iterations = 0
        self.imitation = ActorImitation(self._actor_input, lambda x: torch.tanh(self.actor(x)),
                                        self.actor.parameters(), self.actor_optimizer, config.max_grad_norm,
                                        self.generator, self.device, threads)

    # ------------------------------------------------------------------ inputs
    def _window_convolution(self, env_config: EnvConfig) -> WindowConvolution | None:
        """The actor's convolution over its own forecast window (``actor_window_channels``), or None."""
        channels = self.config.actor_window_channels
        if channels == 0:
            return None
        if env_config.forecast_bins == 0:
            raise ConfigError(f"mappo.actor_window_channels={channels} needs a forecast window in the observation: set "
                              "env.forecast_bins > 0 (experiment=comparison has 12), or actor_window_channels=0")
        return WindowConvolution(self.core.obs_features.index("load_bin_1"), env_config.forecast_bins, channels)

    def _actor_input(self, obs: np.ndarray) -> torch.Tensor:
        return actor_input(torch.as_tensor(obs, dtype=torch.float32, device=self.device),
                           self.config.actor_agent_id, self.config.actor_all_households)

    def _critic_input(self) -> torch.Tensor:
        """The critic's input of this step: the state (B, state_dim) with ``value_heads``, else each agent's
        (B, N, state_dim [+ N])."""
        s = torch.as_tensor(self.core.state(), dtype=torch.float32, device=self.device)
        if self.config.value_heads:
            return s
        per_agent = s.unsqueeze(-2).expand(*s.shape[:-1], self.core.n_agents, s.shape[-1])
        return with_agent_id(per_agent, self.config.critic_agent_id)

    def _values(self, critic_input: torch.Tensor) -> torch.Tensor:
        """Every agent's normalised value (..., N) from ``_critic_input``'s (stacked) outputs."""
        values = self.critic(critic_input)
        if self.config.value_heads:
            return values.expand(*values.shape[:-1], self.core.n_agents)
        return values.squeeze(-1)

    def _policy(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (expanded to the mean's shape) of the pre-squash Gaussian; a recurrent actor's inputs
        ``x`` are whole days (T, M, in_dim)."""
        return self._with_std(self.actor(x))

    def _with_std(self, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mean, self.log_std.exp().expand_as(mean)

    def _policy_step(self, x: torch.Tensor, memory: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``_policy`` of one step's inputs (B, N, in_dim) in the rollout, and a recurrent actor's next memory
        (None for a feed-forward actor)."""
        if not self.config.actor_recurrent:
            return *self._policy(x), None
        mean, memory = self.actor.step(x, memory)
        return *self._with_std(mean), memory

    # ------------------------------------------------------------------ warm start
    def imitate(self, teacher: Policy | None = None) -> dict[str, float]:
        """The warm start from the teacher (``imitation.ActorImitation.warm_start``, Adam at ``actor_lr``); a
        ``teacher`` policy replaces the config's."""
        return self.imitation.warm_start(self.core, self.config, self.rng, self.policy, self.config.num_minibatches,
                                         teacher)

    # ------------------------------------------------------------------ one iteration
    def iterate(self) -> dict[str, float]:
        cfg, core = self.config, self.core
        start = time.perf_counter()
        T, B, N = core.steps_per_episode, core.batch_size, core.n_agents
        imitation = self.imitate() if self.iterations == 0 and cfg.imitation_days > 0 else {}
        refresh = cfg.imitation_refresh_steps
        if refresh > 0 and self.env_steps > 0 and self.env_steps // refresh > (self.env_steps - T * B) // refresh:
            imitation = self.imitation.refresh(core, cfg, self.rng, self.policy())  # the last iteration crossed one
        lr_scale = linear_schedule(1.0, cfg.lr_end_fraction, cfg.lr_decay_steps, self.env_steps)
        set_learning_rates(lr_scale, (self.actor_optimizer, cfg.actor_lr), (self.critic_optimizer, cfg.critic_lr))

        # 1. Rollout: one day of every community.
        actor_inputs, critic_inputs, pre_squash, log_probs, values, rewards, costs = ([] for _ in range(7))
        obs = core.reset(seed=int(self.rng.integers(2 ** 63)))
        done, memory = False, None
        while not done:
            x, s = self._actor_input(obs), self._critic_input()
            with torch.no_grad():
                mean, std, memory = self._policy_step(x, memory)
                noise = torch.randn(mean.shape, generator=self.generator).to(self.device)
                u = mean + std * noise
                actor_inputs.append(x)
                critic_inputs.append(s)
                pre_squash.append(u)
                log_probs.append(gaussian_log_prob(u, mean, std))
                values.append(self._values(s))
            action = env_action(torch.tanh(u).cpu().numpy().astype(np.float64), core, obs, cfg.battery_action)
            obs, reward, done, infos = core.step(action)
            reward = infeasible_training_reward(reward, action, infos, core, cfg.infeasible_penalty_per_kwh)
            reward = trade_training_reward(reward, infos, core.config.cooperative_weight, cfg.trade_reward)
            reward = baseline_training_reward(reward, infos, core.config.cooperative_weight, cfg.reward_baseline)
            rewards.append(penalty_training_reward(reward, infos["penalty"], core.config.cooperative_weight,
                                                   cfg.penalty_reward, cfg.penalty_weight))
            costs.append(infos["cost"])
        rewards_np, costs_np = np.stack(rewards), np.stack(costs)  # (T, B, N)
        self.env_steps += T * B

        # 2. GAE on de-normalised values; the day's end is terminal.
        value_np = self.return_norm.denormalize(torch.stack(values).cpu().numpy().astype(np.float64))
        advantages = np.zeros_like(rewards_np)
        last = np.zeros((B, N))
        for t in reversed(range(T)):
            next_value = value_np[t + 1] if t + 1 < T else 0.0
            delta = rewards_np[t] + cfg.gamma * next_value - value_np[t]
            last = delta + cfg.gamma * cfg.gae_lambda * last
            advantages[t] = last
        returns = advantages + value_np
        self.return_norm.update(returns)
        explained_variance = 1.0 - float(np.var(returns - value_np) / max(np.var(returns), 1e-12))

        # 3. PPO update on the flattened T * B * N agent-steps (the critic's on T * B community-steps with
        # value_heads: its input is then the same for the N agents of a community-step). The actor's samples lie
        # along dimension 1 of (1, T * B * N, ...), or with a recurrent actor they are the B * N agents' days,
        # (T, B * N, ...): a minibatch of whole days, read from the day's start.
        def samples(tensors: list[torch.Tensor], leading: tuple[int, ...], dims: int = 2) -> torch.Tensor:
            """The rollout's (T, B[, N], ...) stacked, its first 1 + ``dims`` dimensions reshaped to ``leading``."""
            stacked = torch.stack(tensors)
            return stacked.reshape(*leading, *stacked.shape[dims + 1:])

        actor_leading = (T, B * N) if cfg.actor_recurrent else (1, T * B * N)
        b_x, b_u, b_logp = (samples(t, actor_leading) for t in (actor_inputs, pre_squash, log_probs))
        b_adv = torch.as_tensor(advantages, dtype=torch.float32, device=self.device).reshape(b_logp.shape)
        normalized_returns = torch.as_tensor(self.return_norm.normalize(returns), dtype=torch.float32,
                                             device=self.device)
        if cfg.value_heads:
            b_s, b_ret = samples(critic_inputs, (-1,), dims=1), normalized_returns.reshape(T * B, N)
        else:
            b_s, b_ret = samples(critic_inputs, (-1,)), normalized_returns.reshape(-1)
        n_samples = b_adv.shape[1]
        minibatch = math.ceil(n_samples / cfg.num_minibatches)
        n_minibatches = math.ceil(n_samples / minibatch)
        actor_learns = self.iterations >= cfg.critic_warmup_iterations
        imitating = cfg.imitation_coef > 0.0 and actor_learns
        stats: dict[str, list[torch.Tensor]] = {k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl",
                                                                "clip_fraction", *["imitation_loss"] * imitating)}
        for _ in range(cfg.update_epochs):
            # One shuffle per epoch, then contiguous minibatches (views, not four gathers each).
            order = torch.randperm(n_samples, generator=self.generator).to(self.device)
            e_x, e_u, e_logp, e_adv = (t.index_select(1, order) for t in (b_x, b_u, b_logp, b_adv))
            if cfg.value_heads or cfg.actor_recurrent:  # the critic's samples shuffled on their own
                critic_order = torch.randperm(len(b_s), generator=self.generator).to(self.device)
                s_parts, ret_parts = (t.index_select(0, critic_order).tensor_split(n_minibatches) for t in (b_s, b_ret))
            else:
                s_parts, ret_parts = (t.index_select(0, order).split(minibatch) for t in (b_s, b_ret))
            for first, e_s, e_ret in zip(range(0, n_samples, minibatch), s_parts, ret_parts):
                batch = slice(first, first + minibatch)
                with torch.set_grad_enabled(actor_learns):  # no actor graph while the critic warms up alone
                    mean, std = self._policy(e_x[:, batch])
                log_ratio = gaussian_log_prob(e_u[:, batch], mean, std) - e_logp[:, batch]
                ratio = log_ratio.exp()
                adv = e_adv[:, batch]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                policy_loss = torch.max(-adv * ratio,
                                        -adv * ratio.clamp(1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)).mean()
                entropy = gaussian_entropy(std).mean()
                value_loss = 0.5 * (self._values(e_s) - e_ret).pow(2).mean()
                loss = policy_loss - cfg.ent_coef * entropy + value_loss if actor_learns else value_loss
                if imitating:
                    imitation_loss = self.imitation.loss(adv.numel())
                    loss = loss + cfg.imitation_coef * imitation_loss
                    stats["imitation_loss"].append(imitation_loss.detach())

                # Actor and critic share no parameters: one backward pass gives each its own loss's gradient.
                self.actor_optimizer.zero_grad()
                self.critic_optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_([*self.actor.parameters(), self.log_std], cfg.max_grad_norm)
                nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                if actor_learns:
                    self.actor_optimizer.step()
                self.critic_optimizer.step()

                with torch.no_grad():
                    stats["approx_kl"].append(((ratio - 1.0) - log_ratio).mean())
                    stats["clip_fraction"].append(((ratio - 1.0).abs() > cfg.clip_coef).float().mean())
                stats["policy_loss"].append(policy_loss.detach())
                stats["value_loss"].append(value_loss.detach())
                stats["entropy"].append(entropy.detach())
        self.iterations += 1

        elapsed = time.perf_counter() - start
        return {
            **episode_metrics(rewards_np, costs_np),
            **{key: float(np.mean(torch.stack(values).tolist())) for key, values in stats.items()},
            "explained_variance": explained_variance,
            "exploration": float(self.log_std.detach().exp().mean()),  # the Gaussian's std before squashing
            "learning_rate_scale": lr_scale,
            "steps_per_second": T * B / elapsed,
            **imitation,
        }

    # ------------------------------------------------------------------ evaluation and checkpoints
    def policy(self) -> ActorPolicy:
        if self.config.actor_recurrent:
            return RecurrentActorPolicy(self.name, copy.deepcopy(self.actor), self.config.actor_agent_id,
                                        self.config.battery_action, self.config.actor_all_households)
        return ActorPolicy(self.name, nn.Sequential(copy.deepcopy(self.actor), nn.Tanh()), self.config.actor_agent_id,
                           self.config.battery_action, self.config.actor_all_households)

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "log_std": self.log_std.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "return_norm": self.return_norm.state_dict(),
            "rng": rng_state(self.rng, self.generator),
            "env_steps": self.env_steps,
            "iterations": self.iterations,
            **self.imitation.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        with torch.no_grad():
            self.log_std.copy_(state["log_std"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.return_norm.load_state_dict(state["return_norm"])
        load_rng_state(self.rng, self.generator, state["rng"])
        self.env_steps = state["env_steps"]
        self.iterations = state["iterations"]
        self.imitation.load_state_dict(state, self.iterations, self.config.imitation_coef)
