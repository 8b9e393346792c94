"""The image tower on ready tensors: transformers' forward pass against ours.

Same ViT-B/32-shaped checkpoint, same pixel tensors, interleaved round by
round; each of sklearn-clip's two changes
(``sklearn_clip._backends.torch.forward``) alone and both together, against
``get_image_features`` on the model as ``from_pretrained`` gives it. The
embeddings agree to float rounding
(``tests/backends/test_forward.py``); this measures only the time.

Usage: ``python benchmarks/forward_cpu.py [--batch-size 32] [--rounds 7]``.
"""

import argparse
import warnings

import torch
from _common import checkpoint, interleaved, machine, paired_ratio, print_table
from transformers import CLIPModel

from sklearn_clip._backends.torch.forward import (
    _class_token_features,
    image_features,
    use_fast_activations,
)

STOCK = "transformers get_image_features"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=2, help="per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--architecture", default="ViT-B/32")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    path = checkpoint(args.architecture)
    stock = CLIPModel.from_pretrained(path).eval()
    fast = use_fast_activations(CLIPModel.from_pretrained(path).eval())
    pixels = torch.randn(args.batch_size, 3, 224, 224)
    print(f"# {args.architecture} shape, batch {args.batch_size}; {machine()}")

    def timed(forward):
        def run():
            with torch.inference_mode():
                for _ in range(args.batches):
                    forward(pixels)

        return run

    contenders = {
        STOCK: timed(lambda p: stock.get_image_features(pixel_values=p)),
        "fused quick_gelu only": timed(
            lambda p: fast.get_image_features(pixel_values=p)
        ),
        "class-token last layer only": timed(lambda p: _class_token_features(stock, p)),
        "sklearn-clip (both)": timed(lambda p: image_features(fast, p)),
    }
    seconds, times = interleaved(contenders, rounds=args.rounds)
    images = args.batch_size * args.batches
    rows = [
        {
            "forward pass": name,
            "images/s": f"{images / s:.2f}",
            "speed-up": f"{paired_ratio(times, name, STOCK):.3f}x",
        }
        for name, s in seconds.items()
    ]
    print(f"\n## Median of {args.rounds} interleaved rounds\n")
    print_table(rows, ["forward pass", "images/s", "speed-up"])


if __name__ == "__main__":
    main()
