"""JPEG draft decoding: how much time it saves and how little it changes.

For photo-like JPEGs of several sizes (and a worst case with a fine
checkerboard), compares the default preprocessing (large JPEGs decoded at a
reduced scale by libjpeg, never below twice the model's input size) with a
full decode (``draft_factor=None``, what the reference processors do): the
size actually decoded, the difference of the pixel tensors in normalised
units (one grey level is about 0.015), the cosine of the ViT-B/32 embeddings
(random weights) and the preprocessing time per image.

Usage: ``python benchmarks/draft_jpeg.py [--images 4]``.
"""

import argparse
import io
import time
import warnings
from dataclasses import replace

import torch
from _common import checkpoint, machine, print_table
from PIL import Image

from sklearn_clip import load_model
from sklearn_clip._backends.torch.tensors import normalize_batch
from sklearn_clip._encoding.images import prepare_image
from sklearn_clip._encoding.preprocess import ImageConfig
from sklearn_clip.datasets import make_photo

SIZES = [(640, 480), (1024, 768), (1600, 1200), (3000, 2000), (4032, 3024)]


def photo(width, height, edges, seed):
    """JPEG bytes of a photo-like image (see ``make_photo``)."""
    buffer = io.BytesIO()
    image = make_photo(width, height, edges=edges, random_state=seed)
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def decoded_size(data, config):
    """The size libjpeg decodes under ``config`` (draft or not)."""
    from sklearn_clip._encoding.images import _draft

    with Image.open(io.BytesIO(data)) as image:
        _draft(image, config)
        image.load()
        return image.size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="per size and kind")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    handle = load_model(checkpoint("ViT-B/32"), device="cpu")
    drafted_config = handle.image_config
    full_config = replace(drafted_config, draft_factor=None)
    print(f"# ViT-B/32 shape, random weights; {machine()}")
    rows = []
    for size in SIZES:
        for edges in (False, True):
            data = [photo(*size, edges, seed) for seed in range(args.images)]
            timings, pixels = {}, {}
            for name, config in (("full", full_config), ("draft", drafted_config)):
                prepare_image(data[0], config)
                start = time.perf_counter()
                arrays = [prepare_image(item, config) for item in data]
                timings[name] = (time.perf_counter() - start) / len(data)
                pixels[name] = normalize_batch(arrays, config)
            with torch.inference_mode():
                embeddings = {
                    name: torch.nn.functional.normalize(
                        _features(handle.model.get_image_features(pixel_values=p)),
                        dim=-1,
                    )
                    for name, p in pixels.items()
                }
            difference = (pixels["draft"] - pixels["full"]).abs()
            cosine = (embeddings["draft"] * embeddings["full"]).sum(-1).min()
            rows.append(
                {
                    "JPEG": f"{size[0]}x{size[1]}" + (" checkerboard" if edges else ""),
                    "decoded at": "x".join(
                        map(str, decoded_size(data[0], drafted_config))
                    ),
                    "max |diff|": f"{difference.max():.3f}",
                    "mean |diff|": f"{difference.mean():.4f}",
                    "min cosine": f"{cosine:.6f}",
                    "full (ms)": f"{1000 * timings['full']:.1f}",
                    "draft (ms)": f"{1000 * timings['draft']:.1f}",
                }
            )
    print(
        f"\n## Default draft_factor={ImageConfig().draft_factor} "
        "against a full decode\n"
    )
    print_table(rows, list(rows[0]))


def _features(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


if __name__ == "__main__":
    main()
