"""Fault tests: a process killed while writing a checkpoint."""

import signal
import subprocess
import sys
import textwrap

import torch

from sklearn_clip._train import loop as _training

_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys, torch
    from sklearn_clip._train import loop as _training

    directory = sys.argv[1]
    state = {"progress": {"step": 1}, "weights": torch.arange(1000.0)}
    _training.save_checkpoint(directory, state)

    real_save = torch.save

    def dies_half_way(obj, handle, *args, **kwargs):
        handle.write(b"PK\\x03\\x04 half of a checkpoint")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, like a crash or OOM kill

    torch.save = dies_half_way
    _training.save_checkpoint(directory, {"progress": {"step": 2},
                                          "weights": torch.zeros(1000)})
    """
)


def test_a_process_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert "step-00000001.pt" in leftovers
    assert "step-00000002.pt" not in leftovers  # the torn file never got the name
    latest = _training.latest_checkpoint(tmp_path)
    assert latest.endswith("step-00000001.pt")
    state = _training.load_checkpoint(latest)
    assert state["progress"]["step"] == 1
    torch.testing.assert_close(state["weights"], torch.arange(1000.0))
