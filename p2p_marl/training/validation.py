"""Checks for learners' hyperparameter dataclasses; each bad value raises ``ConfigError`` naming ``section.key``.

``check_ranges`` (numeric ranges) is shared with the environment config and re-exported here."""

from __future__ import annotations

from typing import Any

import torch

from p2p_marl.config import ConfigError, check_ranges

__all__ = ["check_bools", "check_ranges", "check_network"]


def check_bools(config: Any, keys: tuple[str, ...], section: str) -> None:
    """Each of ``keys`` is a bool (YAML's true or false), not a string or number that merely looks like one."""
    for key in keys:
        if not isinstance(getattr(config, key), bool):
            raise ConfigError(f"{section}.{key} must be true or false, got {getattr(config, key)!r}")


def check_network(config: Any, section: str) -> None:
    """``hidden_sizes`` (a non-empty list of layer widths) and ``device`` of a learner with a neural network."""
    sizes = config.hidden_sizes
    if not isinstance(sizes, (list, tuple)) or not sizes or not all(
            isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 4096 for h in sizes):
        raise ConfigError(f"{section}.hidden_sizes must be a non-empty list of integers in [1, 4096], got {sizes!r}")
    device = config.device
    if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise ConfigError(f"{section}.device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    if device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"{section}.device={device!r} but no CUDA device is available; use device=cpu")
