"""The ``options`` of the views' ``reset``: which day(s) to play. The one-community views read ``"day"``, the
vector view ``"days"``; the other view's key is refused, since it would otherwise be ignored and a random day
played. Other keys are ignored, as PettingZoo's API test expects of any environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DAY_KEYS = ("day", "days")


def days_option(options: Mapping | None, key: str) -> Any:
    """``options[key]`` (``key`` one of ``DAY_KEYS``), None when absent; ``ValueError`` for options that are not a
    dict or that hold the other view's key. The core's ``reset`` checks the value (whole day indices in range)."""
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise ValueError(f"reset options must be a dict such as {{'{key}': ...}}, got {type(options).__name__}")
    other = DAY_KEYS[1 - DAY_KEYS.index(key)]
    if other in options:
        raise ValueError(f"reset option '{other}' is not read by this view, which takes {{'{key}': ...}}")
    return options.get(key)
