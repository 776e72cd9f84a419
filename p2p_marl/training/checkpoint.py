"""Checkpoint files of training runs: written atomically, read back with errors that name the file.

A run directory keeps its checkpoints as ``checkpoints/step_<env_steps>.pt`` (periodic ones and the final one;
the newest ``keep_checkpoints`` stay). A file is ``torch.save`` of a dict of tensors and plain Python values
only, so it loads with ``torch.load(weights_only=True)`` (no arbitrary pickled objects):

- ``format``: ``CHECKPOINT_FORMAT``, the layout version;
- ``config``: the run's resolved training config (keys of ``TrainConfig``: ``env``, ``algo`` with the learner's
  registry name ``algo.name`` and its hyperparameters, ``seed``, ...);
- ``learner``: ``learner.state_dict()`` (networks, optimisers, buffers, generators, ``env_steps``);
- ``loop``: the training loop's state (torch's global random generator);
- ``env_steps`` and ``finished`` (whether training had reached ``total_env_steps``).

Writing goes to a temporary file in the same directory that is then renamed over the target, so a crash while
writing never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from p2p_marl.algos import build_learner
from p2p_marl.algos.base import Learner
from p2p_marl.config import EnvConfig

CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step_(\d+)\.pt")
_KEYS = ("format", "config", "learner", "loop", "env_steps", "finished")


class CheckpointError(ValueError):
    """A file that is not a readable p2p_marl checkpoint; the message names the file."""


@dataclass
class Checkpoint:
    path: Path
    config: dict[str, Any]
    learner_state: dict[str, Any]
    loop_state: dict[str, Any]
    env_steps: int
    finished: bool

    def build_learner(self) -> Learner:
        """The learner of this checkpoint, restored to its saved state."""
        try:
            env_config = EnvConfig(**self.config["env"])
            learner = build_learner(env_config, self.config["algo"], self.config["seed"])
            learner.load_state_dict(self.learner_state)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"checkpoint {self.path} does not restore its learner: "
                                  f"{type(error).__name__}: {error}") from error
        return learner


def checkpoint_path(run_dir: Path, env_steps: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{env_steps:012d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoint files of a run directory, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    files = [(int(match.group(1)), path) for path in folder.iterdir() if (match := _NAME.fullmatch(path.name))]
    return [path for _, path in sorted(files)]


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file as given, or the latest checkpoint of a run directory."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a checkpoint file or a training run directory "
                                f"(relative paths start at {Path.cwd()})")
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        raise FileNotFoundError(f"{path} holds no checkpoint: no {CHECKPOINT_DIR}/step_*.pt in it "
                                "(is it a run directory of train.py?)")
    return checkpoints[-1]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (the keys of the module docstring) atomically to ``path``."""
    missing = [key for key in _KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        torch.save(payload, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints of a run directory."""
    for path in list_checkpoints(run_dir)[:-keep]:
        path.unlink()


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint file; ``FileNotFoundError`` or ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch checkpoint: {first_line}") from error
    if not isinstance(payload, dict) or any(key not in payload for key in _KEYS):
        raise CheckpointError(f"{path} is not a p2p_marl training checkpoint (expected the keys {list(_KEYS)})")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {payload['format']!r}; this version reads "
                              f"format {CHECKPOINT_FORMAT}")
    return Checkpoint(path=path, config=payload["config"], learner_state=payload["learner"],
                      loop_state=payload["loop"], env_steps=payload["env_steps"], finished=payload["finished"])
