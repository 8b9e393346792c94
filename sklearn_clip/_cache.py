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
  a text's UTF-8.

:class:`EmbeddingCache` stores one small ``.npy`` file per entry under
``<cache_dir>/<kind>-<namespace>/<2 hex digits>/<key>.npy``. One file per entry
needs no lock and no index: a writer writes a temporary file in the same folder
and renames it into place (``os.replace`` is atomic), so readers see a whole
entry or none; concurrent writers of one entry write the same value and the
last rename wins; a reader that finds a missing, truncated or foreign file
treats it as a miss and recomputes. It works the same for threads, processes
and machines sharing a file system (where SQLite's write-ahead log does not
work: it needs shared memory), at the price of one small file per entry.

The text memo keeps recent text embeddings in this process, keyed by the loaded
model and the text, so that refitting a zero-shot classifier with the same
prompts (every fold of a grid search over templates) does not encode them again.
"""

import hashlib
import json
import os
import tempfile
import threading
import warnings
import weakref
from collections import OrderedDict
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sklearn_clip._options import CACHE_DTYPES

FORMAT_VERSION = 1


# -- what the model is ---------------------------------------------------------


def weights_signature(model):
    """A cheap token that changes when any parameter is modified or replaced.

    In-place updates (an optimizer step, ``load_state_dict``) bump a tensor's
    version counter; assigning new tensors changes their storage.
    """
    tensors = [*model.parameters(), *model.buffers()]
    return tuple((t.data_ptr(), getattr(t, "_version", 0)) for t in tensors)


_fingerprints = weakref.WeakKeyDictionary()
_fingerprint_lock = threading.Lock()


def model_fingerprint(handle):
    """A hash of the model's class, config and every weight's bytes (hex).

    Computed once per handle (about a second per GB of weights) and again only
    if the weights change.
    """
    signature = weights_signature(handle.model)
    with _fingerprint_lock:
        known = _fingerprints.get(handle)
        if known is not None and known[0] == signature:
            return known[1]
    model = handle.model
    digest = hashlib.sha256()
    config = _stable_config(model.config.to_dict())
    digest.update(type(model).__name__.encode())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().data)
    fingerprint = digest.hexdigest()
    with _fingerprint_lock:
        _fingerprints[handle] = (signature, fingerprint)
    return fingerprint


# Config entries that say where or how a model was loaded, not what it computes
# (the weights' dtype is in the weights' bytes).
_UNSTABLE_CONFIG_KEYS = {
    "transformers_version",
    "dtype",
    "torch_dtype",
    "architectures",
}


def _stable_config(config):
    return {
        key: _stable_config(value) if isinstance(value, dict) else value
        for key, value in config.items()
        if not str(key).startswith("_") and key not in _UNSTABLE_CONFIG_KEYS
    }


def tokenizer_fingerprint(handle):
    """A hash of how the handle turns text into token ids."""
    tokenizer = handle.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        described = backend.to_str()
    else:
        described = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = f"{type(tokenizer).__name__}|{handle.context_length}|"
    extra += f"{handle.pad_to_max_length}|{handle.pad_token_id}"
    return hashlib.sha256((extra + described).encode()).hexdigest()


# -- what an input is ----------------------------------------------------------


def _digest(kind, *parts):
    digest = hashlib.sha256(kind)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:32]


def content_key(item, kind):
    """The hex key of one input's content, or None when it has none to hash.

    Rows without a key (a missing file, None, an unsupported type) are never
    cached: they go to the encoder, which reports them as usual.
    """
    if kind == "text":
        if not isinstance(item, str):
            return None
        return _digest(b"text\0", item.encode("utf-8", "surrogatepass"))
    if isinstance(item, str | os.PathLike):
        try:
            with open(item, "rb") as handle:
                return _digest(b"bytes\0", handle.read())
        except OSError:
            return None
    if isinstance(item, bytes | bytearray):
        return _digest(b"bytes\0", bytes(item))
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "biuf":
            return None
        header = f"{item.dtype.str}:{item.shape}".encode()
        return _digest(b"array\0", header, np.ascontiguousarray(item).data)
    if isinstance(item, Image.Image):
        from sklearn_clip._images import ROW_ERRORS, to_rgb

        # The RGB pixels are what the model sees of a PIL image, whatever its
        # mode, palette, transparency or orientation tag.
        try:
            rgb = to_rgb(item)
        except ROW_ERRORS:
            return None
        return _digest(b"pil\0", f"{rgb.size}".encode(), rgb.tobytes())
    return None


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
        self.dtype = np.dtype(dtype)
        self._warned = False

    def namespace(self, handle, *, kind, normalize):
        """The folder of one model, preprocessing, normalisation and dtype."""
        described = {
            "format": FORMAT_VERSION,
            "kind": kind,
            "model": model_fingerprint(handle),
            "normalize": bool(normalize),
            "dtype": self.dtype.name,
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

    def read(self, folder, key, dim):
        """The stored vector, or None for a missing, partial or foreign entry."""
        try:
            with open(self._path(folder, key), "rb") as handle:
                vector = np.load(handle, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if vector.shape != (dim,) or vector.dtype != self.dtype:
            return None
        return vector

    def write(self, folder, key, vector):
        """Store one vector atomically; a cache that cannot be written warns once."""
        buffer = _npy_bytes(np.asarray(vector, dtype=self.dtype))
        self._write_bytes(self._path(folder, key), buffer)

    def _write_bytes(self, path, data):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(temporary, path)
            except BaseException:
                with suppress(OSError):
                    os.unlink(temporary)
                raise
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


def _npy_bytes(vector):
    import io

    buffer = io.BytesIO()
    np.save(buffer, vector, allow_pickle=False)
    return buffer.getvalue()


def make_cache(cache_dir, cache_dtype="float32"):
    """An :class:`EmbeddingCache`, or None when ``cache_dir`` is None."""
    return None if cache_dir is None else EmbeddingCache(cache_dir, cache_dtype)


def encode_through_cache(
    cache, handle, rows, out, encode, *, kind, normalize, positions=None, chunk=2048
):
    """Fill ``out[positions]``: rows the cache holds are read, the rest encoded.

    ``encode(missing)`` must fill ``out[missing]`` (NaN for rows it could not
    read); those rows are then stored. Rows are looked up and encoded
    ``chunk`` at a time, so the keys held at once, and the wait before the
    first batch, stay bounded. With a float16 cache every row of ``out`` is
    rounded to float16, so that a first and a second call agree exactly.
    Returns the number of rows read from the cache.
    """
    folder = cache.namespace(handle, kind=kind, normalize=normalize)
    positions = range(len(rows)) if positions is None else positions
    dim = out.shape[1]
    hits = 0
    for low in range(0, len(positions), chunk):
        chosen = positions[low : low + chunk]
        keys = {p: content_key(rows[p], kind) for p in chosen}
        missing = []
        for position, key in keys.items():
            vector = None if key is None else cache.read(folder, key, dim)
            if vector is None:
                missing.append(position)
            else:
                out[position] = vector
        hits += len(chosen) - len(missing)
        if missing:
            encode(missing)
        for position in missing:
            if keys[position] is not None and np.isfinite(out[position]).all():
                cache.write(folder, keys[position], out[position])
    if cache.dtype != np.float32:
        out[...] = out.astype(cache.dtype)
    return hits


# -- the in-process memo of text embeddings -------------------------------------


def _memo_size():
    return int(os.environ.get("SKLEARN_CLIP_TEXT_CACHE_SIZE", "32768"))


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
        signature = weights_signature(handle.model)
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
