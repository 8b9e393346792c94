"""A long clip is read by seeking: memory does not grow with its length."""

import json
import subprocess
import sys

import pytest

# One fresh process per clip, so each peak is its own: the tiny model, one
# clip, its peak resident memory (ru_maxrss, in KiB on Linux).
CHILD = """
import json, resource, sys
from sklearn_clip import CLIPEmbeddingTransformer
est = CLIPEmbeddingTransformer(sys.argv[1], dtype="float32", device="cpu",
                               video={"fps": 0.5}, batch_size=8)
out = est.fit([sys.argv[2]]).transform([sys.argv[2]])
frames = len(est.transform_frames([sys.argv[2]]))
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "frames": frames, "finite": bool((out == out).all())}))
"""


def write_720p(path, seconds):
    """A 1280 x 720 clip at 1 frame/s, a keyframe a minute, a tiny bitrate.

    Few frames and keyframes and near-static content keep writing ten
    minutes of 720p video to a few seconds and a few hundred kilobytes; the
    decoder still holds full 720p frames, which is what memory is about.
    """
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.codec_context.gop_size = 60
        stream.options = {"preset": "ultrafast", "crf": "45"}
        image = np.zeros((720, 1280, 3), np.uint8)
        for i in range(seconds):
            image[:, :] = (i % 200, 80, 160)
            image[300:400, (i * 7) % 1180 :][:, :100] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


def peak(model, clip):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(clip)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_ten_minutes_of_720p_take_the_memory_of_ten_seconds(tiny_clip_path, tmp_path):
    pytest.importorskip("av")
    short = peak(tiny_clip_path, write_720p(tmp_path / "short.mp4", 10))
    long = peak(tiny_clip_path, write_720p(tmp_path / "long.mp4", 600))
    assert (short["frames"], long["frames"]) == (5, 300)
    assert short["finite"] and long["finite"]
    grown_mb = (long["peak_kib"] - short["peak_kib"]) / 1024
    print(
        f"peak RSS: 10 s {short['peak_kib'] / 1024:.0f} MB, 10 min "
        f"{long['peak_kib'] / 1024:.0f} MB, difference {grown_mb:.1f} MB"
    )
    assert grown_mb < 200
