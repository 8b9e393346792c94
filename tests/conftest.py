"""Shared fixtures: tiny offline models written with save_pretrained, test images."""

import io
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_clip import clear_model_cache, config_context, load_model
from sklearn_clip._loader import registry as _model
from sklearn_clip.toy import make_tiny_clip


@pytest.fixture(scope="session", autouse=True)
def quiet_reference_loads():
    """No transformers progress bars from the tests' own reference loads.

    sklearn-clip's loads and saves are quiet by themselves (checked with the
    bars switched on in tests/loader/test_model.py); the references that tests build
    with transformers directly (its pipeline, ``from_pretrained``) would
    otherwise draw a "Loading weights" bar each.
    """
    from transformers.utils import logging

    logging.disable_progress_bar()
    yield
    logging.enable_progress_bar()


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_siglip_path(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-siglip"), family="siglip")


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_path):
    # On CPU even where a GPU is present, and in float32 whatever the CPU's
    # bfloat16 units: tests compare it with float32 CPU references
    # (tests/backends/test_gpu.py asks for the GPU, tests/backends/test_precision.py
    # for bf16).
    return load_model(tiny_clip_path, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_siglip(tiny_siglip_path):
    return load_model(tiny_siglip_path, device="cpu", dtype="float32")


@pytest.fixture
def float32():
    """Pin ``dtype="auto"`` to float32 for a test that compares with a float32
    reference (transformers' own forward passes, pipelines, losses and saved
    weights), so it passes alike on CPUs with and without native bfloat16
    units. The bfloat16 path has tests of its own (tests/backends/test_precision.py)."""
    with config_context(auto_dtype="float32"):
        yield


@pytest.fixture(scope="module")
def float32_module():
    """:func:`float32` for a whole module made of such tests, module-scoped
    fixtures included (``pytestmark = pytest.mark.usefixtures(...)``)."""
    with config_context(auto_dtype="float32"):
        yield


def _gradient(height, width, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            x * 255 / max(width - 1, 1),
            y * 255 / max(height - 1, 1),
            (x + y) * 127 / max(height + width - 2, 1),
        ],
        axis=-1,
    )
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def grey_levels(difference, config):
    """A difference of normalised NCHW pixels, in grey levels of the 0-255 input."""
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    return (difference * std * 255).abs()


def noise_pngs(folder, shapes, seed=0):
    """PNG files of random RGB pixels in ``folder``, one per ``(height, width)``
    of ``shapes``, named ``000.png``, ``001.png``...; their paths as strings."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, (height, width) in enumerate(shapes):
        paths.append(str(folder / f"{i:03d}.png"))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(paths[-1])
    return paths


def encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    """Files of several sizes, modes and formats, keyed by a short name."""
    folder = tmp_path_factory.mktemp("images")
    rgb = Image.fromarray(_gradient(48, 64, 0))
    rgba = rgb.copy()
    alpha = np.zeros((48, 64), np.uint8)
    alpha[:, 32:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    grey16 = Image.fromarray(_gradient(40, 50, 1)[..., 0].astype(np.uint16) * 257)
    images = {
        "rgb.jpg": (rgb, "JPEG"),
        "tall.jpg": (Image.fromarray(_gradient(90, 33, 2)), "JPEG"),
        "rgb.png": (Image.fromarray(_gradient(31, 77, 3)), "PNG"),
        "rgba.png": (rgba, "PNG"),
        "palette.png": (rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "grey.png": (rgb.convert("L"), "PNG"),
        "grey16.png": (grey16, "PNG"),
        "small.bmp": (Image.fromarray(_gradient(12, 9, 4)), "BMP"),
        "cmyk.jpg": (rgb.convert("CMYK"), "JPEG"),
    }
    paths = {}
    for name, (image, fmt) in images.items():
        paths[name] = folder / name
        image.save(paths[name], format=fmt)
    return paths


@pytest.fixture(scope="session")
def gradient():
    return _gradient


@pytest.fixture
def isolated_cache():
    """Start a test with an empty model cache; put the old one back after.

    Other tests compare handles with the session fixtures, which must stay the
    cached ones.
    """
    saved = dict(_model._cache)
    clear_model_cache()
    yield
    with _model._cache_lock:
        _model._cache.clear()
        _model._cache.update(saved)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch ops on one thread.

    Modules with many tiny forward passes use it: on a busy small machine,
    intra-op thread hand-offs cost more than the work itself.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_model_path():
    """The small CLIP the demo trains on generated shapes, for slow checks that
    need a model that has learned something: trained on first use, then read
    from the demo's on-disk cache (``$SKLEARN_CLIP_DATA``)."""
    from sklearn_clip.demo import trained_model

    return trained_model(n_train=4000, max_epochs=20)


# A sitecustomize that hides PyTorch from every import finder, as where it is
# not installed: `import torch` raises ModuleNotFoundError and
# importlib.util.find_spec("torch") is None, which is how transformers and
# scipy decide it is absent.
_WITHOUT_TORCH = """
import sys

class _WithoutTorch:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "torchvision"):
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)

sys.meta_path[:] = [_WithoutTorch(finder) for finder in sys.meta_path]
"""


@pytest.fixture(scope="session")
def without_torch(tmp_path_factory):
    """The environment of a child process in which PyTorch cannot be imported,
    as on a machine that serves exported models only."""
    site = tmp_path_factory.mktemp("without-torch")
    (site / "sitecustomize.py").write_text(_WITHOUT_TORCH)
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def spark():
    """A ``local[2]`` SparkSession (two worker slots), quiet, for one test module.

    Starting one costs seconds, so a module shares it. Python workers run this
    interpreter (the package comes from this checkout's install); what they
    should see besides, set it in ``spark.sparkContext.environment`` before
    the job (as ``spark.executorEnv.*`` does for a new session).
    """
    pyspark_sql = pytest.importorskip("pyspark.sql")
    python = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("sklearn-clip-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.pyspark.udf.faulthandler.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    if python is None:
        os.environ.pop("PYSPARK_PYTHON", None)
    else:
        os.environ["PYSPARK_PYTHON"] = python


def moving_square(i, width, height):
    """Frame ``i`` of a generated clip: a square that moves and changes colour."""
    image = np.empty((height, width, 3), np.uint8)
    image[...] = (20, 40, 120)
    x, y = (i * 5) % (width - 16), (i * 3) % (height - 16)
    image[y : y + 16, x : x + 16] = ((60 * i) % 256, 200, 255 - (40 * i) % 256)
    return image


def write_clip(path, n=30, fps=10, size=(96, 64), *, rotation=None, pts_ms=None):
    """An H.264 clip of ``n`` moving-square frames, one keyframe a second.

    ``pts_ms`` gives each frame's time in milliseconds (a variable frame
    rate); ``rotation`` writes a display matrix (degrees counterclockwise).
    """
    av = pytest.importorskip("av")
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = fps
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        out.start_encoding()
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(moving_square(i, *size), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def video_files(tmp_path_factory):
    """Generated clips, good and bad, keyed by a short name (PyAV writes them)."""
    av = pytest.importorskip("av")
    folder = tmp_path_factory.mktemp("videos")
    paths = {name: folder / name for name in ("clip.mp4", "clip.mkv", "short.mp4")}
    write_clip(paths["clip.mp4"])
    write_clip(paths["clip.mkv"], n=20, fps=5, size=(64, 96))
    write_clip(paths["short.mp4"], n=3)
    paths["rotated.mp4"] = write_clip(folder / "rotated.mp4", rotation=90)
    times = [0, 40, 80, 500, 520, 1400, 1450, 1500, 2300, 2310, 2900, 3000]
    paths["vfr.mkv"] = write_clip(folder / "vfr.mkv", n=12, pts_ms=times)
    paths["empty.mp4"] = write_clip(folder / "empty.mp4", n=0)
    for name in ("mp4", "mkv"):  # the first half of a clip's bytes
        data = paths[f"clip.{name}"].read_bytes()
        paths[f"truncated.{name}"] = folder / f"truncated.{name}"
        paths[f"truncated.{name}"].write_bytes(data[: len(data) // 2])
    paths["not_video.mp4"] = folder / "not_video.mp4"
    paths["not_video.mp4"].write_bytes(b"not a video\n" * 9)
    paths["audio.mp4"] = folder / "audio.mp4"
    with av.open(str(paths["audio.mp4"]), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(10):
            sound = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            sound.sample_rate, sound.pts = 16000, i * 1024
            out.mux(stream.encode(sound))
        out.mux(stream.encode())
    return paths


@pytest.fixture(scope="session")
def open_clip_checkpoints(tmp_path_factory, tiny_clip_path):
    """Tiny random open_clip checkpoints written by open_clip itself, one per
    mapped layout, with open_clip's own model, transform and tokenizer of each
    (open_clip beside a torchvision stand-in: tests/models/open_clip_reference.py).
    The SigLIP ports name a Hugging Face tokenizer that gives an attention mask,
    which open_clip does not pass on."""
    from transformers import AutoTokenizer

    from tests.models.open_clip_reference import write_checkpoints

    tokenizer = tmp_path_factory.mktemp("open-clip-tokenizer")
    AutoTokenizer.from_pretrained(tiny_clip_path).save_pretrained(tokenizer)
    return write_checkpoints(tmp_path_factory.mktemp("open-clip"), tokenizer)


@pytest.fixture(scope="session")
def pyav_frame_at():
    """PyAV's own frame on screen at ``t`` seconds: the last one whose time is
    at most ``t``, decoded from the clip's start and turned upright."""
    av = pytest.importorskip("av")

    def frame_at(path, t):
        shown = None
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                if shown is not None and frame.time > t + 1e-9:
                    break
                array = frame.to_ndarray(format="rgb24")
                shown = np.rot90(array, round(frame.rotation / 90))
        return shown

    return frame_at
