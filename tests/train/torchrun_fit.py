"""Fit the fine-tuner on generated shapes, in one process or under torchrun.

``tests/train/test_distributed.py`` runs this script with plain ``python`` and with
``torchrun --nproc_per_node=2`` and compares what each rank wrote to
``OUT/rank-R.pt``: the loss of every optimiser step and every parameter after
it. Rank 0 also saves the model to ``OUT/model``. ``--kill-at-step N`` sends
rank 0 SIGKILL just before optimiser step N, the way a preempted job dies.
"""

import argparse
import os
import signal
from pathlib import Path

import torch

from sklearn_clip import CLIPContrastiveFinetuner
from sklearn_clip._train import distributed as dist
from sklearn_clip._train import loop as _training
from sklearn_clip.datasets import make_shapes

TRAIN = {
    "learning_rate": 3e-3,
    "weight_decay": 0.05,
    "max_epochs": 3,
    "batch_size": 8,
    "caption_template": "a {} shape",
    "random_state": 0,
    # These tests follow validation, which is off by default.
    "validation_fraction": 0.1,
    "device": "cpu",
    # float32 training is the one promised to equal a single process (1e-4).
    "dtype": "float32",
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--n-pairs", type=int, default=42)
    parser.add_argument("--lora", type=int)
    parser.add_argument("--train-parts", default="all")
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at-step", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = {"loss": [], "weights": []}
    original = _training._Run.train_step

    def recorded_step(run, group):
        if args.kill_at_step == run.p.step + 1 and dist.get_rank() == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        loss, grad_norm = original(run, group)
        steps["loss"].append(loss / len(group))
        flat = [p.detach().reshape(-1) for p in run.model.parameters()]
        steps["weights"].append(torch.cat(flat).clone())
        return loss, grad_norm

    _training._Run.train_step = recorded_step
    # The script writes per rank after fit, so it joins the process group
    # itself (and so leaves it); fit then uses the group without leaving it.
    with dist.process_group(torch.device("cpu")):
        tuner = _fit(args)
        _write(tuner, steps, Path(args.out))


def _fit(args):
    data = make_shapes(args.n_pairs, image_size=16, random_state=0)
    return CLIPContrastiveFinetuner(
        args.model,
        lora=args.lora,
        train_parts=args.train_parts,
        checkpoint_dir=args.checkpoint_dir,
        resume="auto" if args.resume else False,
        **TRAIN,
    ).fit(data.images, data.color)


def _write(tuner, steps, out):
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float() for k, v in tuner.model_.model.state_dict().items()}
    torch.save(
        {**steps, "state": state, "history": tuner.history_},
        out / f"rank-{dist.get_rank()}.pt",
    )
    if dist.is_main_process():
        tuner.save_pretrained(out / "model")


if __name__ == "__main__":
    main()
