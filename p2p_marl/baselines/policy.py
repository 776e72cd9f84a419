"""The one policy interface shared by benchmarks and trained learners.

A policy acts on the batched core: ``act(core, obs)`` takes the local observations (B, N, obs_dim) of the
step about to be settled and returns actions (B, N, 2) in the environment's action space. ``reset(core)`` is
called after ``core.reset`` so that a policy can plan for the day (the perfect-foresight optimum does).
A policy that also dispatches the community's shared battery has ``act_operator(core, obs)``, returning the
core's ``operator_action`` (B, 2) for the same step (the optimum and MPC), or None to leave it to the battery's
own control rule (the household MPC); ``rollout`` calls it after ``act``.
A trained policy that observes with settings of its own (``forecast_bins``, ``extra_features``: see
``p2p_marl.algos.load_policy``) has ``observation_settings`` (EnvConfig key -> value): ``rollout_days`` plays it
with them, and ``rollout`` refuses a core that observes otherwise.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from p2p_marl.sim.community import CommunityCore


class Policy(Protocol):
    name: str

    def reset(self, core: CommunityCore) -> None: ...

    def act(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray: ...


class PolicyWrapper:
    """A policy that changes what ``policy`` plays: it observes as ``policy`` does (its ``observation_settings``),
    resets it, and hands the shared battery's dispatch to it (``act_operator``, None where it has none, so the
    battery's rule runs). A subclass writes ``act``."""

    def __init__(self, policy: Policy, name: str):
        self.policy, self.name = policy, name
        self.observation_settings = getattr(policy, "observation_settings", {})

    def reset(self, core: CommunityCore) -> None:
        self.policy.reset(core)

    def act_operator(self, core: CommunityCore, obs: np.ndarray) -> np.ndarray | None:
        act_operator = getattr(self.policy, "act_operator", None)
        return None if act_operator is None else act_operator(core, obs)
