"""The one batched encoding path: rows -> tensors -> float32 embeddings.

This is the only module that knows how ``transformers`` returns features: in 4.x
``get_image_features`` returns the projected embedding tensor, in 5.x an output
object whose ``pooler_output`` is that embedding.

Images are decoded and resized in background threads (Pillow releases the GIL)
while the model works on the previous batch; at most ``prefetch`` batches are
in flight, so memory is bounded by the batch size, not by the dataset.
"""

import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import numpy as np
import torch
from tqdm.auto import tqdm

from sklearn_clip._images import (
    ROW_ERRORS,
    ImageInputError,
    describe_source,
    normalize_batch,
    prepare_image,
)
from sklearn_clip._inputs import index_label, row_label


class InputErrorWarning(UserWarning):
    """Some rows could not be read and came back as NaN (``on_error="nan"``)."""


def _features(output):
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output


def image_features(model, pixel_values):
    """Projected image embeddings (not normalised), as a tensor."""
    return _features(model.get_image_features(pixel_values=pixel_values))


def text_features(model, input_ids, attention_mask):
    """Projected text embeddings (not normalised), as a tensor."""
    return _features(
        model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    )


def tokenize(handle, texts):
    """Token ids and attention mask, truncated to the model's context.

    Truncation keeps the end token: CLIP pools the text at that token, so a
    sequence cut before it would be embedded from the wrong position.
    """
    # verbose=False: the one warning about truncation is ours, below.
    ids = handle.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
    limit = handle.context_length
    too_long = [i for i, seq in enumerate(ids) if len(seq) > limit]
    if too_long:
        ids = [seq[: limit - 1] + seq[-1:] if len(seq) > limit else seq for seq in ids]
        handle.warn_once(
            "truncation",
            f"{len(too_long)} text(s) are longer than the model's context of {limit} "
            f"tokens and were truncated (first: {texts[too_long[0]][:60]!r}).",
        )
    width = limit if handle.pad_to_max_length else max(map(len, ids))
    input_ids = torch.full((len(ids), width), handle.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def _to_numpy(embeddings, normalize):
    embeddings = embeddings.float()
    if normalize:
        embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    return embeddings.cpu().numpy()


def encode_texts(handle, texts, *, batch_size=256, normalize=True):
    """Embed texts; each distinct text is encoded once, in length order."""
    texts = list(texts)
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    # Batching texts of similar length keeps padding, and so wasted work, small.
    order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
    out = np.empty((len(unique), handle.embedding_dim), np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            input_ids, mask = tokenize(handle, [unique[i] for i in chosen])
            features = text_features(
                handle.model, input_ids.to(handle.device), mask.to(handle.device)
            )
            out[chosen] = _to_numpy(features, normalize)
    return out[inverse.reshape(-1)]


ON_ERROR_OPTIONS = ("raise", "nan")


def _check_on_error(on_error):
    if on_error not in ON_ERROR_OPTIONS:
        raise ValueError(
            f"on_error must be one of {ON_ERROR_OPTIONS}; got {on_error!r}"
        )


def _prepare_row(item, position, index, config, on_error):
    """Decode one row; under ``on_error="nan"`` return the error instead.

    Only what a bad row raises is caught (``ROW_ERRORS``); out-of-memory,
    interrupts and bugs propagate under either policy.
    """
    try:
        return prepare_image(item, config)
    except ROW_ERRORS as exc:
        error = ImageInputError(
            f"could not read the image in {row_label(position, index)}, "
            f"{describe_source(item)}: {type(exc).__name__}: {exc}"
        )
        if on_error == "raise":
            raise error from exc
        error.__cause__ = exc
        return error


def default_workers():
    """Decoding threads: enough to hide decoding behind the model, no more."""
    return max(1, min(8, (os.cpu_count() or 1)))


def iter_prepared_batches(
    rows, index, config, *, batch_size, on_error, n_workers, prefetch=2
):
    """Yield ``(start, arrays_or_errors)`` batches in order, decoded ahead.

    When the consumer stops early (an error, an interrupt, ``close()``), the
    batches queued ahead are cancelled rather than decoded for nothing.
    """
    _check_on_error(on_error)
    n_workers = n_workers or default_workers()
    pool = ThreadPoolExecutor(max_workers=n_workers)
    try:
        pending = deque()
        starts = iter(range(0, len(rows), batch_size))

        def submit_next():
            start = next(starts, None)
            if start is not None:
                futures = [
                    pool.submit(_prepare_row, rows[p], p, index, config, on_error)
                    for p in range(start, min(start + batch_size, len(rows)))
                ]
                pending.append((start, futures))

        for _ in range(prefetch + 1):
            submit_next()
        while pending:
            start, futures = pending.popleft()
            submit_next()
            yield start, [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def encode_images(
    handle,
    rows,
    index=None,
    *,
    batch_size=32,
    normalize=True,
    on_error="raise",
    progress=False,
    n_workers=None,
):
    """Embed image rows; returns ``(embeddings, failures)``.

    ``failures`` lists ``(position, ImageInputError)`` for the rows that could
    not be read under ``on_error="nan"`` (their embedding rows are NaN, and one
    :class:`InputErrorWarning` sums them up); under ``"raise"`` the first bad
    row raises an :class:`ImageInputError` naming it. If every row fails, an
    :class:`ImageInputError` is raised under either policy. Only errors of a
    bad row are caught: out-of-memory, interrupts and model errors propagate.
    """
    _check_on_error(on_error)
    out = np.full((len(rows), handle.embedding_dim), np.nan, np.float32)
    failures = []
    batches = iter_prepared_batches(
        rows,
        index,
        handle.image_config,
        batch_size=batch_size,
        on_error=on_error,
        n_workers=n_workers,
    )
    n_batches = -(-len(rows) // batch_size)
    with closing(batches), torch.inference_mode():
        for start, prepared in tqdm(
            batches,
            total=n_batches,
            disable=not progress,
            desc="embedding images",
            unit="batch",
        ):
            failed = {i for i, a in enumerate(prepared) if isinstance(a, Exception)}
            failures += [(start + i, prepared[i]) for i in sorted(failed)]
            good = [i for i in range(len(prepared)) if i not in failed]
            if not good:
                continue
            pixels = normalize_batch(
                [prepared[i] for i in good],
                handle.image_config,
                handle.device,
                handle.dtype,
            )
            features = image_features(handle.model, pixels)
            out[[start + i for i in good]] = _to_numpy(features, normalize)
    if failures:
        report_failures(failures, len(rows))
    return out, failures


def report_failures(failures, n_rows):
    """One summary warning for rows that failed; raise if every row failed."""
    if len(failures) == n_rows:
        raise ImageInputError(
            f"all {n_rows} images failed to load; the first: {failures[0][1]}"
        ) from failures[0][1]
    kinds = {}
    for _, error in failures:
        name = type(error.__cause__ or error).__name__
        kinds[name] = kinds.get(name, 0) + 1
    summary = ", ".join(f"{count} {name}" for name, count in sorted(kinds.items()))
    warnings.warn(
        f"{len(failures)} of {n_rows} images could not be read and gave NaN rows "
        f"({summary}); the first: {failures[0][1]}",
        InputErrorWarning,
        stacklevel=3,
    )


def failure_records(failures, rows, index=None):
    """One dict per row that failed under ``on_error="nan"``, for ``input_errors_``.

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
