"""Embedding caches: an optional one on disk, and a memo of text embeddings.

An embedding is a pure function of the model's weights, the preprocessing, the
``normalize`` flag and the input's content, so a cache keyed by exactly those
can never return a stale row:

- the **namespace** hashes the weights themselves (not where they came from:
  fine-tuned weights never collide with their base, and the same weights
  loaded from two places share entries), the model config, the image
  preprocessing or the tokenizer, ``normalize`` and the stored dtype;
- the **key** hashes the input's content: a file's bytes (not its path),
  encoded bytes, an array's dtype, shape and buffer, a PIL image's RGB pixels,
  a text's UTF-8. A file is read once: the bytes hashed for its key are the
  bytes decoded and embedded, so a file replaced meanwhile cannot store one
  image's embedding under another's key.

:class:`EmbeddingCache` stores one small ``.npy`` file per entry under
``<cache_dir>/<kind>-<namespace>/<2 hex digits>/<key>.npy``. One file per entry
needs no lock and no index: a writer writes a temporary file in the same folder
and renames it into place (the package's one atomic write), so readers see a whole
entry or none; concurrent writers of one entry write the same value and the
last rename wins. Each entry carries a checksum of its key and values, and is
returned only if that checksum matches and its values are finite (and of unit
norm where normalised): a missing, truncated, foreign or overwritten entry is
a miss, recomputed and rewritten. It works the same for threads, processes
and machines sharing a file system (where SQLite's write-ahead log does not
work: it needs shared memory), at the price of one small file per entry.

The text memo keeps recent text embeddings in this process, keyed by the loaded
model, a signature of its weights (which changes with in-place edits) and the
text, so that refitting a zero-shot classifier with the same
prompts (every fold of a grid search over templates) does not encode them again.
"""

import hashlib
import io
import json
import os
import threading
import warnings
import weakref
from collections import Counter, OrderedDict, defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sklearn_clip._encoding.content_keys import keyed_row
from sklearn_clip._encoding.images import FileBytes, read_image_file
from sklearn_clip._encoding.tokens import tokenizer_fingerprint
from sklearn_clip._files import replaced_atomically
from sklearn_clip._options import CACHE_DTYPES
from sklearn_clip.exceptions import CacheEntryWarning

# 2: entries carry a checksum; 3: the checksum covers the entry's namespace.
FORMAT_VERSION = 3


# -- the on-disk cache -----------------------------------------------------------


class EmbeddingCache:
    """Embeddings stored on disk, one ``.npy`` file per entry.

    Parameters
    ----------
    directory : str or os.PathLike
        Where entries live; created on first write. Safe to share between
        threads, processes and machines.
    dtype : {"float32", "float16"}, default="float32"
        How entries are stored. With ``"float16"`` every output of a call
        that uses the cache is rounded to float16 (then returned as float32),
        so a first and a second call give identical results.
    """

    def __init__(self, directory, dtype="float32"):
        if dtype not in CACHE_DTYPES:
            raise ValueError(
                f"cache_dtype must be one of {CACHE_DTYPES}; got {dtype!r}"
            )
        self.directory = Path(directory)
        check_folder(self.directory)
        self.dtype = np.dtype(dtype)
        self._warned = False

    def namespace(self, handle, *, kind, normalize):
        """The folder of one model, preprocessing, normalisation and dtype."""
        described = {
            "format": FORMAT_VERSION,
            "kind": kind,
            "model": handle.run_fingerprint,
            "normalize": bool(normalize),
            "dtype": self.dtype.name,
            # The fingerprint hashes the weights' bytes, which differ between
            # precisions already; naming the precision makes the folder say so.
            "precision": handle.precision_name,
            "dim": handle.embedding_dim,
        }
        if kind == "image":
            described["preprocessing"] = asdict(handle.image_config)
        else:
            described["tokenizer"] = tokenizer_fingerprint(handle)
        text = json.dumps(described, sort_keys=True, default=str)
        folder = (
            self.directory / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"
        )
        readme = folder / "namespace.json"
        if not readme.exists():
            source = handle.source if handle.source is not None else "in-memory weights"
            self._write_bytes(
                readme,
                json.dumps(
                    {**described, "source": str(source)}, indent=2, default=str
                ).encode(),
            )
        return folder

    def _path(self, folder, key):
        return folder / key[:2] / f"{key}.npy"

    def _entry_dtype(self, dim):
        return np.dtype([("vector", self.dtype, (dim,)), ("checksum", np.uint8, 16)])

    def lookup(self, folder, key, dim, *, unit_norm=False):
        """``(vector, damaged)``: the stored vector, or None and why.

        An entry is returned only if it is whole and verified: the right shape
        and dtype, a checksum over its key and values that matches, finite
        values, and a unit norm where the namespace is normalised
        (``unit_norm``). Any other entry (truncated, foreign, overwritten, a
        special file) is ``(None, True)``; a missing one ``(None, False)``.
        """
        path = self._path(folder, key)
        entry_dtype = self._entry_dtype(dim)
        try:
            # Bounded, regular files only: an entry cannot hang or flood a read.
            data = read_image_file(path, limit=_NPY_HEADER_BYTES + entry_dtype.itemsize)
            entry = np.load(io.BytesIO(data), allow_pickle=False)
        except FileNotFoundError:
            return None, False
        except (OSError, ValueError, EOFError):
            return None, True
        if entry.shape != () or entry.dtype != entry_dtype:
            return None, True
        vector = entry["vector"].copy()
        if not np.array_equal(entry["checksum"], _checksum(folder, key, vector)):
            return None, True
        if not plausible(vector, unit_norm):
            return None, True
        return vector, False

    def read(self, folder, key, dim, *, unit_norm=False):
        """The stored vector, or None for a missing, damaged or foreign entry."""
        return self.lookup(folder, key, dim, unit_norm=unit_norm)[0]

    def write(self, folder, key, vector):
        """Store one vector atomically; a cache that cannot be written warns once."""
        vector = np.asarray(vector, dtype=self.dtype)
        entry = np.zeros((), self._entry_dtype(len(vector)))
        entry["vector"] = vector
        entry["checksum"] = _checksum(folder, key, vector)
        self._write_bytes(self._path(folder, key), _npy_bytes(entry))

    def _write_bytes(self, path, data):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Not flushed to disk: a torn entry fails its checksum and is a miss.
            with replaced_atomically(path, durable=False) as temporary:
                Path(temporary).write_bytes(data)
        except OSError as exc:
            # The cache only saves time: failing to write it must not fail
            # the transform (a read-only or full disk, say).
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"could not write to the embedding cache in "
                    f"{str(self.directory)!r} ({type(exc).__name__}: {exc}); "
                    "continuing without storing.",
                    UserWarning,
                    stacklevel=2,
                )

    def __repr__(self):
        return f"EmbeddingCache({str(self.directory)!r}, dtype={self.dtype.name!r})"


def check_folder(directory):
    """Refuse a cache folder that is a file, or lies inside one.

    Each entry's read would fail and be counted as damaged, which would hide
    the one mistake behind a warning about the entries.
    """
    for path in (directory, *directory.parents):
        if path.is_dir():
            return
        if path.exists():
            inside = "" if path == directory else f" lies inside {str(path)!r}, which"
            raise NotADirectoryError(
                f"cache_dir {str(directory)!r}{inside} is a file, not a folder. "
                "Give the path of a folder (it is created if needed) or of "
                "nothing yet."
            )


# Room for an .npy header: numpy pads it to a multiple of 64 bytes, and an
# entry's (one structured dtype) takes well under this.
_NPY_HEADER_BYTES = 4096

# How far from 1 the norm of a stored normalised embedding may be (float16
# entries round each value to about 1e-3 relative).
_NORM_TOLERANCE = 1e-2


def _checksum(folder, key, vector):
    # Over the namespace and the key as well as the values: an entry copied
    # from another model's folder, or renamed to another key, fails too.
    where = f"{Path(folder).name}/{key}".encode()
    data = where + np.ascontiguousarray(vector).tobytes()
    return np.frombuffer(hashlib.blake2b(data, digest_size=16).digest(), np.uint8)


def plausible(vector, unit_norm):
    """Whether a vector may be (or be read as) an entry: finite, unit norm if asked."""
    if not np.isfinite(vector).all():
        return False
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    return not unit_norm or abs(norm - 1.0) <= _NORM_TOLERANCE


def _npy_bytes(vector):
    buffer = io.BytesIO()
    np.save(buffer, vector, allow_pickle=False)
    return buffer.getvalue()


def make_cache(cache_dir, cache_dtype="float32"):
    """An :class:`EmbeddingCache`, or None when ``cache_dir`` is None."""
    return None if cache_dir is None else EmbeddingCache(cache_dir, cache_dtype)


# Bytes of files read for their keys and held until they are encoded: with the
# number of rows, this bounds the memory a chunk of misses holds.
CHUNK_BYTES = 256 << 20


def encode_through_cache(
    cache,
    handle,
    rows,
    out,
    encode,
    *,
    kind,
    normalize,
    positions=None,
    chunk=2048,
    chunk_bytes=CHUNK_BYTES,
):
    """Fill ``out[positions]``: rows the cache holds are read, the rest encoded.

    ``encode(missing, items)`` must fill ``out[missing]`` (NaN for rows it
    could not read) from ``items[p]``, what :func:`keyed_row` says to encode
    for row ``p``: for a file, the very bytes its key was computed from. Those
    rows are then stored, if finite (and of unit norm when normalised). Misses
    are encoded ``chunk`` at a time, or sooner once the file bytes they hold
    reach ``chunk_bytes``, so memory and the wait before the first batch stay
    bounded. A damaged entry is a miss and gets rewritten; one
    :class:`CacheEntryWarning` per call counts them. With a float16 cache
    every row of ``out`` is rounded to float16, so that a first and a second
    call agree exactly. Returns the number of rows read from the cache.
    """
    folder = cache.namespace(handle, kind=kind, normalize=normalize)
    positions = range(len(rows)) if positions is None else positions
    dim = out.shape[1]
    hits = damaged = held = 0
    keys, items = {}, {}
    for position in positions:
        key, item = keyed_row(rows[position], kind)
        if key is not None:
            vector, bad = cache.lookup(folder, key, dim, unit_norm=normalize)
            if vector is not None:
                out[position] = vector
                hits += 1
                continue
            damaged += bad
        keys[position], items[position] = key, item
        held += len(item) if isinstance(item, FileBytes) else 0
        if len(items) >= chunk or held >= chunk_bytes:
            _encode_and_store(cache, folder, encode, keys, items, out, normalize)
            keys, items, held = {}, {}, 0
    if items:
        _encode_and_store(cache, folder, encode, keys, items, out, normalize)
    with _counters_lock:
        counters[kind].update(hits=hits, misses=len(positions) - hits)
    if damaged:
        warnings.warn(
            f"{damaged} damaged entries in the embedding cache {str(folder)!r} "
            "(a checksum that does not match, a wrong shape, non-finite values "
            "or a wrong norm) were treated as misses: recomputed and rewritten.",
            CacheEntryWarning,
            stacklevel=3,
        )
    if cache.dtype != np.float32:
        out[...] = out.astype(cache.dtype)
    return hits


def _encode_and_store(cache, folder, encode, keys, items, out, normalize):
    missing = list(items)
    encode(missing, items)
    for position in missing:
        key = keys[position]
        if key is not None and plausible(out[position], normalize):
            cache.write(folder, key, out[position])


# What the on-disk caches of this process did, per kind ("image", "text"): rows
# found ("hits") and not found ("misses"), which are the rows handed to the
# encoder: decoded and embedded.
counters = defaultdict(Counter)
_counters_lock = threading.Lock()


# -- the in-process memo of text embeddings -------------------------------------


def _memo_size():
    value = os.environ.get("SKLEARN_CLIP_TEXT_CACHE_SIZE", "32768")
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            "SKLEARN_CLIP_TEXT_CACHE_SIZE must be a whole number of texts to "
            f"remember (0 turns the memo off; default 32768); got {value!r}"
        ) from None


class TextMemo:
    """Recently encoded texts, keyed by (model, normalize, text); LRU-bounded.

    A model is identified by its handle and the signature of its weights, so
    texts encoded before the weights changed are never returned after.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entries = OrderedDict()
        self._tokens = weakref.WeakKeyDictionary()
        self._next_token = 0

    def _model_token(self, handle):
        signature = handle._weights_signature()
        with self._lock:
            known = self._tokens.get(handle)
            if known is None or known[0] != signature:
                self._next_token += 1
                known = (signature, self._next_token)
                self._tokens[handle] = known
            return known[1]

    def lookup(self, handle, texts, normalize):
        """``(model token, {i: vector})`` for the texts held."""
        token = self._model_token(handle)
        found = {}
        with self._lock:
            for i, text in enumerate(texts):
                vector = self._entries.get((token, normalize, text))
                if vector is not None:
                    self._entries.move_to_end((token, normalize, text))
                    found[i] = vector
        return token, found

    def store(self, token, texts, vectors, normalize):
        limit = _memo_size()
        if limit <= 0:
            return
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._entries[(token, normalize, text)] = np.array(vector, copy=True)
                self._entries.move_to_end((token, normalize, text))
            while len(self._entries) > limit:
                self._entries.popitem(last=False)

    def clear(self):
        with self._lock:
            self._entries.clear()

    def __len__(self):
        return len(self._entries)


text_memo = TextMemo()
