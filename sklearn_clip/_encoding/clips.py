"""Clips as rows of frames: each video row expands to its sampled frames, pooled back.

The encoding path sees frames only: a video row becomes one
:class:`~sklearn_clip._encoding.video.VideoFrame` per sampled time, and a
still image stays one row of its own, so frames go through the same
decoding threads, batches, cache and error policy as images. Each frame row
remembers the input row it came from, so an error names that row and file,
and the pooled embedding of a row is made from its own frames only.
"""

from dataclasses import dataclass

import numpy as np

from sklearn_clip._encoding.images import ROW_ERRORS
from sklearn_clip._encoding.inputs import index_label
from sklearn_clip._encoding.prefetch import row_error
from sklearn_clip._encoding.video import (
    VideoFrame,
    VideoSource,
    is_video,
    probe,
)
from sklearn_clip._encoding.video_sampling import VideoSampling


@dataclass
class ClipPlan:
    """The frame rows of some input rows, and which row each came from.

    ``rows`` are what the encoder reads (a :class:`VideoFrame`, or a still
    image as it was given); ``owner[i]`` is the input row of ``rows[i]``,
    ``number[i]`` its frame number in that row and ``times[i]`` its time in
    seconds (NaN for a still image). ``failures`` holds ``(input row,
    error)`` for the clips that could not be opened: they have no frames.
    """

    rows: list
    owner: np.ndarray
    number: np.ndarray
    times: np.ndarray
    failures: list
    n_rows: int
    has_video: bool


def plan_clips(rows, index, sampling, on_error):
    """Expand the video rows of ``rows`` into frame rows, as ``sampling`` says.

    Each clip's header is read here (duration, frame count), not its frames.
    A clip that cannot be opened raises an
    :class:`~sklearn_clip.exceptions.ImageInputError` naming its row and file
    under ``on_error="raise"``; under ``"nan"`` it is listed in ``failures``.
    """
    if not any(is_video(item) for item in rows):
        n = len(rows)
        everything = np.arange(n)
        return ClipPlan(
            rows, everything, np.zeros(n, int), np.full(n, np.nan), [], n, False
        )
    frames, owner, number, times, failures = [], [], [], [], []
    for position, item in enumerate(rows):
        if not is_video(item):
            frames.append(item)
            owner.append(position), number.append(0), times.append(np.nan)
            continue
        try:
            source = VideoSource(item)
            info = probe(source)
        except ROW_ERRORS as exc:
            error = row_error(item, position, index, exc)
            if on_error == "raise":
                raise error from exc
            failures.append((position, error))
            continue
        chosen = sampling.times(info.start, info.duration, info.n_frames)
        for k, t in enumerate(chosen):
            frames.append(VideoFrame(source, position, k, t))
            owner.append(position), number.append(k), times.append(t)
    return ClipPlan(
        frames,
        np.asarray(owner, dtype=np.int64),
        np.asarray(number, dtype=np.int64),
        np.asarray(times, dtype=np.float64),
        failures,
        len(rows),
        True,
    )


def clip_failures(plan, frame_failures):
    """``(input row, error)`` per row that failed: its clip, or its first frame."""
    failed = dict(plan.failures)
    for position, error in frame_failures:
        failed.setdefault(int(plan.owner[position]), error)
    return sorted(failed.items(), key=lambda pair: pair[0])


def pool(plan, frame_out, frame_failures, *, normalize, video=None):
    """One embedding per input row from its frames: ``(embeddings, failures)``.

    A clip's embedding is the mean (or the element-wise maximum, as the
    estimators' ``video`` parameter's ``"pooling"`` says) of its frame
    embeddings, computed in float64 and scaled to unit length when
    ``normalize``, as the model's image embeddings are; a still image keeps
    its own embedding. A row with a frame that failed, or whose clip could
    not be opened, is NaN and listed in ``failures``: no clip is pooled from
    some of its frames silently.
    """
    pooling = VideoSampling.from_param(video).pooling
    failures = clip_failures(plan, frame_failures)
    out = np.full((plan.n_rows, frame_out.shape[1]), np.nan, np.float32)
    failed = {position for position, _ in failures}
    starts = np.searchsorted(plan.owner, np.arange(plan.n_rows + 1))
    for position in range(plan.n_rows):
        lo, hi = starts[position], starts[position + 1]
        if position in failed or lo == hi:
            continue
        vectors = frame_out[lo:hi].astype(np.float64)
        if hi - lo == 1 and np.isnan(plan.times[lo]):
            out[position] = frame_out[lo]  # a still image
            continue
        pooled = vectors.mean(axis=0) if pooling == "mean" else vectors.max(axis=0)
        if normalize:
            pooled /= np.linalg.norm(pooled)
        out[position] = pooled
    return out, failures


def frame_columns(plan, frame_out, index=None):
    """The long table's columns: ``row``, ``frame``, ``time`` and ``embedding``.

    ``row`` is the input row's pandas index label (``position`` its
    position); rows whose clip could not be opened have no frames.
    """
    return {
        "position": plan.owner,
        "row": [index_label(int(p), index) for p in plan.owner],
        "frame": plan.number,
        "time": plan.times,
        "embedding": frame_out,
    }
