"""Video embedding throughput on CPU: sampled frames by seeking vs every frame.

Both contenders run in one process, on the same checkpoint (a ViT-B/32-shaped
CLIP with random weights, saved locally: the same compute as the released one)
and the same generated clips (H.264, 640 x 360, 25 frames/s, a keyframe every
10 s as encoders write by default; moving shapes), one run each after a
warm-up on one clip:

- ``CLIPEmbeddingTransformer(video={"frames": n})``: each clip's ``n``
  sampled frames, found by seeking (PyAV), decoded in threads, embedded in
  batches and mean-pooled;
- a plain loop: PyAV decodes every frame of each clip, keeps the frames on
  screen at the same sampled times, and ``CLIPProcessor`` +
  ``get_image_features`` embeds them (one batch per clip), mean-pooled.

Both embed the same frames; the table gives the frames each decoded (ours
counted by wrapping its PyAV containers), the sampled frames embedded per
second (decoding included) and ours over the plain loop's. Figures on a
shared machine are noisy: the load average is printed with them.

Usage: ``python benchmarks/video_cpu.py [--clips 4] [--seconds 30]
[--frames 8]``.
"""

import argparse
import time

import av
import numpy as np
import torch
from _common import CACHE, checkpoint, machine, print_table

from sklearn_clip import CLIPEmbeddingTransformer
from sklearn_clip._encoding import video as _video

OURS = "sklearn-clip CLIPEmbeddingTransformer (seeks)"
PLAIN = "PyAV decode every frame + CLIPProcessor loop"


def write_clip(path, seconds, seed, fps=25, size=(640, 360)):
    """Moving coloured shapes, H.264 at the encoder's default keyframe interval."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 255, (3, 3))
    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 10 * fps
        stream.options = {"preset": "veryfast"}
        for i in range(seconds * fps):
            image = np.full((height, width, 3), 30, np.uint8)
            for k, colour in enumerate(colours):
                x = int((i * (3 + k) + 80 * k) % (width - 60))
                y = int((height - 60) * (0.5 + 0.4 * np.sin(i / (15 + 5 * k))))
                image[y : y + 60, x : x + 60] = colour
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return str(path)


def clips(n, seconds):
    folder = CACHE / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(n):
        path = folder / f"shapes-{seconds}s-{seed}.mp4"
        if not path.exists():
            write_clip(path, seconds, seed)
        paths.append(str(path))
    return paths


class CountingContainer:
    """A PyAV container whose decoded frames are counted (for the table)."""

    decoded = 0

    def __init__(self, container):
        self._container = container

    def __getattr__(self, name):
        return getattr(self._container, name)

    def decode(self, *args, **kwargs):
        for frame in self._container.decode(*args, **kwargs):
            CountingContainer.decoded += 1  # one += per frame; a rough count
            yield frame


def count_our_decoding():
    """Have every clip our readers open count the frames it decodes."""
    opened = _video.ClipReader.__init__

    def counting(self, source):
        opened(self, source)
        self.container = CountingContainer(self.container)

    _video.ClipReader.__init__ = counting


def plain_loop(model, processor, paths, n_frames):
    """Every frame decoded; the frames on screen at the sampled times embedded."""
    pooled = []
    with torch.inference_mode():
        for path in paths:
            with av.open(path) as container:
                stream = container.streams.video[0]
                duration = float(stream.duration * stream.time_base)
                times = [(k + 0.5) * duration / n_frames for k in range(n_frames)]
                chosen, shown = [], None
                for frame in container.decode(stream):
                    while times and frame.time > times[0] + 1e-9:
                        chosen.append(shown)
                        times.pop(0)
                    shown = frame.to_ndarray(format="rgb24")
                chosen += [shown] * len(times)
            inputs = processor(images=chosen, return_tensors="pt")
            features = model.get_image_features(**inputs)
            features = getattr(features, "pooler_output", features)
            features = torch.nn.functional.normalize(features, dim=-1).mean(0)
            pooled.append(torch.nn.functional.normalize(features, dim=0).numpy())
    return np.stack(pooled)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    from transformers import CLIPModel, CLIPProcessor

    path = checkpoint()
    paths = clips(args.clips + 1, args.seconds)
    warm, paths = paths[:1], paths[1:]
    ours = CLIPEmbeddingTransformer(
        path, dtype="float32", device="cpu", video={"frames": args.frames}
    ).fit(warm)
    model = CLIPModel.from_pretrained(path).eval()
    processor = CLIPProcessor.from_pretrained(path)
    ours.transform(warm), plain_loop(model, processor, warm, args.frames)

    count_our_decoding()
    start = time.perf_counter()
    mine = ours.transform(paths)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    theirs = plain_loop(model, processor, paths, args.frames)
    plain_seconds = time.perf_counter() - start
    agreement = float((mine * theirs).sum(axis=1).min())

    embedded = args.frames * len(paths)
    with av.open(paths[0]) as container:
        every = container.streams.video[0].frames * len(paths)
    rows = [
        {
            "contender": name,
            "frames decoded": decoded,
            "frames embedded": str(embedded),
            "seconds": f"{seconds:.2f}",
            "embedded frames/s": f"{embedded / seconds:.1f}",
            "vs plain loop": f"{plain_seconds / seconds:.2f}x",
        }
        for name, decoded, seconds in [
            (OURS, str(CountingContainer.decoded), ours_seconds),
            (PLAIN, str(every), plain_seconds),
        ]
    ]
    print(f"# {machine()}")
    print(
        f"# {len(paths)} clips of {args.seconds} s (640 x 360, 25 frames/s, H.264, "
        f"a keyframe every 10 s), {args.frames} frames each; float32; "
        f"lowest cosine between the two contenders' clip embeddings {agreement:.6f}"
    )
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
