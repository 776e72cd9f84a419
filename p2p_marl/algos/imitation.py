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
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from p2p_marl.algos.nets import net_load_box
from p2p_marl.baselines.mpc import MPCPolicy
from p2p_marl.baselines.optimal import DispatchProblem, solve_dispatch
from p2p_marl.baselines.policy import Policy
from p2p_marl.baselines.rules import self_consumption_setpoint
from p2p_marl.sim.community import CommunityCore

TEACHERS = ("optimum", "mpc")


@dataclass(frozen=True)
class Demonstrations:
    observations: np.ndarray  # (M, N, obs_dim): M community-steps of N agents
    boxes: np.ndarray  # (M, N, 3): the actor's output that plays the teacher's step
    cost: float  # mean community cost per day of the played episodes (the teacher's, or the student's)
    teacher_s: float  # seconds the teacher spent planning


class _EpisodeOptimum:
    """The perfect-foresight optimum of each community's episode from its own start energy (``reset`` and
    ``act`` of a ``Policy``; ``OptimalPolicy`` plans from ``soc_initial``, training episodes start anywhere)."""

    def reset(self, core: CommunityCore) -> None:
        schedules = [solve_dispatch(core, DispatchProblem.whole_day(core, int(day), core.start_energy_kwh[b]))
                     for b, day in enumerate(core.days)]
        self._actions = np.stack([schedule.actions(core.battery.max_kw) for schedule in schedules], axis=1)

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        return self._actions[core.t]


def demonstrations(core: CommunityCore, teacher: str, n_resets: int, seed: int, battery_action: str,
                   student: Policy | None = None) -> Demonstrations:
    """``n_resets`` batches of ``core.batch_size`` training episodes, each played out by ``teacher``, or by
    ``student`` with the teacher's action in each of its states recorded."""
    if teacher not in TEACHERS:
        raise ValueError(f"teacher must be one of {list(TEACHERS)}, got {teacher!r}")
    if student is not None and teacher != "mpc":
        raise ValueError("a student can only be taught by the mpc teacher: the optimum plans once, from the day's "
                         "start")
    if student is not None and battery_action == "target_soc":
        raise ValueError("a student with battery_action='target_soc' is not supported: the teacher's target is "
                         "read from the step the teacher played")
    policy = _EpisodeOptimum() if teacher == "optimum" else MPCPolicy()
    observations, boxes, costs, teacher_s = [], [], [], 0.0
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
            self_consumption = self_consumption_setpoint(core, obs)
            start = time.perf_counter()
            action = policy.act(core, obs)
            teacher_s += time.perf_counter() - start
            played = action if student is None else student.act(core, obs)
            obs, _, _, infos = core.step(played)
            day_cost += infos["cost"].sum(axis=-1)
            if battery_action == "power":
                battery_box = action[..., 0]
            elif battery_action == "net_load":
                battery_box = net_load_box(action[..., 0], self_consumption)
            else:  # the target the step reached, on the actor's [-1, 1] scale
                battery_box = np.divide(2.0 * (core.energy_kwh - battery.min_energy_kwh), energy_span_kwh,
                                        out=np.ones_like(core.energy_kwh), where=energy_span_kwh > 0) - 1.0
            boxes.append(np.stack([battery_box, 2.0 * action[..., 1] - 1.0, action[..., 2]], axis=-1))
        costs.append(day_cost)
    return Demonstrations(np.concatenate(observations), np.concatenate(boxes), float(np.concatenate(costs).mean()),
                          teacher_s)
