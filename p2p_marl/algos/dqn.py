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
   gradient norm clipped at ``max_grad_norm``; its learning rate decays linearly to ``lr_end_fraction`` (0 by
   default; 1 keeps it constant) of ``learning_rate`` over the first ``lr_decay_steps`` community-steps and then
   stays (at 0, a run trained or resumed past them learns nothing more); the teacher's pre-training
   below runs before the first community-step, at the full rate.

Learning from a teacher (its own row beside the pure learner; off by default), after DQfD (Hester et al. 2018):
with ``imitation_days`` > 0 the first iteration collects the MPC teacher's demonstrations on that many training
episodes (rounded up to whole batches of ``num_envs``), played on the learner's own action grid
(``imitation.demonstrations`` with the grid: the teacher's action snapped to the nearest grid action,
``imitation_rounds`` more rounds played by the greedy policy and labelled by the teacher, DAgger), and pre-trains
the Q-network on them for ``imitation_epochs`` passes with the demonstration loss

    J_demo = TD loss on the demonstrations' own transitions
             + mean of  max_a [Q(x, a) + imitation_margin * (a != a_teacher)] - Q(x, a_teacher),

whose second term (the large-margin loss) pushes the teacher's action at least ``imitation_margin`` above every
other: TD learning alone would value the actions the teacher never took by extrapolation. With
``imitation_coef`` > 0 every gradient step of the RL phase adds that weight x J_demo on a minibatch of the kept
demonstrations (``batch_size`` transitions) to its TD loss. Demonstrations do not count in ``env_steps``.

Training community: with ``voltage_margin_pu`` > 0 the learner trains (and its teacher plans) on the voltage band
narrowed by that margin on both sides, as MAPPO and MADDPG may (``nets.training_env``): the training reward's
network penalty then keeps a margin from the limits the bill is checked against; off by default. With
``penalty_reward="community"`` each household's training reward bears the step's whole network penalty instead of
its billed share (``nets.penalty_training_reward``; the default, as MAPPO's; ``"share"``: as billed), and
``penalty_weight`` times as heavy as billed (1 by default). The teacher's demonstrations carry the same reward.

Random numbers: the network initialisation uses ``seed`` without touching torch's global generator; replay
sampling, exploration and the demonstrations' seeds and minibatches use the learner's numpy generator.
``state_dict()`` holds the networks, the optimiser, the buffer, both generators and, with ``imitation_coef`` > 0,
the demonstrations (about 24 MB for 128 days and 3 DAgger rounds on ``community_10``), so a resumed run
continues exactly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from p2p_marl.algos.imitation import (IMITATION_INTEGERS, IMITATION_RANGES, check_demonstrations_kept,
                                      check_imitation, demonstrations)
from p2p_marl.algos.nets import (LR_SCHEDULE_INTEGERS, LR_SCHEDULE_RANGES, check_penalty_reward, mlp,
                                 penalty_training_reward, set_learning_rates, training_env, with_agent_id)
from p2p_marl.config import ConfigError, EnvConfig
from p2p_marl.sim.community import CommunityCore
from p2p_marl.training.validation import check_bools, check_network, check_ranges
from p2p_marl.training.value_based import ValueBasedLearner, check_action_grid, linear_schedule


@dataclass
class DQNConfig:
    """DQN hyperparameters; mirrored 1:1 by ``configs/algo/dqn.yaml``."""

    name: str = "dqn"
    num_envs: int = 8  # communities simulated in lockstep; one iteration = one day of each
    learning_rate: float = 5e-4
    # The learning rate decays linearly to lr_end_fraction of its start over lr_decay_steps community-steps, then
    # stays (1.0: constant). 0 over the 600k steps: the played checkpoint 0.682 against 0.663 on the test days (5
    # seeds, 4 higher), the last evaluation the best (README, what was tried).
    lr_end_fraction: float = 0.0
    lr_decay_steps: int = 600_000
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
    # Layers of 128 with the 13-level grid: 0.726 +- 0.003 against 0.698 +- 0.020 on the test days over 3 seeds,
    # higher on every seed (13 levels on layers of 64: level; docs/what_was_tried.md)
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    agent_id_input: bool = False  # append the household's one-hot identity to its observation
    double_q: bool = False  # Double DQN's target: the online network picks the next action, the target values it
    # The action grid (p2p_marl.training.value_based.ActionGrid): 13 battery setpoints and one that follows the
    # net load, x 3 bid prices x curtailing none or all of the PV. On 5 setpoints alone DQN's mean was level and
    # its spread over seeds larger; the net-load action added 0.13 on validation days (README, what was tried).
    n_battery_levels: int = 13  # evenly spaced setpoints in [-1, 1]; 9 rather than 5 added 0.10 at the best
    # evaluation on the validation days, better on each of 3 seeds (MPC snapped to the grid: 0.846 against 0.765);
    # 13 pays only with the wider layers above (docs/what_was_tried.md)
    n_price_levels: int = 3  # evenly spaced price shares in [0, 1] (1 level: 0.5)
    n_curtail_levels: int = 2  # evenly spaced PV curtailment shares in [0, 1] (1 level: none)
    follow_net_load_action: bool = True  # one more battery level: charge the PV surplus, cover the net load
    infeasible_penalty_per_kwh: float = 0.01  # the training reward pays this per kWh of battery setpoint beyond
    # what the battery could do (nets.infeasible_setpoint_kwh); 0: the bill alone
    voltage_margin_pu: float = 0.0  # train on the voltage band narrowed by this on both sides (nets.training_env)
    penalty_reward: str = "community"  # each household bears the step's whole network penalty in its training
    # reward (nets.penalty_training_reward), as MAPPO's default; "share": the network penalty as billed
    penalty_weight: float = 1.0  # the training reward bears this multiple of that penalty (1: as billed)
    imitation_days: int = 0  # > 0: first pre-train on the teacher's demonstrations on this many training days ...
    imitation_epochs: int = 10  # ... for this many passes (in minibatches of batch_size); 0 days = pure RL
    imitation_teacher: str = "mpc"  # only "mpc": it plans again from every state the grid's rounding leads to
    imitation_rounds: int = 0  # DAgger rounds after the first pre-training: the greedy policy plays imitation_days
    # more episodes, the teacher labels its states, the pre-training runs again on all
    imitation_coef: float = 0.0  # > 0: each gradient step adds this weight x the demonstration loss on them
    imitation_margin: float = 0.05  # the large-margin loss's margin, in the reward's money per step
    imitation_smoothing_per_kwh: float = 0.0  # > 0: the teacher's plans break ties towards spread battery power
    # (optimal.py's power_smoothing_per_kwh); 0: HiGHS's own choice among equal plans
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
        check_penalty_reward(self, "dqn")
        if self.imitation_teacher != "mpc":
            raise ConfigError(f"dqn.imitation_teacher must be 'mpc', got {self.imitation_teacher!r}: the optimum's "
                              "schedule is one plan from the day's start, and the grid's rounding leaves it")
        check_imitation(self, "dqn")


_INTEGERS = {"num_envs", "n_step", "buffer_size", "batch_size", "learning_starts", "train_frequency",
             "gradient_steps", "target_update_interval", "epsilon_decay_steps", *LR_SCHEDULE_INTEGERS,
             *IMITATION_INTEGERS}
_RANGES = (
    *IMITATION_RANGES,
    ("imitation_margin", 0.0, 10.0, True, True),
    ("num_envs", 1, 100_000, True, True),
    ("infeasible_penalty_per_kwh", 0.0, 10.0, True, True),
    ("voltage_margin_pu", 0.0, 0.5, True, False),
    ("penalty_weight", 0.0, 1000.0, False, True),
    ("learning_rate", 0.0, 1.0, False, True),
    *LR_SCHEDULE_RANGES,
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

    def sample_index(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor:
        return torch.as_tensor(rng.integers(self.size, size=batch_size), device=self.x.device)

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The transitions at ``index``: inputs, actions, rewards, next inputs, terminal flags."""
        return self.x[index], self.action[index], self.reward[index], self.next_x[index], self.terminal[index]

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        return self.take(self.sample_index(batch_size, rng))

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

    def __init__(self, env_config: EnvConfig, config: DQNConfig, seed: int, threads: int = 1):
        super().__init__(env_config, config, seed, threads,
                         training_env(env_config, None, config.voltage_margin_pu, "dqn"))
        torch.set_num_threads(threads)  # small MLPs: one is fastest on a shared CPU (FACTS.md), more for a run alone
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
        # The teacher's household transitions (imitation_days > 0): x, action (played), reward, terminal and label
        # (the teacher's grid action), each with M rows; a row's next input is a row of x (_demonstration_tensors).
        self.demonstrations: dict[str, torch.Tensor] | None = None

    def iterate(self) -> dict[str, float]:
        imitation = self.imitate() if self.env_steps == 0 and self.config.imitation_days > 0 else {}
        return {**super().iterate(), **imitation}

    # ------------------------------------------------------------------ learning from the teacher
    def imitate(self) -> dict[str, float]:
        """Collect the teacher's demonstrations on the grid and pre-train on them (module docstring), with DAgger
        rounds; keeps them if ``imitation_coef`` > 0. Returns the ``imitation/`` metrics."""
        c = self.config
        n_resets = math.ceil(c.imitation_days / self.core.batch_size)
        parts, metrics, teacher_s, loss = [], {}, 0.0, {}

        for round_ in range(1 + c.imitation_rounds):
            student = None if round_ == 0 else self.policy()
            played = demonstrations(self.core, c.imitation_teacher, n_resets, int(self.rng.integers(2 ** 63)),
                                    "power", student, self.action_grid, self.training_reward, threads=self.threads,
                                    smoothing_per_kwh=c.imitation_smoothing_per_kwh)
            parts.append(played)
            teacher_s += played.teacher_s
            # The teacher's cost is its grid-snapped play's (MAPPO and MADDPG log MPC's own as teacher_cost).
            metrics["imitation/grid_teacher_cost" if student is None else "imitation/student_cost"] = played.cost
            self.keep_demonstrations(self._demonstration_tensors(parts))
            n_steps = c.imitation_epochs * math.ceil(len(self.demonstrations["x"]) / c.batch_size)
            loss = {key: float(np.mean(values)) for key, values in self._pretrain(n_steps).items()}
        label_match = self._greedy_label_match()
        if c.imitation_coef == 0.0:  # the updates do not use them: neither memory nor checkpoints keep them
            self.demonstrations = None
        return {"imitation/loss": loss["demo_loss"], "imitation/margin_loss": loss["margin_loss"],
                "imitation/label_match": label_match, **metrics, "imitation/teacher_seconds": teacher_s,
                "imitation/samples": float(sum(part.grid.labels.size for part in parts))}

    def _demonstration_tensors(self, parts: list) -> dict[str, torch.Tensor]:
        """The household transitions of demonstration rounds ``parts`` (``imitation.Demonstrations``), rows in
        the order (episode batch, step, community, household). A row's next input is the row one community-step
        of the batch (num_envs x N rows) later, except on the day's last step, whose target does not read it:
        the inputs are kept once."""
        steps = [part.grid for part in parts]
        as_tensor = lambda values, dtype: torch.as_tensor(np.concatenate(values), dtype=dtype, device=self.device)
        return {"x": torch.cat([self.q.encode(self.core, part.observations) for part in parts]).flatten(0, 1),
                "action": as_tensor([step.played.ravel() for step in steps], torch.int64),
                "reward": as_tensor([step.rewards.ravel() for step in steps], torch.float32),
                "terminal": as_tensor([np.repeat(step.terminal, self.core.n_agents) for step in steps], torch.bool),
                "label": as_tensor([step.labels.ravel() for step in steps], torch.int64)}

    def keep_demonstrations(self, demonstrations: dict[str, torch.Tensor]) -> None:
        self.demonstrations = {key: value.to(self.device) for key, value in demonstrations.items()}
        self._next_row_offset = self.core.batch_size * self.core.n_agents

    def _pretrain(self, n_steps: int) -> dict[str, list[float]]:
        """``n_steps`` gradient steps on the demonstration loss alone."""
        losses = defaultdict(list)
        for _ in range(n_steps):
            demo_loss, margin_loss = self._demonstration_loss()
            self._gradient_step(demo_loss)
            losses["demo_loss"].append(demo_loss.item())
            losses["margin_loss"].append(margin_loss.item())
        return losses

    def _demonstration_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(J_demo, its large-margin part) on ``batch_size`` demonstrations drawn with the learner's generator."""
        demo = self.demonstrations
        index = torch.as_tensor(self.rng.integers(len(demo["x"]), size=self.config.batch_size), device=self.device)
        terminal = demo["terminal"][index]
        next_x = demo["x"][torch.where(terminal, index, index + self._next_row_offset)]
        q = self.q(demo["x"][index])
        q_played = q.gather(1, demo["action"][index, None]).squeeze(1)
        td_loss = F.smooth_l1_loss(q_played, self.td_target(demo["reward"][index], next_x, terminal.float(),
                                                            n_step=1))
        label = demo["label"][index, None]
        margin = torch.full_like(q, self.config.imitation_margin).scatter_(1, label, 0.0)
        margin_loss = ((q + margin).max(dim=1).values - q.gather(1, label).squeeze(1)).mean()
        return td_loss + margin_loss, margin_loss

    def _greedy_label_match(self) -> float:
        """The share of the demonstrations' states where the greedy action is the teacher's."""
        matches = 0
        with torch.no_grad():
            for x, label in zip(self.demonstrations["x"].split(65_536), self.demonstrations["label"].split(65_536)):
                matches += int((self.q(x).argmax(dim=1) == label).sum())
        return matches / len(self.demonstrations["label"])

    def _gradient_step(self, loss: torch.Tensor) -> None:
        """One Adam step on ``loss`` (gradient norm clipped), the target network following every
        ``target_update_interval`` of them."""
        c = self.config
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.gradient_updates += 1
        if self.gradient_updates % c.target_update_interval == 0:
            with torch.no_grad():
                for target_param, param in zip(self.target.parameters(), self.q.parameters()):
                    target_param.lerp_(param, c.tau)

    def training_reward(self, reward: np.ndarray, env_actions: np.ndarray, infos: dict[str, np.ndarray]
                        ) -> np.ndarray:
        """The value-based learners' training reward (the bill less the infeasible-setpoint charge) with the
        network penalty borne as ``penalty_reward`` says, ``penalty_weight`` times as heavy as billed (unchanged at
        "share" and 1)."""
        c = self.config
        return penalty_training_reward(super().training_reward(reward, env_actions, infos), infos["penalty"],
                                       self.core.config.cooperative_weight, c.penalty_reward, c.penalty_weight)

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
        # An empty buffer: n-step transitions wait n_step - 1 steps for their returns, learning_starts may be less.
        if self.env_steps < c.learning_starts or core_steps % c.train_frequency or self.buffer.size == 0:
            return {}
        losses = defaultdict(list)
        set_learning_rates(linear_schedule(1.0, c.lr_end_fraction, c.lr_decay_steps, self.env_steps),
                           (self.optimizer, c.learning_rate))
        for _ in range(c.gradient_steps):
            batch_x, batch_action, batch_reward, batch_next_x, batch_terminal = self.buffer.sample(
                c.batch_size, self.rng)
            td_target = self.td_target(batch_reward, batch_next_x, batch_terminal)
            q_taken = self.q(batch_x).gather(1, batch_action[:, None]).squeeze(1)
            loss = F.smooth_l1_loss(q_taken, td_target)
            losses["td_loss"].append(loss.item())
            if c.imitation_coef > 0.0:
                demo_loss, _ = self._demonstration_loss()
                loss = loss + c.imitation_coef * demo_loss
                losses["demo_loss"].append(demo_loss.item())
            self._gradient_step(loss)
            losses["q_mean"].append(q_taken.mean().item())
        return {key: float(np.mean(values)) for key, values in losses.items()}

    def td_target(self, reward: torch.Tensor, next_x: torch.Tensor, terminal: torch.Tensor,
                  n_step: int | None = None) -> torch.Tensor:
        """Step 4's target for M transitions (rewards (M,), next inputs (M, in_dim), terminal flags (M,)) whose
        rewards sum ``n_step`` steps (the config's by default)."""
        with torch.no_grad():
            next_q = self.target(next_x)
            if self.config.double_q:
                next_value = next_q.gather(1, self.q(next_x).argmax(dim=1, keepdim=True)).squeeze(1)
            else:
                next_value = next_q.max(dim=1).values
            discount = self.config.gamma ** (self.config.n_step if n_step is None else n_step)
            return reward + discount * (1.0 - terminal) * next_value

    def state_dict(self) -> dict[str, Any]:
        demonstrations = ({} if self.demonstrations is None else
                          {"demonstrations": {key: value.cpu() for key, value in self.demonstrations.items()}})
        return {"q": self.q.state_dict(), "target": self.target.state_dict(), "optimizer": self.optimizer.state_dict(),
                "buffer": self.buffer.state_dict(), "gradient_updates": self.gradient_updates, **self.collector_state(),
                **demonstrations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.gradient_updates = state["gradient_updates"]
        if "demonstrations" in state:
            self.keep_demonstrations(state["demonstrations"])
        else:
            check_demonstrations_kept(f"{state['env_steps']} community-steps", self.config.imitation_coef,
                                      state["env_steps"] > 0)
        self.load_collector_state(state)
