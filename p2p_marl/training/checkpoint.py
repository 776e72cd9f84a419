"""Checkpoint files of training runs: written atomically, checksummed, checked against the environment they
are played on, read back with errors that name the file.

A run directory keeps its checkpoints as ``checkpoints/step_<community-steps>.pt`` (periodic ones and the final
one; the newest ``keep_checkpoints`` stay, and resume starts from the newest intact one), and the learner of its
best evaluation on the validation days as ``checkpoints/best.pt`` (written whenever an evaluation beats every
earlier one, its share in ``loop["best_validation_share"]``; never pruned): the model selection that the reported
results use. A file (format 2) is one header line and a payload::

    p2p_marl checkpoint 2 sha256=<hex digest of the payload>\\n
    <torch.save of a dict of tensors and plain Python values>

The payload loads with ``torch.load(weights_only=True)`` (no arbitrary pickled objects) and holds

- ``config``: the run's resolved training config (keys of ``TrainConfig``: ``env``, ``algo`` with the learner's
  registry name ``algo.name`` and its hyperparameters, ``seed``, ...);
- ``env_spec``: what the policy depends on in the environment it was trained for (``environment_spec``);
- ``learner``: ``learner.state_dict()`` (networks, optimisers, buffers, generators, ``env_steps``);
- ``loop``: the training loop's state (torch's global random generator, the best evaluation so far as
  ``best_validation_share`` and ``best_step``);
- ``env_steps`` and ``finished`` (whether training had reached ``total_env_steps``).

The checksum catches a file altered or truncated after it was written; the header tells a p2p_marl checkpoint
from any other file. Files of format 1 (a bare ``torch.save`` of the payload with ``format: 1``, written before
checksums) are still read, without that check. Writing goes to a temporary file in the same directory that is
then renamed over the target, so a crash while writing never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2p_marl.algos import build_learner, saved_hyperparameters
from p2p_marl.algos.base import Learner
from p2p_marl.config import EnvConfig, ordered_extra_features
from p2p_marl.sim.community import ACTION_DIM, observation_features

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
CHECKPOINT_DIR = "checkpoints"
CORRUPT_SUFFIX = ".corrupt"
BEST_NAME = "best.pt"
RUN_CHECKPOINT_CHOICES = ("best", "last")  # which checkpoint of a run directory a policy is loaded from
_NAME = re.compile(r"step_(\d+)\.pt")
_HEADER = re.compile(rb"p2p_marl checkpoint (\d+) sha256=([0-9a-f]{64})\n")
_MAX_HEADER_BYTES = 128
_LEGACY_FORMAT = 1
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container: a format-1 file
_KEYS = ("config", "env_spec", "learner", "loop", "env_steps", "finished")
_LEGACY_KEYS = ("format", "config", "learner", "loop", "env_steps", "finished")


class CheckpointError(ValueError):
    """A file that is not a readable p2p_marl checkpoint, or one that does not fit the environment it is
    played on; the message names the file."""


def environment_spec(env_config: EnvConfig) -> dict[str, Any]:
    """What a trained policy depends on in its environment: the number of households (agent identities,
    centralised inputs), the settlement period (the time features and every energy per step), the observation
    features in order, the size of an action and the forecasts its observations hold. Checkpoints store it; a
    policy is refused on an environment whose spec differs."""
    return {"n_agents": env_config.n_agents, "dt_h": env_config.dt_h,
            "obs_features": list(observation_features(env_config)), "action_dim": ACTION_DIM,
            "forecasts": forecast_spec(env_config)}


def forecast_spec(env_config: EnvConfig) -> dict[str, Any]:
    """The forecaster and the settings that shape its forecasts (p2p_marl.sim.forecasts) and the observation's
    forecast features (``forecast_bins`` only when set: specs stored before it existed hold no such key)."""
    spec: dict[str, Any] = {"forecaster": env_config.forecaster, "forecast_horizon_h": env_config.forecast_horizon_h}
    if env_config.forecast_bins:
        spec["forecast_bins"] = env_config.forecast_bins
    if env_config.forecaster == "noisy":
        spec |= {key: getattr(env_config, key) for key in ("forecast_nrmse", "forecast_nrmse_next",
                                                            "forecast_autocorrelation", "forecast_seed")}
    if env_config.forecaster == "file":
        spec["forecast_csv"] = env_config.forecast_csv
    return spec


@dataclass
class Checkpoint:
    path: Path
    config: dict[str, Any]
    env_spec: dict[str, Any]
    learner_state: dict[str, Any]
    loop_state: dict[str, Any]
    env_steps: int
    finished: bool

    def trained_observation(self) -> dict[str, Any]:
        """The settings that shape only what the policy observes, not the physics, the market or the forecasts
        (``forecast_bins``, ``extra_features``), as it was trained: a policy brings its own, so runs trained with
        and without them play side by side. Read from the features it observes: specs written before
        ``forecast_spec`` named ``forecast_bins`` hold the bins only there, and specs without features predate the
        bins."""
        features = self.env_spec.get("obs_features", [])
        return {"forecast_bins": sum(str(name).startswith("load_bin_") for name in features),
                "extra_features": ordered_extra_features(features)}

    def observation_settings(self, env_config: EnvConfig) -> dict[str, Any]:
        """Those of the policy's own observation settings that differ from ``env_config``'s: key -> its value."""
        return env_config.differing(self.trained_observation())

    def observed_config(self, env_config: EnvConfig) -> EnvConfig:
        """``env_config`` observed as the policy was trained (``observation_settings``); ``CheckpointError``
        naming the file where this environment cannot give that observation."""
        own = self.observation_settings(env_config)
        try:
            return env_config.replace(**own)
        except ValueError as error:  # bins always divide the window they were trained on: the window differs
            forecasts, bins = self.env_spec.get("forecasts", {}), self.trained_observation()["forecast_bins"]
            raise CheckpointError(
                f"checkpoint {self.path} was trained for another environment: its forecast_bins={bins} "
                f"cut a forecast window of dt_h={self.env_spec.get('dt_h')!r}, forecast_horizon_h="
                f"{forecasts.get('forecast_horizon_h')!r} (here dt_h={env_config.dt_h!r}, forecast_horizon_h="
                f"{env_config.forecast_horizon_h!r}): {error}") from error

    def check_environment(self, env_config: EnvConfig) -> None:
        """``CheckpointError`` naming the file and every difference unless the policy was trained for an
        environment like ``env_config`` (``environment_spec``)."""
        expected = environment_spec(env_config)
        trained = dict(self.env_spec)
        if "forecasts" not in trained:  # written before checkpoints stored it: the training config has it
            try:
                trained["forecasts"] = forecast_spec(EnvConfig(**self.config["env"]))
            except (KeyError, TypeError, ValueError):
                pass
        elif bins := self.trained_observation()["forecast_bins"]:  # written before forecast_spec named them
            trained["forecasts"] = {**trained["forecasts"], "forecast_bins": bins}
        differences = [f"{key}={trained.get(key)!r} (here {value!r})" for key, value in expected.items()
                       if trained.get(key) != value]
        if differences:
            raise CheckpointError(f"checkpoint {self.path} was trained for another environment: "
                                  f"{'; '.join(differences)}")

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


def _run_checkpoints(run_dir: Path) -> list[Path]:
    """``list_checkpoints`` of a run directory; ``FileNotFoundError`` naming it if it has none."""
    if not run_dir.exists():
        raise FileNotFoundError(f"{run_dir} does not exist; give a checkpoint file or a training run directory "
                                f"(relative paths start at {Path.cwd()})")
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        corrupt = sorted((run_dir / CHECKPOINT_DIR).glob(f"step_*.pt{CORRUPT_SUFFIX}"))
        if corrupt:
            raise FileNotFoundError(f"{run_dir} holds no intact checkpoint: every one was set aside as corrupt "
                                    f"({', '.join(path.name for path in corrupt)})")
        hint = (" (it is a run's checkpoints folder: give the run directory above it)"
                if run_dir.name == CHECKPOINT_DIR and any(run_dir.glob("*.pt")) else
                " (is it a run directory of train.py?)")
        raise FileNotFoundError(f"{run_dir} holds no checkpoint: no {CHECKPOINT_DIR}/step_*.pt in it{hint}")
    return checkpoints


def best_checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / BEST_NAME


def resolve_checkpoint(path: Path, run_checkpoint: str = "best") -> Path:
    """A checkpoint file as given; of a training run directory, ``run_checkpoint``: ``best``, the checkpoint of its
    best evaluation on the validation days (a run without one, trained before runs kept it or with no evaluation
    that defines the share, gives its latest checkpoint, with a warning), or ``last``, its latest checkpoint."""
    if run_checkpoint not in RUN_CHECKPOINT_CHOICES:
        raise ValueError(f"run_checkpoint={run_checkpoint!r}; allowed {RUN_CHECKPOINT_CHOICES}")
    path = Path(path)
    if path.is_file():
        return path
    best = best_checkpoint_path(path)
    if run_checkpoint == "best" and best.is_file():
        return best
    latest = _run_checkpoints(path)[-1]
    if run_checkpoint == "best":
        log.warning("%s has no %s (trained before runs kept their best evaluation, or no evaluation on validation "
                    "days defined the share); using its latest checkpoint %s", path, BEST_NAME, latest.name)
    return latest


def set_aside(path: Path, error: CheckpointError) -> None:
    """Rename a checkpoint that did not read back to ``<name>.corrupt`` (kept for inspection, out of the run's
    list) and log why."""
    path.rename(path.with_name(path.name + CORRUPT_SUFFIX))
    log.warning("%s; renamed it to %s%s", error, path.name, CORRUPT_SUFFIX)


def latest_intact_checkpoint(run_dir: Path) -> Checkpoint:
    """The newest checkpoint of ``run_dir`` that reads back intact, for resuming. A newer one that does not is
    renamed to ``<name>.corrupt`` (kept for inspection, out of the run's list) and the fallback is logged;
    ``CheckpointError`` if none is intact."""
    run_dir = Path(run_dir)
    errors = []
    for path in reversed(_run_checkpoints(run_dir)):
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as error:
            errors.append(str(error))
            set_aside(path, error)
            log.warning("Falling back to the checkpoint before %s", path.name)
            continue
        if errors:
            log.warning("Resuming from %s, the newest intact checkpoint", checkpoint.path)
        return checkpoint
    raise CheckpointError(f"{run_dir} holds no intact checkpoint: {' | '.join(errors)}")


# torch is imported where a payload is (de)serialised: evaluate.py and the error handling of the entry points
# import this module for its errors, and a run of benchmarks alone does not need torch's seconds of import.
def _serialize(payload: dict[str, Any]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (the keys of the module docstring) atomically to ``path``, behind its header."""
    missing = [key for key in _KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    data = _serialize(payload)
    header = f"p2p_marl checkpoint {CHECKPOINT_FORMAT} sha256={hashlib.sha256(data).hexdigest()}\n".encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        file.write(header + data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints of a run directory."""
    for path in list_checkpoints(run_dir)[:-keep]:
        path.unlink()


def _torch_load(path: Path, source: Any) -> Any:
    import torch

    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt: {first_line}") from error


def _read_payload(path: Path) -> dict[str, Any]:
    """The payload of a checkpoint file after its header and checksum are checked (format 2), or of a legacy
    format-1 file."""
    data = path.read_bytes()
    if data.startswith(_ZIP_MAGIC):
        payload = _torch_load(path, io.BytesIO(data))
        if not isinstance(payload, dict) or any(key not in payload for key in _LEGACY_KEYS):
            raise CheckpointError(f"{path} is not a p2p_marl training checkpoint (a torch file without the keys "
                                  f"{list(_LEGACY_KEYS)})")
        if payload["format"] != _LEGACY_FORMAT:
            raise CheckpointError(f"checkpoint {path} has format {payload['format']!r}; this version reads "
                                  f"formats {_LEGACY_FORMAT} and {CHECKPOINT_FORMAT}")
        # Written before checkpoints recorded their environment: the one its config describes.
        try:
            env_config = EnvConfig(**payload["config"]["env"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"checkpoint {path} has an environment config this version does not read: "
                                  f"{type(error).__name__}: {error}") from None
        return {**payload, "env_spec": environment_spec(env_config)}
    end = data.find(b"\n", 0, _MAX_HEADER_BYTES)
    header = _HEADER.fullmatch(data[:end + 1]) if end >= 0 else None
    if header is None:
        raise CheckpointError(f"{path} is not a p2p_marl training checkpoint (it does not start with the "
                              "'p2p_marl checkpoint' header)")
    if int(header.group(1)) != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {int(header.group(1))}; this version reads formats "
                              f"{_LEGACY_FORMAT} and {CHECKPOINT_FORMAT}")
    body = data[end + 1:]
    if hashlib.sha256(body).hexdigest() != header.group(2).decode():
        raise CheckpointError(f"checkpoint {path} is corrupt: its content does not match the checksum written "
                              "with it (altered or truncated since)")
    payload = _torch_load(path, io.BytesIO(body))
    if not isinstance(payload, dict) or any(key not in payload for key in _KEYS):
        raise CheckpointError(f"checkpoint {path} lacks some of the keys {list(_KEYS)}")
    return payload


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint file; ``FileNotFoundError`` or ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = _read_payload(path)
    config = dict(payload["config"])
    if isinstance(config.get("algo"), dict):
        config["algo"] = saved_hyperparameters(config["algo"])
    return Checkpoint(path=path, config=config, env_spec=payload["env_spec"],
                      learner_state=payload["learner"], loop_state=payload["loop"],
                      env_steps=payload["env_steps"], finished=payload["finished"])
