"""The contract between ``train.py`` and every learner.

A learner trains on the batched core (``CommunityCore`` with ``num_envs`` communities) and exposes:

- ``iterate()``: one unit of work (e.g. one batch of episodes and the updates that follow) returning scalar
  metrics to log (at least ``episode_return`` = mean over agents of the summed reward of finished episodes,
  ``community_cost`` = mean community cost per finished episode, the losses, and ``exploration`` where there is
  one); ``env_steps`` counts community-steps simulated so far (batch size x core steps).
- ``policy()``: a deterministic ``p2p_marl.baselines.policy.Policy`` for evaluation beside the benchmarks.
- ``state_dict()`` / ``load_state_dict()``: everything needed to continue bit-for-bit (networks, optimisers,
  replay buffers, random generators, counters), so that a resumed run equals an uninterrupted one.

``threads`` is how many CPU threads the learner may use: torch's (a deep learner sets them when it is built) and
an MPC teacher's LPs, solved that many communities at a time. One suits sweeps with a job per core; more threads
round torch's sums differently, so a run repeats its numbers with the same count.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from p2p_marl.baselines.policy import Policy
from p2p_marl.config import EnvConfig


class Learner(ABC):
    name: str

    def __init__(self, env_config: EnvConfig, config: Any, seed: int, threads: int = 1):
        self.env_config = env_config
        self.config = config
        self.seed = seed
        self.threads = threads
        self.env_steps = 0

    @abstractmethod
    def iterate(self) -> dict[str, float]: ...

    @abstractmethod
    def policy(self) -> Policy: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
