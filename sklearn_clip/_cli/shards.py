"""Embeddings of a large input list, streamed into parquet shards of fixed size.

Shard ``i`` holds rows ``i * shard_size`` to ``(i + 1) * shard_size`` of the
input list, with the columns ``path`` (the input), ``status`` (``"ok"`` or
``"error"``), ``error`` (what went wrong, else null) and ``embedding`` (a
fixed-size list of float32; NaN for a row that failed). Memory is bounded by
one shard, whatever the number of rows.

Each shard is written to a temporary file and renamed into place, so a shard
file exists only once complete: an interrupted run (Ctrl-C, a crash, SIGKILL)
leaves complete shards only, and the same command run again skips them and
embeds the rest. A manifest records what the shards are of (the input list's
digest, the shard size, the model), so that a folder of another run's shards
is refused rather than silently mixed in.
"""

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from sklearn_clip._files import replaced_atomically
from sklearn_clip.exceptions import ImageInputError, InputErrorWarning

MANIFEST = "manifest.json"
STATUS_OK, STATUS_ERROR = "ok", "error"


def shard_path(output, number):
    """Where shard ``number`` lives under ``output``."""
    return Path(output) / f"shard-{number:05d}.parquet"


def rows_digest(rows):
    """A digest of the input list: a rerun must see the same rows in the same order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(str(row).encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def check_manifest(output, description):
    """Write ``description`` as the folder's manifest, or check it matches."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    path = output / MANIFEST
    if path.exists():
        held = json.loads(path.read_text())
        if held != description:
            changed = sorted(k for k in description if held.get(k) != description[k])
            raise ValueError(
                f"{str(output)!r} holds shards of another run (they differ in "
                f"{', '.join(changed)}); give a new --output folder, or delete "
                "this one to start over"
            )
        return
    with replaced_atomically(path) as tmp:
        Path(tmp).write_text(json.dumps(description))


def remove_partial_files(output):
    """Delete temporary files that a killed run left behind."""
    for tmp in Path(output).glob(".shard-*.tmp"):
        tmp.unlink(missing_ok=True)


def shard_table(rows, embeddings, errors):
    """The pyarrow table of one shard; ``errors`` maps offsets to messages."""
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(embeddings, np.float32).reshape(-1))
    status = [STATUS_ERROR if i in errors else STATUS_OK for i in range(len(rows))]
    return pa.table(
        {
            "path": pa.array([str(row) for row in rows], pa.string()),
            "status": pa.array(status, pa.string()),
            "error": pa.array([errors.get(i) for i in range(len(rows))], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]),
        }
    )


def write_shard(path, table):
    import pyarrow.parquet as pq

    with replaced_atomically(path) as tmp:
        pq.write_table(table, tmp)


def encode_chunk(embedder, rows):
    """``(embeddings, {offset: message})`` of ``rows`` with a fitted embedder.

    Under ``on_error="nan"`` a row that cannot be read is recorded, not
    raised: the transform's :class:`~sklearn_clip.exceptions.InputErrorWarning`
    lists it. A chunk in which every row fails (which the estimators refuse,
    as it usually means a wrong path) is retried row by row to name each.
    """
    try:
        embeddings, records = _transform(embedder, rows)
    except ImageInputError:
        if embedder.on_error != "nan" or len(rows) == 1:
            raise
        return _encode_one_by_one(embedder, rows)
    errors = {}
    for record in records:
        errors[record["position"]] = f"{record['error']}: {record['message']}"
    return embeddings, errors


def _transform(embedder, rows):
    """``embedder.transform(rows)`` and the rows its InputErrorWarning lists.

    That warning is taken in, not shown (the rows go into the shard); other
    warnings are shown as usual.
    """
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Every call's warning, even one repeating an earlier message:
            # each carries its own chunk's rows.
            warnings.simplefilter("always", InputErrorWarning)
            embeddings = embedder.transform(rows)
    finally:
        records = []
        for warning in caught:
            if issubclass(warning.category, InputErrorWarning):
                records.extend(warning.message.errors)
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
    return embeddings, records


def _encode_one_by_one(embedder, rows):
    embeddings = np.full((len(rows), embedder.embedding_dim_), np.nan, np.float32)
    errors = {}
    for offset, row in enumerate(rows):
        try:
            embeddings[offset] = embedder.transform([row])[0]
        except ImageInputError as error:
            cause = error.__cause__ or error
            errors[offset] = f"{type(cause).__name__}: {cause}"
    return embeddings, errors


def embed_to_shards(embedder, rows, output, *, shard_size, chunk_size, bar=None):
    """Embed ``rows`` into the shards under ``output`` that do not exist yet.

    ``embedder`` is a fitted :class:`~sklearn_clip.CLIPEmbeddingTransformer`;
    each shard is encoded ``chunk_size`` rows at a time (so that ``bar``, a
    tqdm bar, moves), then written. Returns ``(rows embedded now, rows that
    failed now, shards skipped)``.
    """
    remove_partial_files(output)
    embedded = failed = skipped = 0
    for number, start in enumerate(range(0, len(rows), shard_size)):
        chosen = rows[start : start + shard_size]
        path = shard_path(output, number)
        if path.exists():
            skipped += 1
            continue
        parts, errors = [], {}
        for offset in range(0, len(chosen), chunk_size):
            chunk = chosen[offset : offset + chunk_size]
            embeddings, chunk_errors = encode_chunk(embedder, chunk)
            parts.append(embeddings)
            errors.update({offset + i: m for i, m in chunk_errors.items()})
            if bar is not None:
                bar.update(len(chunk))
        write_shard(path, shard_table(chosen, np.concatenate(parts), errors))
        embedded += len(chosen)
        failed += len(errors)
    return embedded, failed, skipped


def read_shards(output):
    """Every shard under ``output``, in order, as one pandas DataFrame."""
    import pandas as pd

    paths = sorted(Path(output).glob("shard-*.parquet"))
    if not paths:
        return pd.DataFrame(columns=["path", "status", "error", "embedding"])
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
