"""The batched simulation core: profiles, battery, auction, feeder, tariffs and the community that joins them."""

from p2p_marl.sim.community import INFO_KEYS, OBS_FEATURES, CommunityCore, observation_features

__all__ = ["CommunityCore", "INFO_KEYS", "OBS_FEATURES", "observation_features"]
