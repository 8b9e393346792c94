"""Images decoded ahead, in threads, while the model works on the batch before.

Pillow and torch release the GIL while they decode and resize; at most
``prefetch`` batches are in flight, so memory is bounded by the batch size,
not by the dataset. A bad row becomes an
:class:`~sklearn_clip.exceptions.ImageInputError` naming the row and source.
The sampled frames of one video in a batch go to one thread, in order, so
that the clip is decoded forward once rather than by every thread.
"""

import functools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

from sklearn_clip._config import get_config, set_config
from sklearn_clip._encoding.images import ROW_ERRORS, describe_source, prepare_image
from sklearn_clip._encoding.inputs import row_label
from sklearn_clip._encoding.video import VideoFrame, is_video
from sklearn_clip._options import ON_ERROR_OPTIONS
from sklearn_clip._torch import torch_or_none
from sklearn_clip.exceptions import ImageInputError


def check_on_error(on_error):
    if on_error not in ON_ERROR_OPTIONS:
        raise ValueError(
            f"on_error must be one of {ON_ERROR_OPTIONS}; got {on_error!r}"
        )


def prepare_row(item, position, index, config, on_error):
    """Decode one row; under ``on_error="nan"`` return the error instead.

    Only what a bad row raises is caught (``ROW_ERRORS``); out-of-memory,
    interrupts and bugs propagate under either policy. A video frame is read
    from its clip, then prepared as an image array is.
    """
    try:
        if isinstance(item, VideoFrame):
            return prepare_image(item.read(), config)
        return prepare_image(item, config)
    except ROW_ERRORS as exc:
        error = row_error(item, position, index, exc)
        if on_error == "raise":
            raise error from exc
        return error


def row_error(item, position, index, exc):
    """The :class:`ImageInputError` of a row that could not be read.

    It names the row (for a video frame, the row of its clip), the source
    and the reason, in one line.
    """
    if isinstance(item, VideoFrame):
        where, source = row_label(item.row, index), item.describe()
    else:
        where, source = row_label(position, index), describe_source(item)
    kind = "video" if isinstance(item, VideoFrame) or is_video(item) else "image"
    error = ImageInputError(
        f"could not read the {kind} in {where}, {source}: {type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return error


def _groups(rows, chosen):
    """``chosen`` in runs decoded by one thread each: the consecutive frames
    of one clip together (so the clip is decoded forward once, not by every
    thread), every other row on its own."""
    groups = []
    for p in chosen:
        item = rows[p]
        last = rows[groups[-1][-1]] if groups else None
        same_clip = isinstance(item, VideoFrame) and isinstance(last, VideoFrame)
        if same_clip and item.source is last.source:
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


def _prepare_rows(rows, group, index, config, on_error):
    return [prepare_row(rows[p], p, index, config, on_error) for p in group]


# A ceiling on the default: more than 16 decoding threads have never been
# measured, and their Python parts all share one GIL.
MAX_DEFAULT_WORKERS = 32


def usable_cores():
    """The cores this process may run on (its CPU affinity, as containers and
    ``taskset`` set it), which ``os.cpu_count()`` ignores."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_workers():
    """Decoding threads: one per usable core, so decoding keeps up with the model.

    Pillow and torch release the GIL while they decode and resize, which is
    most of the work (``benchmarks/decode_cpu.py`` times the pipeline alone);
    an estimator's ``n_jobs`` (or ``n_workers`` here) overrides this.
    """
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cores()))


@functools.cache
def _thread_pools():
    # Finding the loaded thread-pool libraries takes milliseconds; a pool of
    # decoding threads starts with every call, so they are found once.
    return ThreadpoolController()


def _start_decoding_thread(settings):
    # Decoding threads work for one call: they take the caller's settings
    # (sklearn-clip's are per thread), as scikit-learn's Parallel passes its
    # config to its workers.
    set_config(**settings)
    _one_intra_op_thread()


def _one_intra_op_thread():
    # Decoding threads resize with torch. Each would otherwise start its own
    # team of intra-op threads, one per core, and crowd out the model's. The
    # OpenMP thread count is a per-thread setting, so the model's is untouched.
    # torch sets a thread's count on its first parallel call: make that first.
    torch = torch_or_none()
    if torch is not None:
        torch.get_num_threads()
    _thread_pools().limit(limits=1, user_api="openmp")


def iter_prepared_batches(
    rows,
    index,
    config,
    *,
    batch_size,
    on_error,
    n_workers,
    prefetch=2,
    positions=None,
):
    """Yield ``(start, arrays_or_errors)`` batches in order, decoded ahead.

    ``positions`` (default: every row) are the rows to decode; ``start`` is
    the offset of the batch's first row in ``positions``. ``batch_size`` may
    be a function, asked before each batch is queued.

    When the consumer stops early (an error, an interrupt, ``close()``), the
    batches queued ahead are cancelled rather than decoded for nothing.
    """
    check_on_error(on_error)
    n_workers = n_workers or default_workers()
    positions = range(len(rows)) if positions is None else positions
    next_size = batch_size if callable(batch_size) else lambda: batch_size
    pool = ThreadPoolExecutor(
        max_workers=n_workers,
        initializer=_start_decoding_thread,
        initargs=(get_config(),),
    )
    try:
        pending = deque()
        queued = 0

        def submit_next():
            nonlocal queued
            chosen = positions[queued : queued + next_size()]
            if len(chosen):
                futures = [
                    pool.submit(_prepare_rows, rows, group, index, config, on_error)
                    for group in _groups(rows, chosen)
                ]
                pending.append((queued, futures))
                queued += len(chosen)

        for _ in range(prefetch + 1):
            submit_next()
        while pending:
            start, futures = pending.popleft()
            submit_next()
            yield start, [item for f in futures for item in f.result()]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
