"""Output directories of the entry points: a fresh one per launch, and none left behind by a launch that failed.

Two launches started in the same second (a shell loop starting runs in the background) would get the same
time-stamped name; ``claim_new_dir`` creates the directory itself, atomically, and takes the next free
``<name>_2``, ``<name>_3``, ... when the name is taken, so no two launches share a directory.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

MAX_SAME_NAME = 10_000  # launches of one name and second before giving up (a sign of a runaway loop)


def claim_new_dir(path: str) -> str:
    """Create a directory that did not exist before, ``path`` or else ``path_<k>`` with the smallest free
    k >= 2; returns its path. ``os.mkdir`` fails on an existing directory, so two processes cannot both get
    one name."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, MAX_SAME_NAME + 1):
        candidate = path if k == 1 else f"{path}_{k}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{path} and {MAX_SAME_NAME - 1} numbered variants of it exist already")


def script_output_dir(out: Path | None, name: str) -> Path:
    """The output directory of a ``python -m`` script: ``out`` (created if missing), else a new
    ``runs/<name>/<date>_<time>`` of its own."""
    if out is None:
        return Path(claim_new_dir(f"runs/{name}/{time.strftime('%Y-%m-%d_%H-%M-%S')}"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def register_resolver() -> None:
    """``${p2p_new_dir:<path>}`` for Hydra configs: ``claim_new_dir(path)``, cached, so that every later
    resolution of the same config gives the one directory created."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("p2p_new_dir"):
        OmegaConf.register_new_resolver("p2p_new_dir", claim_new_dir, use_cache=True)


def remove_if_only_launch_records(run_dir: Path, records: set[str]) -> bool:
    """Delete ``run_dir`` if it holds nothing but ``records`` (entry names, e.g. Hydra's ``.hydra`` and the job's
    log): what a launch that stopped before doing any work leaves behind. Returns whether it was deleted."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not {entry.name for entry in run_dir.iterdir()} <= records:
        return False
    shutil.rmtree(run_dir)
    return True


def hydra_launch_records() -> set[str]:
    """What Hydra writes into a job's output directory before the job starts: its record of the composed
    config (``hydra.output_subdir``) and the job's log."""
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.get()
    return {str(hydra_config.output_subdir), f"{hydra_config.job.name}.log"}
