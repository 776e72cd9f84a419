"""A policy played through the feeder safety filter (``p2p_marl.sim.safety_filter``) on an environment without
the filter option: ``evaluate.py safety_filter=true`` gives every benchmark and checkpoint such a twin.

The filter reads every household's metered load and PV of the step from the observation (what each agent
observes of itself) and the batteries' stored energy from the core, and moves the policy's battery setpoint and
curtailment share where the step would leave the feeder's limits. The bid prices are the policy's, for whichever
side of the market a household ends up on. The filter changes the play, not the learner: a filtered method is
its own row. A community with a shared battery is not supported.
"""

from __future__ import annotations

import numpy as np

from p2p_marl.baselines.policy import PolicyWrapper
from p2p_marl.baselines.rules import battery_share, metered_load_pv_kw
from p2p_marl.sim.community import CommunityCore
from p2p_marl.sim.safety_filter import MOVED_KW, filtered_power


class SafetyFilter(PolicyWrapper):
    """A policy whose actions pass the feeder safety filter. It observes as the policy does (``PolicyWrapper``);
    ``interventions`` counts the community-steps where it moved a household's power by more than ``MOVED_KW``
    (as ``evaluate.py`` counts the environment's own filter's from ``safety_filter_kwh``; a step outside the
    limits that no move can help, its slacks alone taking the excess, is not one)."""

    def __init__(self, policy):
        super().__init__(policy, f"{policy.name}+safety_filter")
        self.interventions = 0

    def reset(self, core: CommunityCore) -> None:
        if core.has_shared_battery:
            raise ValueError("the safety filter moves the households' power only, and this community has a shared "
                             "battery whose power follows theirs: evaluate it without safety_filter")
        super().reset(core)

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray:
        action = np.array(self.policy.act(core, obs), dtype=np.float64)
        load_kw, pv_kw = metered_load_pv_kw(core, obs)
        charge_kw, discharge_kw = core.battery_power_kw(action)
        curtailed_kw = np.clip(action[..., 2], 0.0, 1.0) * pv_kw
        played_kw = charge_kw - discharge_kw
        battery_kw, filtered_curtailed_kw, moved = filtered_power(core, load_kw, pv_kw, played_kw, curtailed_kw)
        action[moved, :, 0] = battery_share(core, battery_kw[moved])
        action[moved, :, 2] = np.divide(filtered_curtailed_kw, pv_kw, out=np.zeros_like(pv_kw),
                                        where=pv_kw > 0)[moved]
        changed_kw = np.abs(battery_kw - played_kw) + np.abs(filtered_curtailed_kw - curtailed_kw)
        self.interventions += int((changed_kw.max(axis=-1) > MOVED_KW).sum())
        return action
