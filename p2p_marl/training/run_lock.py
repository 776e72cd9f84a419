"""One training process per run directory: a lock file holding the owner's process id and host.

``train.py`` holds ``<run_dir>/train.lock`` while it trains, so that ``resume=`` on a run that is still going
is refused instead of two processes writing the same checkpoints and logs. A lock whose process is gone (the
run was killed) is taken over. The owner's liveness can only be checked on its own host; a lock written on
another host (a cluster with a shared file system) is respected until the user deletes it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = "train.lock"


class RunLockedError(RuntimeError):
    """The run directory is held by another live training process; the message names it and the lock file."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _create(path: Path) -> bool:
    """Create the lock file with this process's id and host; False if it exists already."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as file:
        file.write(f"{os.getpid()} {socket.gethostname()}\n")
    return True


def _check_stale(path: Path, run_dir: Path) -> None:
    """Raise ``RunLockedError`` unless the lock at ``path`` belongs to a process of this host that is gone."""
    try:
        pid_text, host = path.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        raise RunLockedError(f"{run_dir} has an unreadable lock file {path}; if no train.py runs there, "
                             "delete it") from None
    if host != socket.gethostname():
        raise RunLockedError(f"{run_dir} is locked by process {pid} on host {host} ({path}); if that run is "
                             "no longer going, delete the lock file")
    if _process_alive(pid):
        raise RunLockedError(f"{run_dir} is still being trained by process {pid} ({path}); wait for it to "
                             "finish or stop it before resuming")
    log.info("Taking over the lock of %s from process %d, which is no longer running", run_dir, pid)


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the training lock of ``run_dir`` inside the block; ``RunLockedError`` if a live process holds it."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    if not _create(path):
        _check_stale(path, run_dir)
        path.unlink(missing_ok=True)
        if not _create(path):  # another process took the stale lock between the check and now
            raise RunLockedError(f"{run_dir} was locked by another process while this one started ({path})")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
