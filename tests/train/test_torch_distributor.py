"""Spark's ``TorchDistributor`` (local mode, two CPU processes) trains as torchrun.

``TorchDistributor`` starts its processes through ``torch.distributed.run``
with the same environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...), so
the fine-tuner joins the process group by itself: the same script
(``tests/train/torchrun_fit.py``) run by each gives the same losses and
weights, within 1e-4 at float32.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pyspark")

WORKER = Path(__file__).with_name("torchrun_fit.py")


def _torchrun(fast_path, out):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(WORKER), str(fast_path), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow  # two runs of two training processes each: minutes here
def test_torch_distributor_trains_as_torchrun(spark, fast_path, tmp_path, monkeypatch):
    from pyspark.ml.torch.distributor import TorchDistributor

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the processes inherit it
    distributor = TorchDistributor(num_processes=2, local_mode=True, use_gpu=False)
    distributor.run(str(WORKER), str(fast_path), str(tmp_path / "spark"))
    _torchrun(fast_path, tmp_path / "torchrun")

    for rank in (0, 1):
        ours = torch.load(tmp_path / "spark" / f"rank-{rank}.pt", weights_only=True)
        theirs = torch.load(
            tmp_path / "torchrun" / f"rank-{rank}.pt", weights_only=True
        )
        assert len(ours["loss"]) == len(theirs["loss"]) == 15  # 5 steps x 3 epochs
        np.testing.assert_allclose(ours["loss"], theirs["loss"], atol=1e-4, rtol=0)
        torch.testing.assert_close(
            ours["weights"][-1], theirs["weights"][-1], atol=1e-4, rtol=0
        )
        assert ours["state"].keys() == theirs["state"].keys()
        for name in ours["state"]:
            torch.testing.assert_close(
                ours["state"][name], theirs["state"][name], atol=1e-4, rtol=0
            )
    assert (tmp_path / "spark" / "model").is_dir()  # rank 0 saved the model
