"""Play a policy on the batched core and keep every step's infos: the raw material of every KPI."""

from __future__ import annotations

import numpy as np

from p2p_marl.baselines.policy import Policy
from p2p_marl.sim.community import INFO_KEYS, CommunityCore


def rollout(core: CommunityCore, policy: Policy, days: np.ndarray) -> dict[str, np.ndarray]:
    """Play one episode on each of ``core.batch_size`` days; returns each info key stacked to (B, T, N)."""
    obs = core.reset(days=days)
    policy.reset(core)
    steps: dict[str, list[np.ndarray]] = {key: [] for key in INFO_KEYS}
    done = False
    while not done:
        obs, _, done, infos = core.step(policy.act(core, obs))
        for key in INFO_KEYS:
            steps[key].append(np.array(infos[key]))
    return {key: np.stack(values, axis=1) for key, values in steps.items()}
