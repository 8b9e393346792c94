"""Video files -> the frames a sampling rule picks, decoded by seeking with PyAV.

A clip is never read whole: its header gives its duration and frame count,
the sampling rule (:mod:`~sklearn_clip._encoding.video_sampling`) gives the
times to look at, and each frame is found by seeking to the keyframe before
its time and decoding forward from there (or on from the frame decoded just
before, when no keyframe lies between). The frame taken at a time ``t`` is the frame on
screen at ``t``: the last frame whose timestamp is at most ``t``, as a player
shows it, turned upright by the stream's display matrix (phones record
portrait clips as rotated landscape frames). PyAV (the ``video`` extra:
``pip install av``) is imported on first use.
"""

import functools
import hashlib
import io
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sklearn_clip._encoding.images import _check_regular as check_regular

#: File name endings read as videos (anything else is read as an image).
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts"}
    | {".wmv", ".flv", ".3gp", ".ogv"}
)

# ISO base media brands of still images (AVIF, HEIF): "ftyp" data that is
# not a video.
_IMAGE_BRANDS = (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1", b"heim")


def _has_video_magic(data):
    head = bytes(data[:16])
    if head[4:8] == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS
    return head.startswith((b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba")) or (
        head.startswith(b"RIFF") and head[8:12] == b"AVI "
    )


def _is_decoder(item):
    # torchcodec's VideoDecoder, which datasets' Video(decode=True) gives.
    return type(item).__module__.partition(".")[0] == "torchcodec"


def _encoded(item):
    """A decoded ``datasets`` Video value as the ``{"bytes", "path"}`` it was
    decoded from (datasets' own ``encode_torchcodec_video``); else ``item``."""
    if not _is_decoder(item):
        return item
    try:
        from datasets.features.video import encode_torchcodec_video

        return encode_torchcodec_video(item)
    except (ImportError, NotImplementedError):
        raise ValueError(
            "this torchcodec VideoDecoder was not made by datasets' Video "
            "feature, so its file is unknown: pass the video's path or bytes"
        ) from None


def is_video(item):
    """Whether an input row is a video: a path with a video ending, the bytes
    of a video container, or a ``datasets`` value holding either (decoded,
    as torchcodec's ``VideoDecoder``, or not).

    Examples
    --------
    >>> from sklearn_clip._encoding.video import is_video
    >>> [is_video(x) for x in ("clip.MP4", "photo.jpg", {"path": "a.webm"})]
    [True, False, True]
    """
    if _is_decoder(item):
        return True
    if isinstance(item, str | os.PathLike):
        return Path(item).suffix.lower() in VIDEO_SUFFIXES
    if isinstance(item, bytes | bytearray):
        return _has_video_magic(item)
    if isinstance(item, dict) and set(item) <= {"bytes", "path"}:
        data = item.get("bytes")
        if isinstance(data, bytes | bytearray | memoryview):
            return _has_video_magic(data)
        return item.get("path") is not None and is_video(item["path"])
    return False


@functools.cache
def _av():
    try:
        import av
    except ImportError:
        raise ImportError(
            "reading videos needs PyAV: pip install av, the package's 'video' extra"
        ) from None
    if not hasattr(av.VideoFrame, "rotation"):  # frames would not be upright
        raise ImportError(
            f"PyAV {av.__version__} is too old to read a clip's rotation: "
            "pip install -U av"
        )
    return av


class VideoSource:
    """One clip: where its bytes are, how to open it, and its content's hash.

    ``item`` is a path or the clip's bytes (a ``datasets`` value is resolved
    to one of them first). The hash is computed once, on first use, from the
    file read in chunks, so that the cache keys a frame by the clip's content
    and the frame's time without holding the file in memory.
    """

    def __init__(self, item):
        item = _encoded(item)
        if isinstance(item, dict):
            data = item.get("bytes")
            item = item["path"] if data is None else bytes(data)
        self.item = item if isinstance(item, bytes) else os.fspath(item)
        self._digest = None
        self._stat = None

    def describe(self):
        if isinstance(self.item, bytes):
            return f"{len(self.item)} bytes of video"
        return f"path {self.item!r}"

    def open(self):
        """The PyAV container (a context manager); PyAV's errors as ``OSError``."""
        av = _av()
        target = io.BytesIO(self.item) if isinstance(self.item, bytes) else self.item
        if isinstance(target, str):
            _check_regular_file(target)
        try:
            return av.open(target, "r")
        except av.error.FFmpegError as exc:
            raise OSError(f"PyAV cannot open it as a video: {exc}") from exc

    def digest(self):
        """The SHA-256 of the clip's bytes, in hex, read in 1 MiB chunks."""
        if self._digest is None:
            hasher = hashlib.sha256(b"video\0")
            if isinstance(self.item, bytes):
                hasher.update(self.item)
            else:
                with open(self.item, "rb") as handle:
                    self._stat = _signature(os.fstat(handle.fileno()))
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        hasher.update(chunk)
            self._digest = hasher.hexdigest()
        return self._digest

    def check_unchanged(self):
        """Refuse a file replaced since its hash was taken (its key would lie)."""
        if self._stat is not None and _signature(os.stat(self.item)) != self._stat:
            raise OSError("the file changed while it was read; run again")


def _signature(info):
    return info.st_size, info.st_mtime_ns, info.st_ino


def _check_regular_file(path):
    # A FIFO or a device would block or never end: refused, as for images.
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path!r}") from None
    check_regular(info.st_mode, path)
    if info.st_size == 0:
        raise OSError("the file is empty")


@dataclass(frozen=True)
class ClipInfo:
    """What a clip's header says: where it starts, how long it is, its frames."""

    start: float
    duration: float
    n_frames: int | None
    frame_interval: float


def probe(source):
    """Read a clip's header: :class:`ClipInfo`, or a row error saying why not.

    A file with no video stream (audio only, or not a video at all), or a
    stream without frames, raises ``ValueError``; a file PyAV cannot read
    raises ``OSError``.
    """
    av = _av()
    with source.open() as container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams}))
            held = f"only {kinds}" if kinds else "no stream at all: an empty clip"
            raise ValueError(f"the file has no video stream ({held})")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        interval = float(1 / rate) if rate else 1 / 25
        try:
            start, duration = _extent(container, stream)
        except av.error.FFmpegError as exc:
            raise OSError(f"PyAV cannot read the video: {exc}") from exc
        n_frames = stream.frames or (round(duration / interval) if rate else None)
    if duration <= 0 or n_frames == 0:
        raise ValueError("the video has no frames (it is zero seconds long)")
    return ClipInfo(start, duration, n_frames, interval)


def _extent(container, stream):
    """``(start, duration)`` in seconds, from the header or else the packets."""
    base = stream.time_base
    start = float(stream.start_time * base) if stream.start_time is not None else 0.0
    if stream.duration:
        return start, float(stream.duration * base)
    if container.duration:
        return start, container.duration / 1_000_000 - max(start, 0.0)
    # No duration in the header (some streamed files): read the packets' times
    # (no frame is decoded; only one packet is held at a time).
    end = None
    for packet in container.demux(stream):
        if packet.pts is not None:
            stop = float((packet.pts + (packet.duration or 0)) * base)
            end = stop if end is None else max(end, stop)
    return start, (end - start) if end is not None else 0.0


class ClipReader:
    """An open clip, decoding forward from where it is or seeking as needed.

    Each decoding thread keeps the reader of the clip it read last
    (:func:`read_frame`), so consecutive frames of one clip reuse the open
    container and, when no keyframe lies between, the decoding done so far.
    """

    def __init__(self, source):
        self.source = source
        self.container = source.open()
        streams = self.container.streams.video
        if not streams:
            self.container.close()
            raise ValueError("the file has no video stream")
        self.stream = streams[0]
        base = self.stream.time_base
        self.keyframes = sorted(
            float(e.timestamp * base)
            for e in self.stream.index_entries
            if e.flags & 1 and e.timestamp is not None
        )
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.interval = float(1 / rate) if rate else 1 / 25
        self._frames = None  # the decoding generator, after a seek
        self._pending = None  # a decoded frame after the last time asked
        self._last = None  # the frame on screen at the last time asked

    def close(self):
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _must_seek(self, t):
        if self._frames is None or self._last is None or t < self._last.time:
            return True
        here = self._last.time
        if self.keyframes:
            return any(here < k <= t for k in self.keyframes)
        return t - here > 2.0  # no index: seek past a couple of seconds

    def frame_at(self, t):
        """The frame on screen at ``t`` seconds, as an upright RGB array."""
        av = _av()
        try:
            frame = self._decode_to(t, seek=self._must_seek(t))
        except av.error.FFmpegError as exc:
            raise OSError(f"PyAV cannot decode the frame: {exc}") from exc
        array = frame.to_ndarray(format="rgb24")
        turns = round((frame.rotation or 0) / 90) % 4
        return np.ascontiguousarray(np.rot90(array, turns)) if turns else array

    def _decode_to(self, t, *, seek):
        if seek:
            target = math.floor(t / self.stream.time_base)
            self.container.seek(target, stream=self.stream, backward=True)
            self._frames, self._pending, self._last = (
                self.container.decode(self.stream),
                None,
                None,
            )
        chosen, exhausted = self._last, True
        while True:
            frame = self._pending or next(self._frames, None)
            self._pending = None
            if frame is None:
                break
            if frame.time is not None and frame.time > t + 1e-9:
                self._pending, exhausted = frame, False
                chosen = chosen or frame  # before the first frame: the first
                break
            chosen = frame
        if chosen is None or (exhausted and t >= self._shown_until(chosen) - 1e-9):
            shown = "no frame" if chosen is None else f"the last at {chosen.time:.2f} s"
            raise EOFError(
                f"no frame at {t:.2f} s: the video's data ends before it ({shown}); "
                "the file may be truncated"
            )
        self._last = chosen
        return chosen

    def _shown_until(self, frame):
        # A last frame is on screen for its own duration (one frame interval
        # when it has none); past that the clip has ended.
        own = float(frame.duration * frame.time_base) if frame.duration else 0.0
        return frame.time + max(own, self.interval)


_readers = threading.local()


def read_frame(source, t):
    """The frame of ``source`` on screen at ``t`` seconds (upright RGB ``uint8``).

    Each thread keeps its last clip open (until the thread ends or reads
    another clip), so frames asked in order of time decode forward instead of
    seeking back every time. For one frame, open a :class:`ClipReader` in a
    ``with`` block instead.
    """
    reader = getattr(_readers, "reader", None)
    if reader is None or reader.source is not source:
        if reader is not None:
            reader.close()
            _readers.reader = None
        source.check_unchanged()
        reader = _readers.reader = ClipReader(source)
    try:
        return reader.frame_at(t)
    except BaseException:
        reader.close()
        _readers.reader = None
        raise


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One sampled frame of a clip: the row it belongs to, its number and time."""

    source: VideoSource
    row: int
    number: int
    time: float

    def read(self):
        return read_frame(self.source, self.time)

    def describe(self):
        return f"frame {self.number} at {self.time:.2f} s of {self.source.describe()}"
