"""Range checks for hyperparameter dataclasses: each bad value raises ``ConfigError`` naming ``section.key``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from p2p_marl.config import ConfigError

# (key, low, high, low inclusive, high inclusive) of a numeric field.
Range = tuple[str, float, float, bool, bool]


def check_ranges(config: Any, ranges: Sequence[Range], integers: Iterable[str], section: str) -> None:
    """Raise ``ConfigError`` for the first field of ``config`` that is not an integer (for ``integers``) or
    not a finite number in its range; the message names ``section.key`` (``key`` for an empty section) and
    the allowed range."""
    prefix = f"{section}." if section else ""
    for key in integers:
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{prefix}{key} must be an integer, got {value!r}")
    for key, low, high, low_inc, high_inc in ranges:
        value = getattr(config, key)
        allowed = f"{'[' if low_inc else '('}{low}, {high}{']' if high_inc else ')'}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{prefix}{key} must be a finite number in {allowed}, got {value!r}")
        if value < low or (value == low and not low_inc) or value > high or (value == high and not high_inc):
            raise ConfigError(f"{prefix}{key}={value!r} is out of range; allowed {allowed}")



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
