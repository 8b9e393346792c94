"""Fine-tuning memory and throughput: streamed pairs against the in-memory path.

Two questions, each answered in fresh processes so that one measurement's
memory never counts in another's:

1. **Memory.** Peak resident memory (``ru_maxrss``) of a one-epoch fit on
   1,000 and on 10,000 generated pairs of 224-pixel images (PNG files on
   disk), with a tiny CLIP of 224-pixel input. Streaming decodes each image
   once into a ``uint8`` file and reads it back batch by batch, so the peak
   should not grow with the number of pairs.
2. **Throughput.** Pairs per second of the training loop (decoding excluded)
   on the demo's model (``sklearn_clip.demo.MODEL_OPTIONS``, random weights:
   the same compute), for this code and for the loop it replaced, which held
   every decoded image in one array. The replaced loop is the previous
   ``sklearn_clip/_train/loop.py``, read from git (``--baseline-commit``) and
   run in the same process on the same pairs; rounds alternate between the
   two so that load on a shared machine hits both alike.

Usage::

    python benchmarks/finetune_memory.py            # both parts
    python benchmarks/finetune_memory.py --part memory

Figures on a shared machine are noisy; the CPU model is printed with them.
"""

import argparse
import importlib.util
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "ede6f8d"  # the last commit with the in-memory loop


def _cpu():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _write_pngs(directory, n, image_size):
    """``n`` generated shape images as PNG files; their paths and colours."""
    from PIL import Image

    from sklearn_clip.datasets import make_shapes

    directory.mkdir(parents=True, exist_ok=True)
    paths, colors = [], []
    for chunk in range(0, n, 250):
        data = make_shapes(
            min(250, n - chunk), image_size=image_size, random_state=chunk
        )
        for i, (image, color) in enumerate(zip(data.images, data.color)):
            path = directory / f"{chunk + i:06d}.png"
            if not path.exists():
                Image.fromarray(image).save(path)
            paths.append(str(path))
            colors.append(color)
    return paths, colors


# -- memory ----------------------------------------------------------------------
def _memory_child(n_pairs, files_dir, model_dir):
    """In a fresh process: fit one epoch on ``n_pairs`` files; print the peak."""
    from sklearn_clip import CLIPContrastiveFinetuner

    index = json.loads((Path(files_dir) / "index.json").read_text())
    paths, colors = index["paths"][:n_pairs], index["colors"][:n_pairs]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    CLIPContrastiveFinetuner(
        model_dir,
        learning_rate=1e-4,
        max_epochs=1,
        batch_size=64,
        caption_template="a {} shape",
        validation_fraction=None,
        random_state=0,
        device="cpu",
    ).fit(paths, colors)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "n": n_pairs,
                "peak_mib": peak / 1024,
                "before_mib": before / 1024,
                "seconds": seconds,
            }
        )
    )


def memory(work):
    from sklearn_clip.toy import make_tiny_clip

    model = make_tiny_clip(
        work / "clip-224",
        image_size=224,
        patch_size=32,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
    )
    files = work / "pairs-224"
    # Written once, outside the measured processes.
    paths, colors = _write_pngs(files, 10_000, 224)
    (files / "index.json").write_text(json.dumps({"paths": paths, "colors": colors}))
    rows = []
    for n in (1_000, 10_000):
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child-memory",
                str(n),
                str(files),
                str(model),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("\nPeak RSS of a one-epoch fit, 224-pixel pairs (tiny CLIP, 224-px input):")
    for row in rows:
        print(
            f"  {row['n']:>6} pairs: {row['peak_mib']:7.0f} MiB peak, "
            f"{row['seconds']:6.1f} s"
        )
    print(
        "  ratio 10,000 / 1,000: "
        f"{rows[1]['peak_mib'] / rows[0]['peak_mib']:.2f} (target <= 1.3)"
    )
    return rows


# -- throughput ------------------------------------------------------------------
def _baseline_module(commit):
    """The training loop of ``commit``, imported from git as its own module."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:sklearn_clip/_train/loop.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "_training_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("_training_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def throughput(work, n_pairs, rounds, commit):
    from sklearn_clip import load_model
    from sklearn_clip._train import loop as _training
    from sklearn_clip.demo import MODEL_OPTIONS, TRAINING_OPTIONS
    from sklearn_clip.toy import make_tiny_clip

    baseline = _baseline_module(commit)
    handle = load_model(
        make_tiny_clip(work / "demo-clip", **MODEL_OPTIONS), device="cpu"
    )
    paths, colors = _write_pngs(work / "pairs-32", n_pairs, MODEL_OPTIONS["image_size"])
    captions = [f"a {c} shape" for c in colors]
    streamed, _ = _training.prepare_pairs(handle, paths, None, captions)
    in_memory = baseline.prepare_pairs(handle, paths, None, captions)
    options = {
        "batch_size": TRAINING_OPTIONS["batch_size"],
        "learning_rate": 2e-3,
        "max_epochs": 1,
    }
    contenders = {
        "streamed (this code)": (
            _training,
            streamed,
            _training.TrainingConfig(**options),
        ),
        f"in memory ({commit})": (
            baseline,
            in_memory,
            baseline.TrainingConfig(**options),
        ),
    }
    rates = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (module, data, config) in contenders.items():
            started = time.perf_counter()
            module.train(handle, data, None, config)
            rates[name].append(n_pairs / (time.perf_counter() - started))
    print(
        f"\nTraining throughput, demo model, {n_pairs} pairs, "
        f"median of {rounds} rounds:"
    )
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, rate in medians.items():
        spread = ", ".join(f"{r:.0f}" for r in rates[name])
        print(f"  {name:<24} {rate:7.0f} pairs/s  (rounds: {spread})")
    new, old = medians.values()
    print(f"  streamed / in memory: {new / old:.3f} (target >= 0.90)")
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=["memory", "throughput", "both"], default="both"
    )
    parser.add_argument("--pairs", type=int, default=3000, help="pairs for throughput")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    parser.add_argument("--work", default=None, help="folder for files (default: temp)")
    parser.add_argument("--child-memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        n, files, model = args.child_memory
        return _memory_child(int(n), files, model)
    work = Path(args.work or tempfile.mkdtemp(prefix="finetune-bench-"))
    print(f"CPU: {_cpu()} (a shared machine: figures are noisy)")
    if args.part in ("memory", "both"):
        memory(work)
    if args.part in ("throughput", "both"):
        throughput(work, args.pairs, args.rounds, args.baseline_commit)


if __name__ == "__main__":
    main()
