"""Several processes train as one: torchrun (gloo, CPU) against a single process.

The torchrun runs start real processes (``tests/train/torchrun_fit.py``), so they are
marked slow; the gradient reduction they rely on is checked fast, with two
spawned processes.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from sklearn_clip import CLIPContrastiveFinetuner, cli, load_model
from sklearn_clip._train import distributed as dist
from sklearn_clip._train import finetuner as _finetuner
from sklearn_clip._train.losses import contrastive_loss
from sklearn_clip.datasets import make_shapes

# The repository this file is in: torchrun's processes import the package from
# it, whatever is installed (a clone in CI, a worktree here).
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("torchrun_fit.py")


def _env():
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _launch(args, nproc=None, check=True):
    """Run ``args`` in one process, or under torchrun with ``nproc`` processes."""
    launcher = [sys.executable]
    if nproc is not None:
        launcher += [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
        ]
    done = subprocess.run(
        [*launcher, *map(str, args)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def _read(out, rank=0):
    return torch.load(Path(out) / f"rank-{rank}.pt", weights_only=True)


def _assert_states_close(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


# -- the reduction, fast ---------------------------------------------------------
def _reduce_worker(rank, world_size, init_file, result_file):
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    torch.manual_seed(0)
    weight = torch.randn(4, 4, requires_grad=True)
    scale = torch.tensor(2.0, requires_grad=True)
    inputs, ids = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 3])
    rows = dist.local_share(np.arange(5))  # 3 rows on rank 0, 2 on rank 1
    sizes = dist.share_sizes(5)
    images = F.normalize(inputs[rows] @ weight, dim=1)
    texts = F.normalize(inputs[rows], dim=1)
    gathered = dist.gather_features(images, texts, ids[rows], sizes)
    contrastive_loss(*gathered[:2], scale.exp(), gathered[2]).backward()
    dist.all_reduce_gradients([weight, scale], averaged=[scale])
    if rank == 0:
        torch.save({"weight": weight.grad, "scale": scale.grad}, result_file)
    torch.distributed.destroy_process_group()


def test_reduced_gradients_of_uneven_shares_are_the_single_process_ones(tmp_path):
    torch.multiprocessing.spawn(
        _reduce_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path / "result.pt")),
        nprocs=2,
    )
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.manual_seed(0)
    weight = torch.randn(4, 4, requires_grad=True)
    scale = torch.tensor(2.0, requires_grad=True)
    inputs, ids = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 3])
    images = F.normalize(inputs @ weight, dim=1)
    contrastive_loss(images, F.normalize(inputs, dim=1), scale.exp(), ids).backward()
    torch.testing.assert_close(result["weight"], weight.grad)
    torch.testing.assert_close(result["scale"], scale.grad)


def test_shares_are_even_contiguous_and_in_rank_order():
    assert dist.share_sizes(5) == [5]  # one process holds the whole batch
    np.testing.assert_array_equal(dist.local_share(np.arange(5)), np.arange(5))
    assert (
        dist.broadcast_object("x") == "x"
        and dist.init_from_environment(torch.device("cpu")) is False
    )


# -- who owns the process group ----------------------------------------------------
# Whoever initialises the group destroys it: fit leaves the group it joined
# itself, and neither fit nor the finetune command destroys a group joined
# before them.
QUICK_FIT = {
    "max_epochs": 1,
    "batch_size": 4,
    "validation_fraction": None,
    "caption_template": "a {} shape",
    "random_state": 0,
    "device": "cpu",
    "dtype": "float32",
}


def _joining_fit_worker(rank, world_size, port, fast_path, out):
    # What torchrun puts in each process's environment.
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    seen = {}
    train = _finetuner.train

    def recording_train(*args, **kwargs):
        seen["world_size"] = dist.get_world_size()
        return train(*args, **kwargs)

    _finetuner.train = recording_train
    data = make_shapes(8, image_size=16, random_state=0)
    CLIPContrastiveFinetuner(fast_path, **QUICK_FIT).fit(data.images, data.color)
    seen["joined_after_fit"] = torch.distributed.is_initialized()
    torch.save(seen, Path(out) / f"rank-{rank}.pt")


@pytest.mark.slow  # two processes that import torch and train: a minute here
def test_fit_leaves_the_process_group_it_joined(fast_path, tmp_path):
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(
        _joining_fit_worker, args=(2, port, str(fast_path), str(tmp_path)), nprocs=2
    )
    for rank in (0, 1):
        seen = torch.load(tmp_path / f"rank-{rank}.pt", weights_only=True)
        assert seen == {"world_size": 2, "joined_after_fit": False}


@pytest.fixture
def joined_group(tmp_path):
    """A process group this test joins (one process): its owner is the test."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1
    )
    yield
    torch.distributed.destroy_process_group()


@pytest.mark.usefixtures("joined_group")
def test_fit_and_the_finetune_command_keep_a_process_group_joined_before(
    fast_path, tmp_path, monkeypatch
):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun
    data = make_shapes(8, image_size=16, random_state=0)
    CLIPContrastiveFinetuner(fast_path, **QUICK_FIT).fit(data.images, data.color)
    assert torch.distributed.is_initialized()
    table = _pairs_table(tmp_path, 8)
    command = ["finetune", "--model", str(fast_path), "--table", str(table)]
    command += ["--label-column", "label", "--epochs", "1", "--batch-size", "4"]
    command += ["--validation-fraction", "0", "--device", "cpu"]
    assert cli.main([*command, "--output", str(tmp_path / "out")]) == 0
    assert torch.distributed.is_initialized()


# -- torchrun against one process, slow -------------------------------------------


@pytest.fixture(scope="module")
def full_runs(fast_path, tmp_path_factory):
    """One process and two under torchrun, full fine-tuning, same seed."""
    root = tmp_path_factory.mktemp("full")
    _launch([WORKER, fast_path, root / "single"])
    _launch([WORKER, fast_path, root / "torchrun"], nproc=2)
    return root


def _assert_same_training(root, atol=1e-4):
    single = _read(root / "single")
    ranks = [_read(root / "torchrun", r) for r in (0, 1)]
    assert len(single["loss"]) == len(ranks[0]["loss"]) == 15  # 5 steps x 3 epochs
    np.testing.assert_allclose(ranks[0]["loss"], single["loss"], atol=atol, rtol=0)
    for ours, theirs in zip(ranks[0]["weights"], ranks[1]["weights"]):
        assert torch.equal(ours, theirs)  # the ranks never drift apart
    torch.testing.assert_close(
        ranks[0]["weights"][-1], single["weights"][-1], atol=atol, rtol=0
    )
    _assert_states_close(ranks[0]["state"], single["state"], atol)
    val = [h["val_loss"] for h in single["history"]]
    np.testing.assert_allclose(
        [h["val_loss"] for h in ranks[1]["history"]], val, atol=atol
    )
    loaded = load_model(root / "torchrun" / "model", device="cpu", dtype="float32")
    loaded = loaded.model.state_dict()
    _assert_states_close(
        {k: v.float() for k, v in loaded.items()}, single["state"], atol
    )


@pytest.mark.slow
def test_torchrun_trains_as_one_process(full_runs):
    _assert_same_training(full_runs)


@pytest.mark.slow
def test_torchrun_with_lora_on_the_text_tower_trains_as_one_process(
    fast_path, tmp_path
):
    extra = ["--lora", 4, "--train-parts", "lock_image"]
    _launch([WORKER, fast_path, tmp_path / "single", *extra])
    _launch([WORKER, fast_path, tmp_path / "torchrun", *extra], nproc=2)
    _assert_same_training(tmp_path)


@pytest.mark.slow
def test_a_torchrun_run_killed_in_epoch_2_resumes_to_the_same_weights(
    fast_path, full_runs, tmp_path
):
    checkpoints = tmp_path / "ck"
    args = [WORKER, fast_path, tmp_path / "killed", "--checkpoint-dir", checkpoints]
    killed = _launch([*args, "--kill-at-step", 8], nproc=2, check=False)
    assert killed.returncode != 0
    assert not (tmp_path / "killed" / "rank-0.pt").exists()
    (run,) = checkpoints.iterdir()
    assert [p.name for p in run.iterdir()] == ["step-00000005.pt"]  # epoch 1
    _launch([*args, "--resume"], nproc=2)
    resumed = _read(tmp_path / "killed")
    assert len(resumed["loss"]) == 10  # epochs 2 and 3 only
    _assert_states_close(resumed["state"], _read(full_runs / "torchrun")["state"], 1e-5)


@pytest.mark.slow
def test_the_finetune_command_runs_unchanged_under_torchrun(fast_path, tmp_path):
    table = _pairs_table(tmp_path, 42)
    outputs = {}
    for name, nproc in (("single", None), ("torchrun", 2)):
        command = [
            "-m",
            "sklearn_clip.cli",
            "finetune",
            "--model",
            fast_path,
            "--table",
            table,
            "--label-column",
            "label",
            "--caption-template",
            "a photo of a {}.",
            "--lora",
            8,
            "--epochs",
            2,
            "--batch-size",
            8,
            "--learning-rate",
            3e-3,
            "--device",
            "cpu",
            "--checkpoint-dir",
            tmp_path / f"ck-{name}",
            "--resume",
            "--output",
            tmp_path / name,
        ]
        done = _launch(command, nproc=nproc)
        assert done.stdout.count("saved the fine-tuned model") == 1  # rank 0 only
        outputs[name] = load_model(tmp_path / name, device="cpu").model.state_dict()
    _assert_states_close(outputs["torchrun"], outputs["single"], 1e-4)


def _pairs_table(directory, n_pairs):
    """A .csv of ``n_pairs`` shape images written as PNG files, with labels."""
    from PIL import Image

    data = make_shapes(n_pairs, image_size=16, random_state=0)
    paths = [directory / f"{i}.png" for i in range(len(data.images))]
    for image, path in zip(data.images, paths):
        Image.fromarray(np.asarray(image)).save(path)
    table = directory / "pairs.csv"
    pd.DataFrame({"image": map(str, paths), "label": data.color}).to_csv(table)
    return table
