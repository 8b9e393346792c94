"""The one batched encoding path: rows -> prepared batches -> float32 embeddings.

Each batch becomes embeddings through the handle (``_embed_image_batch``,
``_embed_text_batch``): PyTorch's forward passes for a
:class:`~sklearn_clip.ModelHandle`, an inference runtime for an exported model.
Everything else (decoding, batching, caching, the rows that fail) is the same
for both, and this module imports neither.

Images are decoded ahead in threads (:mod:`~sklearn_clip._encoding.prefetch`)
and run through the model in batches (:mod:`~sklearn_clip._encoding.batches`,
where ``batch_size="auto"`` is decided). An optional
:class:`~sklearn_clip._encoding.cache.EmbeddingCache` is consulted first: only the rows
it does not hold are encoded, then stored.
"""

import os
import warnings
from contextlib import closing

import numpy as np
from tqdm.auto import tqdm

from sklearn_clip._encoding.batches import BatchSizer, run_batches
from sklearn_clip._encoding.cache import encode_through_cache, text_memo
from sklearn_clip._encoding.clips import plan_clips, pool
from sklearn_clip._encoding.images import describe_source
from sklearn_clip._encoding.inputs import check_texts, index_label
from sklearn_clip._encoding.prefetch import check_on_error, iter_prepared_batches
from sklearn_clip._encoding.video_sampling import VideoSampling
from sklearn_clip.exceptions import ImageInputError, InputErrorWarning

TEXT_ORDERS = ("length", "prefix")


def encode_texts(
    handle, texts, *, batch_size=256, normalize=True, cache=None, order="length"
):
    """Embed texts; each distinct text is encoded once.

    ``order="length"`` batches texts of similar length together, which keeps
    padding (wasted work) small for free text such as captions;
    ``order="prefix"`` batches them in alphabetical order, which keeps the
    prompts of one template together, so that their shared first tokens run
    once (see :mod:`sklearn_clip._backends.torch.forward`). Texts this model
    encoded recently in this process come from a memo
    (:data:`sklearn_clip._encoding.cache.text_memo`), then from ``cache`` if
    given.
    """
    if order not in TEXT_ORDERS:
        raise ValueError(f"order must be one of {TEXT_ORDERS}; got {order!r}")
    texts = list(texts)
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    out = np.empty((len(unique), handle.embedding_dim), np.float32)
    token, remembered = text_memo.lookup(handle, unique, normalize)
    for i, vector in remembered.items():
        out[i] = vector
    todo = [i for i in range(len(unique)) if i not in remembered]
    sizer = BatchSizer(batch_size, handle.device, kind="text")

    def forward(chosen):
        return handle._embed_text_batch(chosen, normalize)

    def encode(positions, items=None):
        if order == "prefix":
            chosen = sorted(positions)  # np.unique sorted the texts alphabetically
        else:
            chosen = sorted(positions, key=lambda i: len(unique[i]))
        run_batches([(i, unique[i]) for i in chosen], forward, out, sizer)
        text_memo.store(token, [unique[i] for i in chosen], out[chosen], normalize)

    if cache is None:
        encode(todo)
    else:
        encode_through_cache(
            cache,
            handle,
            unique,
            out,
            encode,
            kind="text",
            normalize=normalize,
            positions=todo,
        )
    return out[inverse.reshape(-1)]


def encode_images(handle, rows, index=None, *, normalize=True, video=None, **options):
    """Embed image rows; returns ``(embeddings, failures)``.

    ``failures`` lists ``(position, ImageInputError)`` for the rows that could
    not be read under ``on_error="nan"`` (their embedding rows are NaN); under
    ``"raise"`` the first bad row raises an :class:`ImageInputError` naming it.
    What a failure means to the caller (a warning; an error when every row
    failed) is the caller's: see :func:`report_failures`. Only errors of a
    bad row are caught: out-of-memory, interrupts and model errors propagate
    (except that ``batch_size="auto"`` first retries smaller batches).

    With a ``cache``, rows it holds are read from it and only the others are
    decoded and encoded, then stored. A video row (see
    :func:`~sklearn_clip._encoding.video.is_video`) is embedded as the pooled
    embedding of the frames ``video`` samples (the estimators' ``video``
    parameter: None or a dict, see
    :class:`~sklearn_clip._encoding.video_sampling.VideoSampling`). The other
    keyword ``options`` (``batch_size``, ``on_error``, ``progress``,
    ``n_workers``, ``cache``) are :func:`encode_frames`'.
    """
    plan, frame_out, frame_failures = encode_frames(
        handle, rows, index, normalize=normalize, video=video, **options
    )
    if not plan.has_video:
        return frame_out, frame_failures
    return pool(plan, frame_out, frame_failures, normalize=normalize, video=video)


def encode_frames(
    handle,
    rows,
    index=None,
    *,
    batch_size=32,
    normalize=True,
    on_error="raise",
    progress=False,
    n_workers=None,
    cache=None,
    video=None,
):
    """Embed every frame of image and video rows: ``(plan, embeddings, failures)``.

    ``plan`` (a :class:`~sklearn_clip._encoding.clips.ClipPlan`) says which
    input row, frame number and time each embedding row is; ``failures``
    lists ``(frame row, error)`` for frames that could not be read. Each
    still image is one frame.
    """
    check_on_error(on_error)
    sampling = VideoSampling.from_param(video)
    plan = plan_clips(rows, index, sampling, on_error)
    frames = plan.rows
    out = np.full((len(frames), handle.embedding_dim), np.nan, np.float32)
    failures = []
    sizer = BatchSizer(batch_size, handle.device)
    unit = "frame" if plan.has_video else "image"
    bar = tqdm(total=len(frames), disable=not progress, desc="embedding", unit=unit)

    def encode(positions, items=frames):
        # ``items`` (from the cache) holds a file's bytes in place of its path:
        # the bytes its key was computed from, decoded without a second read.
        failures.extend(
            _encode_image_rows(
                handle,
                items,
                index,
                positions,
                out,
                sizer,
                normalize=normalize,
                on_error=on_error,
                n_workers=n_workers,
                done=bar.update,
            )
        )

    with bar:
        if cache is None:
            encode(range(len(frames)))
        else:
            bar.update(
                encode_through_cache(
                    cache,
                    handle,
                    frames,
                    out,
                    encode,
                    kind="image",
                    normalize=normalize,
                )
            )
    return plan, out, failures


def _encode_image_rows(
    handle,
    rows,
    index,
    positions,
    out,
    sizer,
    *,
    normalize,
    on_error,
    n_workers,
    done,
):
    """Decode ``positions`` in background threads and embed them into ``out``.

    Returns the ``(position, error)`` failures. Decoded rows wait in ``ready``
    until a full batch of them exists, so a failed row does not shrink a batch.
    """
    failures, ready = [], []

    def forward(arrays):
        return handle._embed_image_batch(arrays, normalize)

    batches = iter_prepared_batches(
        rows,
        index,
        handle.image_config,
        batch_size=lambda: sizer.size,
        on_error=on_error,
        n_workers=n_workers,
        positions=positions,
    )
    with closing(batches):
        for start, prepared in batches:
            for offset, item in enumerate(prepared):
                position = positions[start + offset]
                if isinstance(item, Exception):
                    failures.append((position, item))
                    done(1)
                else:
                    ready.append((position, item))
            ready = run_batches(
                ready, forward, out, sizer, keep_partial=True, done=done
            )
        run_batches(ready, forward, out, sizer, done=done)
    return failures


def encode_rows(
    handle,
    rows,
    index=None,
    *,
    modality,
    batch_size,
    normalize=True,
    on_error="raise",
    progress=False,
    cache=None,
    n_workers=None,
    video=None,
):
    """Rows of one modality -> ``(float32 embeddings, failures)``.

    The one entry point that the estimators and :class:`ModelHandle` use
    (``failures`` as :func:`encode_images` gives them; none for texts);
    ``rows`` and ``index`` are what :func:`sklearn_clip._encoding.inputs.as_rows`
    returns. Texts are checked for missing values (naming the row) first;
    ``n_workers`` is the number of image decoding threads (None: see
    :func:`~sklearn_clip._encoding.prefetch.default_workers`).
    """
    if modality == "text":
        texts = check_texts(rows, index)
        embeddings = encode_texts(
            handle, texts, batch_size=batch_size, normalize=normalize, cache=cache
        )
        return embeddings, []
    return encode_images(
        handle,
        rows,
        index,
        batch_size=batch_size,
        normalize=normalize,
        on_error=on_error,
        progress=progress,
        cache=cache,
        n_workers=n_workers,
        video=video,
    )


def report_failures(failures, rows, index=None):
    """The estimators' policy on rows that failed; returns their records.

    One summary :class:`InputErrorWarning` carrying the records (see
    :func:`failure_records`) as its ``errors`` (the estimators keep no
    per-call state, so a caller reads the rows that failed from the warning),
    or an :class:`ImageInputError` if every row failed: that usually means a
    wrong folder, not bad images. Callers that record failures themselves
    (the ``embed`` command's shards) take the records without the policy.
    """
    records = failure_records(failures, rows, index)
    if not failures:
        return records
    n_rows = len(rows)
    if len(failures) == n_rows:
        raise ImageInputError(
            f"all {n_rows} images failed to load; the first: {failures[0][1]}"
        ) from failures[0][1]
    kinds = {}
    for _, error in failures:
        name = type(error.__cause__ or error).__name__
        kinds[name] = kinds.get(name, 0) + 1
    summary = ", ".join(f"{count} {name}" for name, count in sorted(kinds.items()))
    warning = InputErrorWarning(
        f"{len(failures)} of {n_rows} images could not be read and gave NaN rows "
        f"({summary}); the first: {failures[0][1]}",
        records,
    )
    warnings.warn(warning, stacklevel=4)
    return records


def failure_records(failures, rows, index=None):
    """One dict per row that failed under ``on_error="nan"``.

    They are the ``errors`` of the call's
    :class:`~sklearn_clip.exceptions.InputErrorWarning`, and ``fit`` keeps
    those of its own rows in ``input_errors_``.

    Keys: ``position``; ``index`` (the pandas index label, or the position for
    inputs without an index); ``source`` (the path, or a short description);
    ``error`` (the exception type) and ``message``.
    """
    records = []
    for position, error in failures:
        cause = error.__cause__ or error
        item = rows[position]
        source = item if isinstance(item, str | os.PathLike) else describe_source(item)
        records.append(
            {
                "position": position,
                "index": index_label(position, index),
                "source": str(source),
                "error": type(cause).__name__,
                "message": str(cause),
            }
        )
    return records
