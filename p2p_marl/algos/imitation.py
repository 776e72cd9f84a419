"""Demonstrations from the optimiser: a warm start for the shared actor, reported as its own row.

The teacher is the perfect-foresight optimum (``p2p_marl.baselines.optimal``) of training episodes, drawn
exactly as training draws them (training days, random start SoC). Each optimal schedule is played out in the
environment and recorded as (observation, box point) pairs: the observation is what the agent sees there, the
forecasts of the environment's forecaster and no more, and the box point in [-1, 1]^3 is what the actor must
output so that ``nets.env_action`` plays the optimal step. The student can only imitate what its observation
determines, so it learns the optimum's action *expected* given the information it has; reinforcement learning
takes it from there. Nothing from a validation or test day enters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2p_marl.algos.nets import net_load_box
from p2p_marl.baselines.optimal import DispatchProblem, solve_dispatch
from p2p_marl.baselines.rules import self_consumption_setpoint
from p2p_marl.sim.community import CommunityCore


@dataclass(frozen=True)
class Demonstrations:
    observations: np.ndarray  # (M, N, obs_dim): M community-steps of N agents
    boxes: np.ndarray  # (M, N, 3): the actor's output that plays the optimum's step
    optimal_cost: float  # mean community cost per day of the demonstrated episodes
    lp_s: float  # seconds spent solving the teacher's programs


def optimal_demonstrations(core: CommunityCore, n_resets: int, seed: int, battery_action: str) -> Demonstrations:
    """``n_resets`` batches of ``core.batch_size`` training episodes, each played out by its optimum."""
    observations, boxes, costs, lp_s = [], [], [], 0.0
    rng = np.random.default_rng(seed)
    battery = core.battery
    energy_span_kwh = battery.max_energy_kwh - battery.min_energy_kwh
    for _ in range(n_resets):
        obs = core.reset(seed=int(rng.integers(2 ** 63)))
        schedules = [solve_dispatch(core, DispatchProblem.whole_day(core, int(day), core.start_energy_kwh[b]))
                     for b, day in enumerate(core.days)]
        lp_s += sum(schedule.build_s + schedule.solve_s for schedule in schedules)
        actions = np.stack([schedule.actions(battery.max_kw) for schedule in schedules], axis=1)  # (T, B, N, 3)
        day_cost = np.zeros(core.batch_size)
        for t in range(core.steps_per_episode):
            observations.append(obs)
            self_consumption = self_consumption_setpoint(core, obs)
            obs, _, _, infos = core.step(actions[t])
            day_cost += infos["cost"].sum(axis=-1)
            if battery_action == "power":
                battery_box = actions[t, ..., 0]
            elif battery_action == "net_load":
                battery_box = net_load_box(actions[t, ..., 0], self_consumption)
            else:  # the target the step reached, on the actor's [-1, 1] scale
                battery_box = np.divide(2.0 * (core.energy_kwh - battery.min_energy_kwh), energy_span_kwh,
                                        out=np.ones_like(core.energy_kwh), where=energy_span_kwh > 0) - 1.0
            boxes.append(np.stack([battery_box, 2.0 * actions[t, ..., 1] - 1.0, actions[t, ..., 2]], axis=-1))
        costs.append(day_cost)
    return Demonstrations(np.concatenate(observations), np.concatenate(boxes), float(np.concatenate(costs).mean()),
                          lp_s)
