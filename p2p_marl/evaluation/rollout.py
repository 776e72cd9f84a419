"""Play a policy on the batched core and keep every step's infos: the raw material of every KPI."""

from __future__ import annotations

import numpy as np

from p2p_marl.baselines.policy import Policy
from p2p_marl.sim.community import CommunityCore


def rollout(core: CommunityCore, policy: Policy, days: np.ndarray) -> dict[str, np.ndarray]:
    """Play one episode on each of ``core.batch_size`` days; returns each of ``core.info_keys`` stacked to
    (B, T, N). A policy with an ``act_operator`` method (the optimum, MPC) dispatches the shared battery, if the
    community has one; for any other, or where it returns None (the household MPC), the battery's rule runs. A
    trained policy with ``observation_settings`` of its own needs a core that observes with them
    (``p2p_marl.evaluation.compare.observed_config``): ``ValueError`` if not."""
    differing = core.config.differing(getattr(policy, "observation_settings", {}))
    if differing:
        raise ValueError(f"{policy.name} observes with {differing}, this core with "
                         f"{ {key: getattr(core.config, key) for key in differing} }: build the core from "
                         "compare.observed_config(env_config, policy), or play it with compare.rollout_days")
    obs = core.reset(days=days)
    policy.reset(core)
    act_operator = getattr(policy, "act_operator", None) if core.has_shared_battery else None
    steps: dict[str, list[np.ndarray]] = {key: [] for key in core.info_keys}
    done = False
    while not done:
        actions = policy.act(core, obs)
        operator_action = None if act_operator is None else act_operator(core, obs)
        obs, _, done, infos = core.step(actions, operator_action)
        for key in core.info_keys:
            steps[key].append(np.array(infos[key]))
    return {key: np.stack(values, axis=1) for key, values in steps.items()}
