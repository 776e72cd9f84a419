"""Progress of long loops, readable both in a terminal and in a redirected log.

In a terminal, a tqdm bar that redraws itself. When stderr is not a terminal (output redirected to a file, a
CI log, a cluster job), a redrawn bar would write thousands of refreshes; instead one log line is written
every ``LOG_EVERY_PERCENT`` percent of the total (and at the end).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

log = logging.getLogger("p2p_marl.progress")

LOG_EVERY_PERCENT = 5
T = TypeVar("T")


class Progress:
    """Progress of a count towards ``total`` (in ``unit``); ``update`` takes the absolute count reached."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True, initial: int = 0):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.count = initial
        self._bar = (tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
                     if enabled and sys.stderr.isatty() else None)
        self._start_s, self._start_count = time.perf_counter(), initial
        self._logged_step = self._percent_step(initial)

    def _percent_step(self, count: int) -> int:
        return int(100 * count / max(self.total, 1)) // LOG_EVERY_PERCENT

    def update(self, count: int, **postfix: Any) -> None:
        """The count has reached ``count``; ``postfix`` values are shown beside it (e.g. the latest return)."""
        self.count = count
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(count - self._bar.n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            return
        percent_step = self._percent_step(count)
        if percent_step > self._logged_step:
            self._logged_step = percent_step
            self._log_line(postfix)

    def finish(self, count: int, **postfix: Any) -> None:
        """The loop is done at ``count``, which may pass ``total`` (a last iteration that overshoots): the total
        becomes ``count`` so that the bar or the last line ends on the number the logs report."""
        self.total = max(self.total, count)
        if self._bar is not None:
            self._bar.total = self.total
        self.update(count, **postfix)
        self.close()

    def _log_line(self, postfix: dict[str, Any]) -> None:
        rate = (self.count - self._start_count) / max(time.perf_counter() - self._start_s, 1e-9)
        details = "".join(f", {key} {value}" for key, value in postfix.items())
        log.info("%s: %3.0f%% (%d/%d %s, %.0f/s%s)", self.desc, 100 * self.count / max(self.total, 1), self.count,
                 self.total, self.unit, rate, details)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def track(items: Iterable[T], total: int, desc: str, unit: str, enabled: bool = True) -> Iterator[T]:
    """``items`` one by one, with their ``Progress``."""
    with Progress(total, desc, unit, enabled) as progress:
        for index, item in enumerate(items):
            yield item
            progress.update(index + 1)
