"""How ``train.py`` and ``evaluate.py`` report a user's mistake: one line on stderr and exit code 1.

A bad setting, a missing or unreadable checkpoint or data file, a run that is still going: the message names
what to fix, and a traceback would only bury it. ``HYDRA_FULL_ERROR=1`` (Hydra's own switch for full
tracebacks) lets the exception through unchanged for debugging. Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from p2p_marl.config import ConfigError
from p2p_marl.sim.profiles import CsvError
from p2p_marl.training.checkpoint import CheckpointError
from p2p_marl.training.run_lock import RunLockedError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, CheckpointError, CsvError, RunLockedError,
                                            FileNotFoundError)


def one_line(message: str) -> str:
    """``message`` on one line (a multi-line message's lines joined with spaces)."""
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip())


@contextmanager
def user_errors_as_one_line(program: str, on_error: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn a ``USER_ERRORS`` exception raised inside into ``SystemExit("<program>: error: <message>")``
    (Python prints it to stderr and exits with code 1), after calling ``on_error`` (e.g. to remove an output
    directory the launch left empty)."""
    try:
        yield
    except USER_ERRORS as error:
        if on_error is not None:
            on_error()
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise SystemExit(f"{program}: error: {one_line(error)}") from None
