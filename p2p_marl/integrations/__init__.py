"""Adapters that drop p2p_marl into other RL stacks; each is an optional extra and is imported explicitly.

- ``p2p_marl.integrations.rllib`` (``pip install -e .[rllib]``): the environment registered with RLlib.
- ``p2p_marl.integrations.torchrl`` (``pip install -e .[torchrl]``): a native, batched TorchRL environment
  (B communities per step), agents grouped as ``prosumer``.
- ``p2p_marl.integrations.benchmarl`` (``pip install -e .[benchmarl]``): BenchMARL tasks and a Hydra entry point,
  ``python -m p2p_marl.integrations.benchmarl algorithm=mappo task=p2p_marl/community_10``.

Nothing is imported here, so that ``import p2p_marl`` never needs an optional package.
"""
