"""Training checkpoints: written atomically, kept per run, resumed only by that run.

A checkpoint holds the model, optimiser, schedule, progress and random number
generator state of a :func:`~sklearn_clip._train.loop.train` run, with a
signature of its settings, its data and its base model, so that resuming with
other settings, data or starting weights is refused instead of silently mixing
two runs. Each run writes into its own subdirectory of ``checkpoint_dir``,
named by a hash of that signature, so runs sharing a directory never prune or
resume each other's files. Files are read with ``weights_only=True``: a
checkpoint cannot run code, and a file that does not load (truncated, empty,
overwritten) is passed over for the newest one that does, with a warning.
"""

import errno
import hashlib
import json
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from sklearn_clip._files import replaced_atomically
from sklearn_clip._train import distributed as dist
from sklearn_clip.exceptions import CheckpointWarning

CHECKPOINT_FORMAT = 1
_KEEP_CHECKPOINTS = 2
# "No space left on device" and "Disk quota exceeded": no room for the file.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def save_checkpoint(directory, state):
    """Write ``state`` atomically as ``step-XXXXXXXX.pt``; keep the newest two.

    The file is written under a temporary name in the same directory, flushed
    to disk, then renamed over the final name: a crash mid-write leaves the
    previous checkpoint intact and no partial file under a checkpoint's name.
    A write that fails (a full disk) removes its temporary file and prunes
    nothing. Only ``directory``'s own checkpoints are pruned: one run's.
    """
    directory = Path(directory)
    path = directory / f"step-{state['progress']['step']:08d}.pt"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as temporary, open(temporary, "wb") as handle:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
    except OSError as error:
        if error.errno in _DISK_FULL:
            raise _disk_full_error(directory, state) from error
        raise
    for old in _checkpoints_in(directory)[:-_KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return str(path)


def _disk_full_error(directory, state):
    """An OSError (ENOSPC) naming the folder, the space needed and the fix."""
    needed = _tensor_bytes(state)
    free = shutil.disk_usage(directory).free if directory.is_dir() else None
    space = f"a checkpoint needs about {_size(needed)}"
    if free is not None:
        space += f"; {_size(free)} is free there"
    previous = latest_checkpoint(directory)
    kept = (
        f"The last good checkpoint, {previous}, is kept"
        if previous
        else "No earlier checkpoint was written"
    )
    return OSError(
        errno.ENOSPC,
        f"the disk is full: cannot write a checkpoint in {directory} ({space}). "
        f"{kept}. Free some space or give a checkpoint_dir on a disk with room, "
        "then fit again with resume=True to continue from the last checkpoint.",
    )


def _tensor_bytes(value):
    """The bytes of every tensor in a nested checkpoint state (its file's bulk)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.numel()
    if isinstance(value, dict):
        return sum(_tensor_bytes(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(item) for item in value)
    return 0


def _size(n_bytes):
    """``n_bytes`` for a reader: "512 B", "3.2 kB", "41.0 MB", "7.5 GB"."""
    if n_bytes < 1000:
        return f"{n_bytes} B"
    for unit in ("kB", "MB", "GB"):
        n_bytes /= 1000
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.1f} {unit}"


def remove_temporary_files(directory):
    """Delete the temporary files a killed writer left in a run's directory."""
    for stale in Path(directory).glob("*.tmp"):
        stale.unlink(missing_ok=True)


def latest_checkpoint(directory):
    """The newest checkpoint in ``directory``, or None."""
    found = _checkpoints_in(directory)
    return str(found[-1]) if found else None


def _checkpoints_in(directory):
    return sorted(Path(directory).glob("step-*.pt")) if directory else []


def load_checkpoint(path):
    """Read a checkpoint with ``weights_only=True``: it cannot run code."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    found = state.get("format", CHECKPOINT_FORMAT) if isinstance(state, dict) else None
    if found != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is a checkpoint of format {found!r}, but this version of "
            f"sklearn-clip reads format {CHECKPOINT_FORMAT}; resume it with the "
            "version that wrote it, or start a new run."
        )
    return state


def load_newest_intact(directory):
    """``(path, state)`` of the newest checkpoint in ``directory`` that loads.

    Files that do not load are skipped with a :class:`CheckpointWarning`
    naming each; None when there is no checkpoint at all. When none loads the
    error names every file. The loader's own message is not repeated: for a
    file that is not a weights-only checkpoint it suggests unpickling it,
    which would let the file run code.
    """
    found = _checkpoints_in(directory)
    bad = []
    for path in reversed(found):
        try:
            return str(path), load_checkpoint(path)
        except Exception as exc:  # any unreadable file: try the one before
            bad.append(f"{path} ({_describe_failure(path, exc)})")
            warnings.warn(
                f"the checkpoint {bad[-1]} cannot be read; trying an older one.",
                CheckpointWarning,
                stacklevel=3,
            )
    if bad:
        raise ValueError(
            "no checkpoint in "
            f"{directory} can be read: {'; '.join(bad)}. Delete them to start a "
            "new run. Loading them without weights_only is not safe."
        )
    return None, None


def find_resume_checkpoint(resume, checkpoint_dir, run_dir):
    """``(path, state)`` to resume from; rank 0 chooses, every rank loads it.

    ``resume`` is True, "auto" or a path. With True or "auto" it is this run's
    newest readable checkpoint in ``run_dir``; failing that, another run's
    newest, loaded only so that the signature check says what differs.
    ``(None, None)`` when ``resume="auto"`` finds nothing.
    """
    if resume is not True and resume != "auto":
        return str(resume), load_checkpoint(resume)
    path = None
    if dist.is_main_process():
        path, _ = load_newest_intact(run_dir)
        if path is None:
            path = next(iter(other_runs(checkpoint_dir, run_dir)), None)
    path = dist.broadcast_object(path)
    if path is None and resume == "auto":
        return None, None
    if path is None:
        raise FileNotFoundError(
            f"resume=True but there is no checkpoint in {checkpoint_dir!r}; "
            "fit with resume=False to start a new run."
        )
    return path, load_checkpoint(path)


def _describe_failure(path, exc):
    size = Path(path).stat().st_size if Path(path).exists() else 0
    if size == 0:
        return "empty file"
    kind = type(exc).__name__
    return f"{kind}: not a complete weights-only checkpoint, {size} bytes"


def run_directory(checkpoint_dir, signature):
    """The subdirectory of ``checkpoint_dir`` that holds one run's checkpoints."""
    text = json.dumps(signature, sort_keys=True, default=str)
    return (
        Path(checkpoint_dir) / f"run-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    )


def other_runs(checkpoint_dir, own):
    """Newest checkpoint of every other run in ``checkpoint_dir``."""
    runs = sorted(Path(checkpoint_dir).glob("run-*")) if checkpoint_dir else []
    return [
        latest_checkpoint(run) for run in runs if run != own and latest_checkpoint(run)
    ]


def weights_digest(model):
    """A hash of a model's parameter names, shapes and values.

    Two base models of the same architecture but other weights (another
    checkpoint, another revision) differ here, so a run started from one is
    never resumed from the other.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name, value in model.state_dict().items():
        value = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
        digest.update(
            value.view(torch.uint8).numpy().tobytes() if value.numel() else b""
        )
    return digest.hexdigest()


def run_signature(config, train_data, val_data, model, base_model=None):
    """What must match for a checkpoint to continue this run."""
    return {
        **asdict(config),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "base_model": None if base_model is None else weights_digest(base_model),
        "train_data": train_data.fingerprint(),
        "val_data": None if val_data is None else val_data.fingerprint(),
    }


def check_signature(saved, current, path):
    differ = sorted(k for k in current if saved.get(k) != current[k])
    if differ:
        raise ValueError(
            f"cannot resume from {path}: it was written by a run with other "
            f"settings, data or base model ({', '.join(differ)} differ). Fit with "
            "the same parameters, data and model, or without resume to start over."
        )


def rng_state(device):
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state, device):
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
