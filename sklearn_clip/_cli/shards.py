"""Embeddings of a large input list, streamed into parquet shards of fixed size.

Shard ``i`` holds rows ``i * shard_size`` to ``(i + 1) * shard_size`` of the
input list, with the columns ``path`` (the input), ``status`` (``"ok"`` or
``"error"``), ``error`` (what went wrong, else null), ``embedding`` (a
fixed-size list of float32; NaN for a row that failed), and ``size`` and
``mtime_ns`` (the file's size and modification time when it was read; null
for texts and missing files). Memory is bounded by one shard, whatever the
number of rows. The folder reads as one table:
``pandas.read_parquet(folder)``.

Each shard is written to a temporary file and renamed into place, so a shard
file exists only once complete: an interrupted run (Ctrl-C, a crash, SIGKILL)
leaves complete shards only, and the same command run again skips them and
embeds the rest. A manifest (``_manifest.json``, a name parquet readers skip)
records what the shards are of (the input list's digest, the shard size, the
model's path and the fingerprint of its weights, the precision), so that a
folder of another run's shards, or of other weights saved at the same path,
is refused rather than silently mixed in. A rerun also embeds again the rows
of files whose size or modification time changed since their shard was
written, and rewrites those shards.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from sklearn_clip._files import check_replaceable, replaced_atomically

MANIFEST = "_manifest.json"
# The name before 0.2, still read: a folder written then resumes.
LEGACY_MANIFEST = "manifest.json"
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


def check_output_folder(output, *, inputs=()):
    """Refuse a shard folder by the package's output rule, before any work.

    The folder may be new, empty, or one of shards (it holds the manifest,
    of either name; whether they are this run's is :func:`check_manifest`'s
    question); never the current directory, nor a folder that overlaps one
    of ``inputs`` (the images folder, a folder inside it or holding it).
    See :func:`sklearn_clip._files.check_replaceable`.
    """
    return check_replaceable(
        output,
        overwrite=True,  # a folder of shards is resumed, not replaced
        inputs=inputs,
        recognise=_holds_shards,
        kind=f"a folder of sklearn-clip shards (it has no {MANIFEST})",
        option="--output",
    )


def _holds_shards(output):
    return any((Path(output) / name).is_file() for name in (MANIFEST, LEGACY_MANIFEST))


def check_manifest(output, description):
    """Write ``description`` as the folder's manifest, or check it matches.

    A manifest of the old name is checked on the entries it has (it predates
    the weights' fingerprint; its shards predate the files' stamps, so every
    row of them is embedded again) and replaced by one of the new name.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    path, legacy = output / MANIFEST, output / LEGACY_MANIFEST
    held = _read_manifest(path)
    if held is None and legacy.exists():
        held = {**description, **_read_manifest(legacy)}
    if held is not None:
        _refuse_another_run(output, held, description)
    if not path.exists():
        with replaced_atomically(path) as tmp:
            Path(tmp).write_text(json.dumps(description))
    # Parquet readers of the folder skip "_manifest.json" but not the old name.
    legacy.unlink(missing_ok=True)


def _refuse_another_run(output, held, description):
    changed = sorted(k for k in description if held.get(k) != description[k])
    if not changed:
        return
    why = ""
    if "model_fingerprint" in changed:
        why = "; the model's weights are not those the shards were made with"
    raise ValueError(
        f"{str(output)!r} holds shards of another run (they differ in "
        f"{', '.join(changed)}{why}); give a new --output folder, or delete "
        "this one to start over"
    )


def _read_manifest(path):
    return json.loads(path.read_text()) if path.exists() else None


def remove_partial_files(output):
    """Delete temporary files that a killed run left behind."""
    for tmp in Path(output).glob(".shard-*.tmp"):
        tmp.unlink(missing_ok=True)


def file_stamps(rows):
    """``(sizes, mtimes)`` of each row's file; None where a row has none."""
    sizes, mtimes = [], []
    for row in rows:
        try:
            info = os.stat(row)
        except (OSError, TypeError, ValueError):
            info = None
        sizes.append(None if info is None else info.st_size)
        mtimes.append(None if info is None else info.st_mtime_ns)
    return sizes, mtimes


def shard_table(rows, embeddings, errors, stamps=None):
    """The pyarrow table of one shard; ``errors`` maps offsets to messages,
    ``stamps`` are the rows' :func:`file_stamps` (None for texts)."""
    import pyarrow as pa

    sizes, mtimes = stamps or ([None] * len(rows), [None] * len(rows))
    flat = pa.array(np.ascontiguousarray(embeddings, np.float32).reshape(-1))
    status = [STATUS_ERROR if i in errors else STATUS_OK for i in range(len(rows))]
    return pa.table(
        {
            "path": pa.array([str(row) for row in rows], pa.string()),
            "status": pa.array(status, pa.string()),
            "error": pa.array([errors.get(i) for i in range(len(rows))], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]),
            "size": pa.array(sizes, pa.int64()),
            "mtime_ns": pa.array(mtimes, pa.int64()),
        }
    )


def write_shard(path, table):
    import pyarrow.parquet as pq

    with replaced_atomically(path) as tmp:
        pq.write_table(table, tmp)


def encode_chunk(embedder, rows):
    """``(embeddings, {offset: message})`` of ``rows`` with a fitted embedder.

    Under ``on_error="nan"`` a row that cannot be read is recorded in the
    shard, not raised, even when every row of the chunk fails: the shard
    names each, so the estimators' refusal of an all-failed call (which
    usually means a wrong folder) does not apply here.
    """
    embeddings, records = embedder._encode_rows(
        rows, modality=embedder.modality, report=False
    )
    errors = {r["position"]: f"{r['error']}: {r['message']}" for r in records}
    return embeddings, errors


def held_rows(path, stamps):
    """``(embeddings, errors, stale offsets)`` of the shard at ``path``.

    A row is stale when its file's size or modification time differ from
    those stamped when it was read, or when the shard has no stamps.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    embedding = table.column("embedding").combine_chunks()
    embeddings = embedding.flatten().to_numpy(zero_copy_only=False)
    embeddings = embeddings.reshape(len(table), -1).astype(np.float32)
    errors = dict(enumerate(table.column("error").to_pylist()))
    errors = {offset: m for offset, m in errors.items() if m is not None}
    if "size" not in table.column_names:
        return embeddings, errors, list(range(len(table)))
    held = zip(table.column("size").to_pylist(), table.column("mtime_ns").to_pylist())
    stale = [i for i, stamp in enumerate(held) if stamp != _stamp(stamps, i)]
    return embeddings, errors, stale


def _stamp(stamps, offset):
    # Texts (stamps None) have no file, and nothing to change under them.
    return (None, None) if stamps is None else (stamps[0][offset], stamps[1][offset])


def _encode_rows(embedder, rows, chunk_size, bar):
    """``(embeddings, errors)`` of ``rows``, ``chunk_size`` rows at a time."""
    parts, errors = [], {}
    for offset in range(0, len(rows), chunk_size):
        chunk = rows[offset : offset + chunk_size]
        embeddings, chunk_errors = encode_chunk(embedder, chunk)
        parts.append(embeddings)
        errors.update({offset + i: m for i, m in chunk_errors.items()})
        if bar is not None:
            bar.update(len(chunk))
    return np.concatenate(parts), errors


def embed_to_shards(embedder, rows, output, *, shard_size, chunk_size, bar=None):
    """Embed ``rows`` into the shards under ``output`` that are missing or stale.

    ``embedder`` is a fitted :class:`~sklearn_clip.CLIPEmbeddingTransformer`;
    each shard is encoded ``chunk_size`` rows at a time (so that ``bar``, a
    tqdm bar, moves), then written. A complete shard is kept, but for its rows
    whose files changed since (:func:`held_rows`): those are embedded again
    and the shard rewritten. Returns ``(rows embedded now, rows that failed
    now, shards skipped)``.
    """
    remove_partial_files(output)
    embedded = failed = skipped = 0
    for number, start in enumerate(range(0, len(rows), shard_size)):
        chosen = rows[start : start + shard_size]
        path = shard_path(output, number)
        # Stamped before reading: a file changed after this is seen next time.
        stamps = file_stamps(chosen) if embedder.modality == "image" else None
        if path.exists():
            embeddings, errors, todo = held_rows(path, stamps)
        else:
            embeddings, errors, todo = None, {}, list(range(len(chosen)))
        if not todo:
            skipped += 1
            continue
        new, new_errors = _encode_rows(
            embedder, [chosen[i] for i in todo], chunk_size, bar
        )
        if embeddings is None:
            embeddings = new
        embeddings[todo] = new
        for offset in todo:
            errors.pop(offset, None)
        errors.update({todo[i]: message for i, message in new_errors.items()})
        write_shard(path, shard_table(chosen, embeddings, errors, stamps))
        embedded += len(todo)
        failed += len(new_errors)
    return embedded, failed, skipped


def read_shards(output):
    """Every shard under ``output``, in order, as one pandas DataFrame."""
    import pandas as pd

    paths = sorted(Path(output).glob("shard-*.parquet"))
    if not paths:
        return pd.DataFrame(columns=["path", "status", "error", "embedding"])
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
