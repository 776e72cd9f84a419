"""Rewriting a run's TensorBoard event files so that a resumed run continues them without duplicates, and
reading when a run started.

A run killed after its last checkpoint has logged steps that the resumed run logs again. TensorBoard itself
would hide the older copies (a purge marker), but raw readers (tbparse, ``EventFileLoader``, a script over
the protobufs) would see every such (tag, step) twice. ``drop_events_after`` removes them from the files.
"""

from __future__ import annotations

import os
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

EVENT_FILE_GLOB = "events.out.tfevents.*"


def drop_events_after(log_dir: Path, step: int) -> int:
    """Rewrite every event file directly in ``log_dir`` without its events of a step after ``step`` (each
    file replaced atomically; files without such events are left untouched); returns how many events were
    dropped. A record cut short by the kill is dropped with them."""
    dropped = 0
    for path in sorted(Path(log_dir).glob(EVENT_FILE_GLOB)):
        records = list(RawEventFileLoader(str(path)).Load())
        kept = [record for record in records if event_pb2.Event.FromString(record).step <= step]
        if len(kept) == len(records) and path.stat().st_size == _framed_size(records):
            continue
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "wb") as file:
            writer = RecordWriter(file)
            for record in kept:
                writer.write(record)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        dropped += len(records) - len(kept)
    return dropped


def first_wall_time(log_dir: Path) -> float | None:
    """The wall time (s since the epoch) of the earliest event directly in ``log_dir``: the version record the
    writer puts first in each file as it opens it, before any scalar, so for ``train.py`` the moment training
    started (before a first iteration as long as a warm start); None without event files."""
    times = []
    for path in Path(log_dir).glob(EVENT_FILE_GLOB):
        for record in RawEventFileLoader(str(path)).Load():
            times.append(event_pb2.Event.FromString(record).wall_time)
            break
    return min(times, default=None)


def _framed_size(records: list[bytes]) -> int:
    """Bytes the records take in a file: each has a 12-byte header (length and its CRC) and a 4-byte CRC."""
    return sum(len(record) + 16 for record in records)
