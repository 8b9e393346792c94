"""Training checkpoints: written atomically, resumed only by the same run.

A checkpoint holds the model, optimiser, schedule, progress and random number
generator state of a :func:`~sklearn_clip._training.train` run, with a
signature of its settings and data, so that resuming with other settings or
data is refused instead of silently mixing two runs. Files are read with
``weights_only=True``: a checkpoint cannot run code.
"""

import os
from dataclasses import asdict
from pathlib import Path

import torch

CHECKPOINT_FORMAT = 1
_KEEP_CHECKPOINTS = 2


def save_checkpoint(directory, state):
    """Write ``state`` atomically as ``step-XXXXXXXX.pt``; keep the newest two.

    The file is written under a temporary name in the same directory, flushed
    to disk, then renamed over the final name: a crash mid-write leaves the
    previous checkpoint intact and no partial file under a checkpoint's name.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{state['progress']['step']:08d}.pt"
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    for old in sorted(directory.glob("step-*.pt"))[:-_KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return str(path)


def latest_checkpoint(directory):
    """The newest checkpoint in ``directory``, or None."""
    found = sorted(Path(directory).glob("step-*.pt")) if directory else []
    return str(found[-1]) if found else None


def load_checkpoint(path):
    """Read a checkpoint with ``weights_only=True``: it cannot run code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def run_signature(config, train_data, val_data, model):
    return {
        **asdict(config),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "train_data": train_data.fingerprint(),
        "val_data": None if val_data is None else val_data.fingerprint(),
    }


def check_signature(saved, current, path):
    differ = sorted(k for k in current if saved.get(k) != current[k])
    if differ:
        raise ValueError(
            f"cannot resume from {path}: it was written by a run with other "
            f"settings or data ({', '.join(differ)} differ). Fit with the same "
            "parameters and data, or without resume to start over."
        )


def rng_state(device):
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state, device):
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
