"""Demonstrations from a teacher that plans: a warm start for the shared actor, reported as its own row.

The teacher plays training episodes, drawn exactly as training draws them (training days, random start SoC),
and each step is recorded as (observation, box point): the observation is what the agent sees there, the
forecasts of the environment's forecaster and no more, and the box point in [-1, 1]^3 is what the actor must
output so that ``nets.env_action`` plays the teacher's step. Two teachers (``TEACHERS``):

- ``optimum``: the perfect-foresight optimum of each episode (``p2p_marl.baselines.optimal``, one LP a day). It
  knows the day's truth, which the student does not: the student can only imitate the optimum's action
  *expected* given the information it has.
- ``mpc``: model-predictive control on the environment's own forecaster (``p2p_marl.baselines.mpc``, one LP per
  community and step instead of one per day). It plans on the forecaster the student's observation is built
  from, not on the truth, so it asks for nothing that hindsight alone would know. It still sees more than
  the student: the forecast as a whole profile for the rest of the day (the student sees the next step and
  means ahead) and every household's state (the student its own and community aggregates).

With a ``student`` (a ``Policy``) the student plays the episodes and the teacher only says what it would do in
each state the student reaches (DAgger, Ross et al. 2011): the states a cloned policy drifts into are where its
imitation is worst, and an MPC teacher can plan from any of them (the optimum's schedule cannot: it is one plan
from the day's start). Reinforcement learning takes it from there. Nothing from a validation or test day enters.

With a ``grid`` (a value-based learner's ``ActionGrid``: DQN) the teacher's action is snapped to the nearest
grid action (``ActionGrid.nearest``) and the steps are played on the grid, so that every recorded step is also a
transition the learner could have made: its index, the training reward and the day's end are recorded beside the
teacher's label, and its next observation is the next step's (DQN's learning from demonstrations,
``p2p_marl.algos.dqn``).

A ``Policy`` may also teach (``demonstrations``, ``ActorImitation.warm_start``): trained actors that act in any
state, e.g. a learner's seeds played as one (``p2p_marl.evaluation.distil_seeds``).

Each recorded step is marked where the feeder binds without control: where idle batteries and uncurtailed PV
leave the voltage band or overload a line or the transformer (grid-only's step, ``idle_step_outside_limits``). The
actor learners can weigh those states apart (``imitation_feeder_weight``, ``feeder_weights``): where the teacher
plans around a limit that the student's observation does not show, its demonstrations may teach the student less
than the learner's own return does there (README, SimBench feeders).

With ``regrets`` (a student and MPC) each state is also judged: the teacher plans once more with the student's
battery and curtailment step fixed, and the plan's cost above its own is what the student's departure costs
there (``p2p_marl.evaluation.step_regret``'s regret). The actor learners weigh a DAgger round's states by it
(``imitation_regret_weight``, ``regret_weights``): a squared error spends the actor's capacity evenly over the
states, and the costliest tenth of a learner's steps hold 42 to 51 % of its regret (README, "Where each controller
loses, by MPC's reckoning"). The teacher judges on the training environment (the learner's narrowed voltage band,
where it has one) and without power smoothing, whose plans' bills do not compare.

``ActorImitation`` is the actor's side, shared by MAPPO and MADDPG (whose actors both output a point in the
box): the warm start (a fit to the teacher's own episodes, then DAgger rounds, each refitting on all labels so
far), the imitation loss on the kept demonstrations that the learner adds to its actor's loss, and the later
DAgger rounds that replace the oldest of them while the learner trains (``refresh``, MAPPO's
``imitation_refresh_steps``). The learners'
configs carry the same keys (``IMITATION_KEYS``), checked by ``IMITATION_RANGES`` and ``check_imitation``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from p2p_marl.algos.nets import feasible_box, net_load_box
from p2p_marl.baselines.mpc import MPCPolicy, played_step_kw
from p2p_marl.baselines.optimal import MAX_POWER_SMOOTHING_PER_KWH, DispatchProblem, solve_dispatch
from p2p_marl.baselines.policy import Policy
from p2p_marl.baselines.rules import self_consumption_setpoint
from p2p_marl.config import ConfigError
from p2p_marl.sim.community import ACTION_DIM, CommunityCore
from p2p_marl.sim.safety_filter import idle_step_outside_limits
from p2p_marl.training.value_based import ActionGrid

TEACHERS = ("optimum", "mpc")
BOX_COORDINATES = ("battery", "price", "curtailment")  # the actor's output in the box, as ``nets.env_action`` reads it
# A learner config's keys for learning from a teacher; imitation_days = 0 is pure RL.
IMITATION_KEYS = ("imitation_days", "imitation_epochs", "imitation_teacher", "imitation_rounds", "imitation_coef",
                  "imitation_smoothing_per_kwh")
IMITATION_RANGES = (
    ("imitation_days", 0, 100_000, True, True),
    ("imitation_epochs", 1, 10_000, True, True),
    ("imitation_rounds", 0, 1000, True, True),
    ("imitation_coef", 0.0, 1000.0, True, True),
    ("imitation_smoothing_per_kwh", 0.0, MAX_POWER_SMOOTHING_PER_KWH, True, True),
)
IMITATION_INTEGERS = {"imitation_days", "imitation_epochs", "imitation_rounds"}
# The actor learners' (MAPPO's, MADDPG's) weight of the student's regret in the demonstrations' weights
# (``regret_weights``); 0: every demonstration weighs the same.
REGRET_WEIGHT_RANGE = ("imitation_regret_weight", 0.0, 1000.0, True, True)
# Their weight of the demonstrations at steps where the feeder binds with idle batteries (``feeder_weights``); 1:
# the same as the others.
FEEDER_WEIGHT_RANGE = ("imitation_feeder_weight", 0.0, 1000.0, True, True)


def check_imitation(config: Any, prefix: str, battery_action: str = "power") -> None:
    """The settings that ``IMITATION_RANGES`` cannot check alone, named as ``prefix.key``; ``battery_action`` is
    the learner's (the value-based learners have none: their grid plays power setpoints)."""
    if config.imitation_teacher not in TEACHERS:
        raise ConfigError(f"{prefix}.imitation_teacher must be one of {list(TEACHERS)}, "
                          f"got {config.imitation_teacher!r}")
    if config.imitation_rounds > 0 and (config.imitation_teacher != "mpc" or battery_action == "target_soc"):
        raise ConfigError(f"{prefix}.imitation_rounds={config.imitation_rounds} needs imitation_teacher='mpc' and "
                          f"a battery_action other than 'target_soc', got {config.imitation_teacher!r} and "
                          f"{battery_action!r}: only MPC plans from the states the actor reaches")
    for key in ("imitation_rounds", "imitation_coef", "imitation_smoothing_per_kwh"):
        if getattr(config, key) > 0 and config.imitation_days == 0:
            raise ConfigError(f"{prefix}.{key}={getattr(config, key)!r} needs imitation_days > 0 (the "
                              "demonstrations it uses)")


def check_demonstration_weights(config: Any, prefix: str, refresh_steps: int = 0) -> None:
    """An actor learner's weights of its demonstrations, named as ``prefix.key``: ``imitation_feeder_weight`` other
    than 1 needs demonstrations (``imitation_days`` > 0); ``imitation_regret_weight`` > 0 needs states that a
    student reached (DAgger rounds, or MAPPO's refreshes every ``refresh_steps``), which only MPC can judge, and a
    teacher without power smoothing (whose plans minimise the bill plus the smoothing's cost, so that the bills of
    two plans no longer compare as regrets)."""
    if config.imitation_feeder_weight != 1.0 and config.imitation_days == 0:
        raise ConfigError(f"{prefix}.imitation_feeder_weight={config.imitation_feeder_weight!r} needs imitation_days "
                          "> 0 (the demonstrations it weighs)")
    weight = config.imitation_regret_weight
    if weight == 0.0:
        return
    if config.imitation_teacher != "mpc" or (config.imitation_rounds == 0 and refresh_steps == 0):
        raise ConfigError(f"{prefix}.imitation_regret_weight={weight!r} needs imitation_teacher='mpc' and states a "
                          "student reached: imitation_rounds > 0" + (" or imitation_refresh_steps > 0" if
                                                                   hasattr(config, "imitation_refresh_steps") else "")
                          + f" (got {config.imitation_teacher!r} and imitation_rounds={config.imitation_rounds})")
    if config.imitation_smoothing_per_kwh > 0.0:
        raise ConfigError(f"{prefix}.imitation_regret_weight={weight!r} needs imitation_smoothing_per_kwh=0, got "
                          f"{config.imitation_smoothing_per_kwh!r}: a smoothing teacher plans for its bill plus the "
                          "smoothing's cost, and the bills of its plans do not measure a student's regret")


def regret_weights(regrets: np.ndarray, regret_weight: float) -> np.ndarray:
    """(M,) weights of a round's demonstrations from the student's regret in each (M,): ``(1 + regret_weight *
    regret / mean regret) / (1 + regret_weight)``, mean 1, so that the round weighs as much as before and its
    costly states more than its free ones (AggreVaTe's idea, Ross and Bagnell 2014, on a squared error). Negative
    regrets (the LP's rounding) count as 0; a round without regret weighs every state 1."""
    regret = np.maximum(regrets, 0.0)
    mean = regret.mean() if regret.size else 0.0
    if mean <= 0.0:
        return np.ones_like(regret)
    return (1.0 + regret_weight * regret / mean) / (1.0 + regret_weight)


def feeder_weights(idle_breaks_feeder: np.ndarray, feeder_weight: float) -> np.ndarray:
    """(M,) weights of demonstrations: ``feeder_weight`` where the step breaks the feeder's limits with idle batteries
    (``Demonstrations.idle_breaks_feeder``), 1 elsewhere. Not renormalised: at 0 the learner's own return alone
    shapes the actor where the feeder binds, and every other state weighs as before."""
    return np.where(idle_breaks_feeder, feeder_weight, 1.0)


@dataclass(frozen=True)
class GridSteps:
    """The grid's view of demonstrations (``demonstrations`` with a ``grid``), aligned with their observations."""

    labels: np.ndarray  # (M, N) int: the grid action nearest the teacher's
    played: np.ndarray  # (M, N) int: the grid action played, the label or the student's
    rewards: np.ndarray  # (M, N): the training reward of the played step
    terminal: np.ndarray  # (M,) bool: the step ended the day (else the next observation is the batch's next step's)


@dataclass(frozen=True)
class Demonstrations:
    observations: np.ndarray  # (M, N, obs_dim): M community-steps of N agents
    boxes: np.ndarray  # (M, N, 3): the actor's output that plays the teacher's step
    cost: float  # mean community cost per day of the played episodes (the teacher's, on the grid if there is
    # one, or the student's)
    teacher_s: float  # seconds the teacher spent planning
    idle_breaks_feeder: np.ndarray  # (M,) bool: with idle batteries and no curtailment the step would leave the
    # voltage band or overload a line or the transformer (``idle_step_outside_limits``)
    grid: GridSteps | None = None  # with a grid only
    regrets: np.ndarray | None = None  # (M,) with ``regrets``: money per community-step, what the student's
    # battery and curtailment step cost by the teacher's reckoning (``demonstrations``)


class _EpisodeOptimum:
    """The perfect-foresight optimum of each community's episode from its own start energy (``reset`` and
    ``act`` of a ``Policy``; ``OptimalPolicy`` plans from ``soc_initial``, training episodes start anywhere), its
    ties broken by ``power_smoothing_per_kwh`` (``p2p_marl.baselines.optimal``)."""

    def __init__(self, power_smoothing_per_kwh: float):
        self.power_smoothing_per_kwh = power_smoothing_per_kwh

    def reset(self, core: CommunityCore) -> None:
        schedules = [solve_dispatch(core, DispatchProblem.whole_day(core, int(day), core.start_energy_kwh[b]),
                                    power_smoothing_per_kwh=self.power_smoothing_per_kwh)
                     for b, day in enumerate(core.days)]
        self._actions = np.stack([schedule.actions(core.battery.max_kw) for schedule in schedules], axis=1)

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        return self._actions[core.t]


def demonstrations(core: CommunityCore, teacher: str | Policy, n_resets: int, seed: int, battery_action: str,
                   student: Policy | None = None, grid: ActionGrid | None = None,
                   training_reward: Callable[[np.ndarray, np.ndarray, dict], np.ndarray] | None = None,
                   threads: int = 1, smoothing_per_kwh: float = 0.0, regrets: bool = False) -> Demonstrations:
    """``n_resets`` batches of ``core.batch_size`` training episodes, each played out by ``teacher``, or by
    ``student`` with the teacher's action in each of its states recorded. With a ``grid`` the teacher plays the
    grid action nearest its own, a student its ``indices(core, obs)`` on the grid (``GreedyPolicy``), and
    ``GridSteps`` are recorded too, rewards by ``training_reward(reward, played actions, infos)`` (the core's
    reward without it). The MPC teacher solves ``threads`` communities' LPs at a time. Either teacher breaks its
    plans' ties towards spread battery power with ``smoothing_per_kwh`` > 0 (``power_smoothing_per_kwh`` of
    ``p2p_marl.baselines.optimal``: of equal plans, the one a policy can follow). With ``regrets`` (a student and
    MPC) the teacher also plans around each step the student plays, its battery powers and curtailed PV fixed
    (``MPCPolicy.plans``): that plan's cost above the teacher's own is the step's regret, Q - V of
    ``p2p_marl.evaluation.step_regret``, what the student's departure from the teacher costs in that state.
    ``teacher`` may also be a ``Policy`` that acts in any state (trained actors, ``p2p_marl.evaluation.distil_seeds``),
    smoothing nothing and judging no regret."""
    named = isinstance(teacher, str)
    if named and teacher not in TEACHERS:
        raise ValueError(f"teacher must be one of {list(TEACHERS)}, got {teacher!r}")
    if student is not None and teacher == "optimum":
        raise ValueError("a student can only be taught by the mpc teacher: the optimum plans once, from the day's "
                         "start")
    if not named and (smoothing_per_kwh > 0.0 or regrets):
        raise ValueError(f"a teacher policy ({teacher.name}) neither smooths plans nor judges regrets: those need "
                         "the mpc teacher")
    if student is not None and battery_action == "target_soc":
        raise ValueError("a student with battery_action='target_soc' is not supported: the teacher's target is "
                         "read from the step the teacher played")
    if regrets and (student is None or grid is not None):
        raise ValueError("regrets judge a student's steps on the actor's box: they need a student and no grid")
    policy = (teacher if not named else _EpisodeOptimum(smoothing_per_kwh) if teacher == "optimum"
              else MPCPolicy(threads=threads, power_smoothing_per_kwh=smoothing_per_kwh))
    observations, boxes, costs, teacher_s, idle_breaks_feeder = [], [], [], 0.0, []
    labels, played_indices, rewards, terminal, step_regrets = [], [], [], [], []
    rng = np.random.default_rng(seed)
    battery = core.battery
    energy_span_kwh = battery.max_energy_kwh - battery.min_energy_kwh
    for _ in range(n_resets):
        obs = core.reset(seed=int(rng.integers(2 ** 63)))
        start = time.perf_counter()
        policy.reset(core)
        teacher_s += time.perf_counter() - start
        if student is not None:
            student.reset(core)
        day_cost = np.zeros(core.batch_size)
        for _ in range(core.steps_per_episode):
            observations.append(obs)
            idle_breaks_feeder.append(idle_step_outside_limits(core))
            self_consumption = self_consumption_setpoint(core, obs)
            start = time.perf_counter()
            action = policy.act(core, obs)
            teacher_s += time.perf_counter() - start
            if battery_action == "feasible":  # the share of what the battery can do now, before the step
                feasible_battery_box = feasible_box(action[..., 0], core)
            if grid is None:
                played = action if student is None else student.act(core, obs)
            else:
                label = grid.nearest(core, obs, action)
                played_index = label if student is None else student.indices(core, obs)
                played = grid.actions(core, obs, played_index)
                labels.append(label)
                played_indices.append(played_index)
            if regrets:
                start = time.perf_counter()
                fixed = policy.plans(core, played_step_kw(core, played))
                step_regrets.append(np.array([plan.cost for plan in fixed]) - policy.planned_cost)
                teacher_s += time.perf_counter() - start
            obs, reward, done, infos = core.step(played)
            if grid is not None:
                rewards.append(reward if training_reward is None else training_reward(reward, played, infos))
                terminal.append(done)
            day_cost += infos["cost"].sum(axis=-1)
            if battery_action == "power":
                battery_box = action[..., 0]
            elif battery_action == "net_load":
                battery_box = net_load_box(action[..., 0], self_consumption)
            elif battery_action == "feasible":
                battery_box = feasible_battery_box
            else:  # the target the step reached, on the actor's [-1, 1] scale
                battery_box = np.divide(2.0 * (core.energy_kwh - battery.min_energy_kwh), energy_span_kwh,
                                        out=np.ones_like(core.energy_kwh), where=energy_span_kwh > 0) - 1.0
            boxes.append(np.stack([battery_box, 2.0 * action[..., 1] - 1.0, action[..., 2]], axis=-1))
        costs.append(day_cost)
        if regrets:
            policy.close()  # the plans around the student's last step started its threads again
    steps = None if grid is None else GridSteps(
        np.concatenate(labels), np.concatenate(played_indices), np.concatenate(rewards),
        np.repeat(terminal, core.batch_size))
    return Demonstrations(np.concatenate(observations), np.concatenate(boxes), float(np.concatenate(costs).mean()),
                          teacher_s, np.concatenate(idle_breaks_feeder), steps,
                          np.concatenate(step_regrets) if regrets else None)


def _play_round(core: CommunityCore, config: Any, rng: np.random.Generator, student: Policy | None,
                threads: int, teacher: Policy | None = None) -> tuple[Demonstrations, np.ndarray, dict[str, float]]:
    """One round of ``ActorImitation``: ``ceil(config.imitation_days / batch_size)`` batches of training episodes
    played by the teacher (``student`` None) or by ``student`` and labelled by the teacher, on a seed from
    ``rng``; with them the weight of each community-step's demonstrations (``regret_weights`` of the student's
    regrets where ``config.imitation_regret_weight`` > 0, else 1, times ``feeder_weights`` of
    ``config.imitation_feeder_weight``) and, where regrets were measured, the student's mean regret per day
    (``imitation/student_regret_per_day``). ``teacher`` (a ``Policy``) replaces
    ``config.imitation_teacher``."""
    judge = student is not None and config.imitation_regret_weight > 0.0
    played = demonstrations(core, config.imitation_teacher if teacher is None else teacher,
                            math.ceil(config.imitation_days / core.batch_size),
                            int(rng.integers(2 ** 63)), config.battery_action, student, threads=threads,
                            smoothing_per_kwh=config.imitation_smoothing_per_kwh, regrets=judge)
    weights = feeder_weights(played.idle_breaks_feeder, config.imitation_feeder_weight)
    if not judge:
        return played, weights, {}
    per_day = float(played.regrets.sum() * core.steps_per_episode / len(played.regrets))
    return (played, weights * regret_weights(played.regrets, config.imitation_regret_weight),
            {"imitation/student_regret_per_day": per_day})


def check_demonstrations_kept(progress: str, imitation_coef: float, started: bool) -> None:
    """``ValueError`` for a state without demonstrations, ``progress`` into a run whose updates need them."""
    if imitation_coef > 0.0 and started:
        raise ValueError(f"the state is {progress} into a run with imitation_coef={imitation_coef} but holds no "
                         "demonstrations; it was saved by a run without imitation_coef, so resume it with the "
                         "settings it trained with")


class ActorImitation:
    """An actor learning from a teacher: ``warm_start`` fits it to the teacher's actions, ``loss`` is the
    imitation loss on the demonstrations kept for the learner's updates (``imitation_coef`` > 0).

    ``actor_input(obs)`` makes the actor's input from observations (..., N, obs_dim), ``actor_box(x)`` is its
    deterministic output in the box [-1, 1]^3; ``optimizer`` steps ``parameters`` (clipped to
    ``max_grad_norm``); ``generator`` draws the minibatches."""

    def __init__(self, actor_input: Callable[[torch.Tensor], torch.Tensor],
                 actor_box: Callable[[torch.Tensor], torch.Tensor], parameters: Iterable[nn.Parameter],
                 optimizer: torch.optim.Optimizer, max_grad_norm: float, generator: torch.Generator,
                 device: torch.device, threads: int = 1):
        self.actor_input, self.actor_box = actor_input, actor_box
        self.threads = threads  # an MPC teacher solves this many communities' LPs at a time
        self.parameters = list(parameters)
        self.optimizer, self.max_grad_norm = optimizer, max_grad_norm
        self.generator, self.device = generator, device
        # The demonstrations (float32 observations (M, N, obs_dim) and boxes (M, N, 3)) and the actor's flat
        # inputs and targets made from them.
        self.demonstrations: tuple[torch.Tensor, torch.Tensor] | None = None
        self.weights: torch.Tensor | None = None  # (M,) each community-step's weight in the fit and the loss
        self._x: torch.Tensor | None = None
        self._target: torch.Tensor | None = None
        self._weight: torch.Tensor | None = None

    def warm_start(self, core: CommunityCore, config: Any, rng: np.random.Generator, policy: Callable[[], Policy],
                   num_minibatches: int, teacher: Policy | None = None) -> dict[str, float]:
        """Fit the actor's output to the teacher's actions on ``config.imitation_days`` training episodes (mean
        squared error in the box, each community-step's weighted by ``feeder_weights`` of
        ``imitation_feeder_weight`` in every round and by ``regret_weights`` in DAgger rounds with
        ``imitation_regret_weight`` > 0, ``imitation_epochs`` passes in ``num_minibatches`` minibatches), then for each
        of ``imitation_rounds`` on as many episodes played by the actor (``policy()``, a snapshot) and labelled
        by the teacher, refitting on all in minibatches of the first fit's size. ``config`` is the learner's (its
        ``IMITATION_KEYS`` and ``battery_action``). Keeps the demonstrations if
        ``imitation_coef`` > 0; returns the ``imitation/`` metrics, the last fit's error on all demonstrations
        among them, in total (``loss``) and per coordinate of the box (``loss_battery``, ...). ``teacher`` (a
        ``Policy``) replaces ``config.imitation_teacher`` (``p2p_marl.evaluation.distil_seeds``)."""
        observations, boxes, weights, metrics, teacher_s = [], [], [], {}, 0.0
        for round_ in range(1 + config.imitation_rounds):
            student = None if round_ == 0 else policy()
            played, round_weights, round_metrics = _play_round(core, config, rng, student, self.threads, teacher)
            observations.append(played.observations)
            boxes.append(played.boxes)
            weights.append(round_weights)
            teacher_s += played.teacher_s
            metrics["imitation/teacher_cost" if student is None else "imitation/student_cost"] = played.cost
            metrics.update(round_metrics)  # the last DAgger round's
            if round_ == 0:
                minibatch = math.ceil(played.boxes[..., 0].size / num_minibatches)  # kept for the refits
            self.keep(np.concatenate(observations), np.concatenate(boxes), np.concatenate(weights))
            errors = self._fit(minibatch, config.imitation_epochs)
        if config.imitation_coef == 0.0:  # the updates do not use them: neither memory nor checkpoints keep them
            self.demonstrations = self.weights = self._x = self._target = self._weight = None
        return {"imitation/loss": float(errors.sum()),
                **{f"imitation/loss_{name}": float(error) for name, error in zip(BOX_COORDINATES, errors, strict=True)},
                **metrics, "imitation/samples": float(sum(b[..., 0].size for b in boxes)),
                "imitation/teacher_seconds": teacher_s}

    def refresh(self, core: CommunityCore, config: Any, rng: np.random.Generator, policy: Policy) -> dict[str, float]:
        """A DAgger round during reinforcement learning: ``policy`` (a snapshot of the actor as it is now) plays
        ``config.imitation_days`` training episodes, the teacher labels the states it reaches, and they replace
        the oldest round of the kept demonstrations, so that the imitation loss reads the states the actor
        visits now (the warm start's come from MPC's own episodes and the early clone's). The first refresh
        replaces MPC's own episodes; after as many refreshes as the warm start had rounds, every kept state is
        one the actor reached while it trained. The kept demonstrations keep their size (every round plays
        ``ceil(imitation_days / batch_size)`` batches); the actor is not refitted: the labels enter through the
        imitation loss alone."""
        played, weights, metrics = _play_round(core, config, rng, policy, self.threads)
        kept_observations, kept_boxes = self.demonstrations
        rows = len(played.observations)
        self.keep(np.concatenate([kept_observations[rows:].numpy(), played.observations]),
                  np.concatenate([kept_boxes[rows:].numpy(), played.boxes]),
                  np.concatenate([self.weights[rows:].numpy(), weights]))
        return {"imitation/refresh_student_cost": played.cost, "imitation/refresh_teacher_seconds": played.teacher_s,
                **{key.replace("imitation/", "imitation/refresh_"): value for key, value in metrics.items()}}

    def keep(self, observations: np.ndarray | torch.Tensor, boxes: np.ndarray | torch.Tensor,
             weights: np.ndarray | torch.Tensor | None = None) -> None:
        """Keep demonstrations (a checkpoint's, or new ones) for the fit and the imitation loss, each
        community-step's weighing ``weights`` (M,) in them (None: 1 each)."""
        self.demonstrations = (torch.as_tensor(observations, dtype=torch.float32),
                               torch.as_tensor(boxes, dtype=torch.float32))
        steps, n_agents = self.demonstrations[1].shape[:2]
        self.weights = (torch.ones(steps) if weights is None else torch.as_tensor(weights, dtype=torch.float32))
        if self.weights.shape != (steps,):
            raise ValueError(f"demonstration weights must have shape ({steps},), one per community-step, got "
                             f"{tuple(self.weights.shape)}")
        self._x = self.actor_input(self.demonstrations[0].to(self.device)).flatten(0, -2)
        self._target = self.demonstrations[1].reshape(-1, ACTION_DIM).to(self.device)
        self._weight = self.weights.repeat_interleave(n_agents).to(self.device)  # one per agent-step, as _x

    def state_dict(self) -> dict[str, Any]:
        """The kept demonstrations and their weights, if any: a checkpoint of a run with ``imitation_coef`` > 0
        holds them."""
        if self.demonstrations is None:
            return {}
        return {"demonstrations": self.demonstrations, "demonstration_weights": self.weights}

    def load_state_dict(self, state: dict[str, Any], iterations: int, imitation_coef: float) -> None:
        """Keep a checkpoint's demonstrations (weighing 1 each where it predates their weights); a state
        ``iterations`` into a run with ``imitation_coef`` > 0 that holds none cannot resume it."""
        if "demonstrations" in state:
            self.keep(*state["demonstrations"], state.get("demonstration_weights"))
        else:
            check_demonstrations_kept(f"{iterations} iterations", imitation_coef, iterations > 0)

    def loss(self, n_samples: int) -> torch.Tensor:
        """The imitation loss on ``n_samples`` agent-steps drawn from the kept demonstrations (weighted: with
        regret or feeder weights its size is not comparable to an unweighted run's)."""
        return self._error(torch.randint(len(self._x), (n_samples,), generator=self.generator).to(self.device))

    def _fit(self, minibatch: int, epochs: int) -> np.ndarray:
        """``epochs`` passes over the kept demonstrations in minibatches of ``minibatch`` agent-steps; the final
        mean squared error on all of them per coordinate of the box (3,)."""
        for _ in range(epochs):
            order = torch.randperm(len(self._x), generator=self.generator).to(self.device)
            for first in range(0, len(order), minibatch):
                loss = self._error(order[first:first + minibatch])
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
                self.optimizer.step()
        with torch.no_grad():
            return (self.actor_box(self._x) - self._target).pow(2).mean(0).cpu().numpy().astype(np.float64)

    def _error(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Mean squared error, summed over the action's coordinates and weighted by the demonstrations' weights,
        of the actor's output against the teacher's box on the kept agent-steps ``index``."""
        squared = (self.actor_box(self._x[index]) - self._target[index]).pow(2).sum(-1)
        return (self._weight[index] * squared).mean()
