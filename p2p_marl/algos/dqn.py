"""DQN with parameter sharing: one Q-network for every household, trained from a shared replay buffer.

Read top to bottom like a CleanRL single-file algorithm; the data collection (whole days on the batched core,
epsilon-greedy, the day's end as terminal) is ``p2p_marl.training.value_based``.

1. **Input** -- a household's local observation (already normalised into [-1, 1] by the core), followed by
   its one-hot identity when ``agent_id_input`` (then the network only fits communities of the trained size;
   without it, one network serves any community).
2. **Output** -- one value per discrete action of ``discrete_action_table`` (battery setpoint x price share x
   curtailment).
3. **Replay** -- every step adds the B x N transitions ``(x, a, r, x', terminal)`` of all households to a
   circular buffer of ``buffer_size`` transitions; with ``n_step`` > 1, ``r`` is the discounted sum of the next
   ``n_step`` rewards (fewer where the day ends first, then terminal) and ``x'`` the input ``n_step`` steps on.
   After ``learning_starts`` community-steps, every ``train_frequency`` core steps do ``gradient_steps`` updates
   on minibatches of ``batch_size`` transitions.
4. **Target** -- ``r + gamma^n_step * (1 - terminal) * max_a' Q_target(x', a')`` with a target network that
   follows the online one every ``target_update_interval`` gradient steps (Polyak factor ``tau``; 1 = copy); with
   ``double_q`` (Double DQN, van Hasselt et al. 2016) ``Q_target(x', argmax_a' Q(x', a'))``: the online network
   picks the next action and the target network values it, so one network's overestimate is not its own target.
   The day's last step is terminal: the day really ends (the next episode starts from a fresh state on another day), so
   its target is the reward alone. This is what the SuperSuit adapter of SB3 gets wrong the other way round
   (it marks truncations as terminal without telling SB3 the episode was cut; see FACTS.md): here the cut is
   the true end of the task.
5. **Loss** -- the Huber loss of the TD error (smooth L1; quadratic for the small errors of this problem), Adam,
   gradient norm clipped at ``max_grad_norm``.

Random numbers: the network initialisation uses ``seed`` without touching torch's global generator; replay
sampling and exploration use the learner's numpy generator. ``state_dict()`` holds the networks, the optimiser,
the buffer and both generators, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from p2p_marl.algos.nets import mlp, with_agent_id
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import CommunityCore
from p2p_marl.training.validation import check_bools, check_network, check_ranges
from p2p_marl.training.value_based import ValueBasedLearner, check_action_grid


@dataclass
class DQNConfig:
    """DQN hyperparameters; mirrored 1:1 by ``configs/algo/dqn.yaml``."""

    name: str = "dqn"
    num_envs: int = 8  # communities simulated in lockstep; one iteration = one day of each
    learning_rate: float = 5e-4
    gamma: float = 0.995  # discount per step (README, what was tried: 0.98 and 1.0 learned less)
    n_step: int = 1  # rewards summed in a target before it bootstraps (1: one-step DQN)
    buffer_size: int = 100_000  # household transitions kept for replay
    batch_size: int = 256  # transitions per gradient step
    learning_starts: int = 2_000  # community-steps of pure collection before the first gradient step
    train_frequency: int = 1  # core steps between training phases
    gradient_steps: int = 1  # gradient steps per training phase
    target_update_interval: int = 250  # gradient steps between target-network updates
    tau: float = 1.0  # Polyak factor of the target update (1 = copy the online network)
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 100_000  # community-steps of linear epsilon decay
    max_grad_norm: float = 10.0
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    agent_id_input: bool = False  # append the household's one-hot identity to its observation
    double_q: bool = False  # Double DQN's target: the online network picks the next action, the target values it
    # The action grid (p2p_marl.training.value_based.ActionGrid): 5 battery setpoints and one that follows the
    # net load, x 3 bid prices x curtailing none or all of the PV. On the 5 setpoints alone DQN's mean was level
    # and its spread over seeds larger; the net-load action added 0.13 on validation days (README, what was tried).
    n_battery_levels: int = 5  # evenly spaced setpoints in [-1, 1]
    n_price_levels: int = 3  # evenly spaced price shares in [0, 1] (1 level: 0.5)
    n_curtail_levels: int = 2  # evenly spaced PV curtailment shares in [0, 1] (1 level: none)
    follow_net_load_action: bool = True  # one more battery level: charge the PV surplus, cover the net load
    infeasible_penalty_per_kwh: float = 0.01  # the training reward pays this per kWh of battery setpoint beyond
    # what the battery could do (nets.infeasible_setpoint_kwh); 0: the bill alone
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.name != "dqn":
            raise ConfigError(f"dqn.name must be 'dqn', got {self.name!r}")
        check_ranges(self, _RANGES, _INTEGERS, "dqn")
        check_action_grid(self, "dqn")
        check_network(self, "dqn")
        if self.epsilon_end > self.epsilon_start:
            raise ConfigError(f"dqn.epsilon_end={self.epsilon_end} must not exceed epsilon_start={self.epsilon_start}")
        check_bools(self, ("agent_id_input", "double_q"), "dqn")


_INTEGERS = {"num_envs", "n_step", "buffer_size", "batch_size", "learning_starts", "train_frequency",
             "gradient_steps", "target_update_interval", "epsilon_decay_steps"}
_RANGES = (
    ("num_envs", 1, 100_000, True, True),
    ("infeasible_penalty_per_kwh", 0.0, 10.0, True, True),
    ("learning_rate", 0.0, 1.0, False, True),
    ("gamma", 0.0, 1.0, True, True),
    ("n_step", 1, 1_000, True, True),
    ("buffer_size", 1, 10**9, True, True),
    ("batch_size", 1, 10**6, True, True),
    ("learning_starts", 0, 10**12, True, True),
    ("train_frequency", 1, 10**6, True, True),
    ("gradient_steps", 1, 10**4, True, True),
    ("target_update_interval", 1, 10**9, True, True),
    ("tau", 0.0, 1.0, False, True),
    ("epsilon_start", 0.0, 1.0, True, True),
    ("epsilon_end", 0.0, 1.0, True, True),
    ("epsilon_decay_steps", 1, 10**12, True, True),
    ("max_grad_norm", 0.0, math.inf, False, False),
)


class SharedQNetwork(nn.Module):
    """Q(local observation [+ agent id]) -> one value per discrete action, shared by all households."""

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, config: DQNConfig):
        super().__init__()
        self.n_agents = n_agents
        self.agent_id_input = config.agent_id_input
        in_dim = obs_dim + (n_agents if config.agent_id_input else 0)
        self.net = mlp(in_dim, config.hidden_sizes, n_actions, nn.ReLU, out_gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def encode(self, core: CommunityCore, obs: np.ndarray) -> torch.Tensor:
        """Network inputs (B, N, in_dim) of local observations (B, N, obs_dim)."""
        if self.agent_id_input and core.n_agents != self.n_agents:
            raise ValueError(f"this Q-network was trained with agent_id_input for {self.n_agents} households; "
                             f"it cannot act for a community of {core.n_agents}")
        device = next(self.parameters()).device
        return with_agent_id(torch.as_tensor(obs, dtype=torch.float32, device=device), self.agent_id_input)

    def q_values(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self(x).cpu().numpy()


class ReplayBuffer:
    """A circular buffer of household transitions, kept as tensors on the learner's device."""

    def __init__(self, capacity: int, in_dim: int, device: torch.device):
        self.capacity = capacity
        self.x = torch.zeros((capacity, in_dim), device=device)
        self.next_x = torch.zeros((capacity, in_dim), device=device)
        self.action = torch.zeros(capacity, dtype=torch.int64, device=device)
        self.reward = torch.zeros(capacity, device=device)
        self.terminal = torch.zeros(capacity, device=device)
        self.position = 0  # next slot to write
        self.size = 0

    def add(self, x: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_x: torch.Tensor,
            terminal: bool) -> None:
        """Add M transitions: inputs (M, in_dim), actions (M,), rewards (M,), next inputs (M, in_dim)."""
        # A batch larger than the buffer keeps only its last ``capacity`` transitions.
        x, action, reward, next_x = (t[-self.capacity:] for t in (x, action, reward, next_x))
        slots = (self.position + torch.arange(len(x), device=x.device)) % self.capacity
        self.x[slots], self.action[slots], self.reward[slots], self.next_x[slots] = x, action, reward, next_x
        self.terminal[slots] = float(terminal)
        self.position = (self.position + len(x)) % self.capacity
        self.size = min(self.size + len(x), self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(rng.integers(self.size, size=batch_size), device=self.x.device)
        return self.x[index], self.action[index], self.reward[index], self.next_x[index], self.terminal[index]

    def state_dict(self) -> dict[str, Any]:
        # Only the filled part: a young buffer makes a small checkpoint.
        return {"x": self.x[:self.size].cpu(), "next_x": self.next_x[:self.size].cpu(),
                "action": self.action[:self.size].cpu(), "reward": self.reward[:self.size].cpu(),
                "terminal": self.terminal[:self.size].cpu(), "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = state["size"]
        if size > self.capacity or state["x"].shape[1:] != self.x.shape[1:]:
            raise ValueError(f"replay buffer of {size} transitions of width {tuple(state['x'].shape[1:])} does "
                             f"not fit this configuration ({self.capacity} of width {tuple(self.x.shape[1:])})")
        for key in ("x", "next_x", "action", "reward", "terminal"):
            getattr(self, key)[:size] = state[key]
        self.position, self.size = state["position"], size


class DQN(ValueBasedLearner):
    name = "dqn"

    def __init__(self, env_config: EnvConfig, config: DQNConfig, seed: int):
        super().__init__(env_config, config, seed)
        torch.set_num_threads(1)  # small MLPs: one thread is fastest on a shared CPU (see FACTS.md)
        self.device = torch.device(config.device)
        n_agents, obs_dim = self.core.n_agents, self.core.obs_dim
        # Build the networks from the seed without touching torch's global generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q = SharedQNetwork(obs_dim, n_agents, self.n_actions, config).to(self.device)
        self.target = SharedQNetwork(obs_dim, n_agents, self.n_actions, config).to(self.device)
        self.target.load_state_dict(self.q.state_dict())
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=config.learning_rate)
        in_dim = obs_dim + (n_agents if config.agent_id_input else 0)
        self.buffer = ReplayBuffer(config.buffer_size, in_dim, self.device)
        self.gradient_updates = 0
        # Today's steps whose n-step return is not complete yet: (inputs, actions, rewards) of all households.
        # A day ends within one iterate(), which empties it, so checkpoints never need it.
        self._pending: list[tuple[torch.Tensor, np.ndarray, np.ndarray]] = []

    def learn(self, x: torch.Tensor, actions: np.ndarray, reward: np.ndarray, next_x: torch.Tensor, terminal: bool
              ) -> dict[str, float]:
        c = self.config
        in_dim = x.shape[-1]
        self._pending.append((x.reshape(-1, in_dim), actions.ravel(), reward.ravel()))
        # The oldest pending step has its n rewards now; at the day's end every pending step's return ends.
        ready = len(self._pending) if terminal else len(self._pending) - c.n_step + 1
        for _ in range(max(ready, 0)):
            first_x, first_action, _ = self._pending[0]
            n_step_return = sum(c.gamma ** k * r for k, (_, _, r) in enumerate(self._pending))
            self.buffer.add(first_x, torch.as_tensor(first_action, device=self.device),
                            torch.as_tensor(n_step_return, dtype=torch.float32, device=self.device),
                            next_x.reshape(-1, in_dim), terminal)
            self._pending.pop(0)
        core_steps = self.env_steps // self.core.batch_size
        if self.env_steps < c.learning_starts or core_steps % c.train_frequency:
            return {}
        losses, q_means = [], []
        for _ in range(c.gradient_steps):
            batch_x, batch_action, batch_reward, batch_next_x, batch_terminal = self.buffer.sample(
                c.batch_size, self.rng)
            td_target = self.td_target(batch_reward, batch_next_x, batch_terminal)
            q_taken = self.q(batch_x).gather(1, batch_action[:, None]).squeeze(1)
            loss = F.smooth_l1_loss(q_taken, td_target)
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.q.parameters(), c.max_grad_norm)
            self.optimizer.step()
            self.gradient_updates += 1
            if self.gradient_updates % c.target_update_interval == 0:
                with torch.no_grad():
                    for target_param, param in zip(self.target.parameters(), self.q.parameters()):
                        target_param.lerp_(param, c.tau)
            losses.append(loss.item())
            q_means.append(q_taken.mean().item())
        return {"td_loss": float(np.mean(losses)), "q_mean": float(np.mean(q_means))}

    def td_target(self, reward: torch.Tensor, next_x: torch.Tensor, terminal: torch.Tensor) -> torch.Tensor:
        """Step 4's target for M transitions (rewards (M,), next inputs (M, in_dim), terminal flags (M,))."""
        with torch.no_grad():
            next_q = self.target(next_x)
            if self.config.double_q:
                next_value = next_q.gather(1, self.q(next_x).argmax(dim=1, keepdim=True)).squeeze(1)
            else:
                next_value = next_q.max(dim=1).values
            return reward + self.config.gamma ** self.config.n_step * (1.0 - terminal) * next_value

    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q.state_dict(), "target": self.target.state_dict(), "optimizer": self.optimizer.state_dict(),
                "buffer": self.buffer.state_dict(), "gradient_updates": self.gradient_updates, **self.collector_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.gradient_updates = state["gradient_updates"]
        self.load_collector_state(state)
