"""Training pairs decoded once into a file on disk and read batch by batch.

A fine-tuning run visits every image once an epoch, for many epochs; decoding
it again each time would cost more than the model's forward pass on a small
model. So each image is decoded once, at the model's resolution, and appended
to a ``uint8`` file (``height * width * 3`` bytes a pair: 150 kB at 224
pixels). Batches are read back with positioned reads, so memory holds a few
batches, not the dataset, and the file is deleted with the data.

Pairs that cannot be used (an unreadable image, a missing caption) either raise,
naming the row and the path, or under ``on_error="skip"`` are left out and
reported (in ``input_errors_`` and the fit's warning) in the records that an
:class:`~sklearn_clip.exceptions.InputErrorWarning` carries for bad images.
"""

import hashlib
import math
import os
import tempfile
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np

from sklearn_clip._encoding.encode import failure_records, iter_prepared_batches
from sklearn_clip.exceptions import InputErrorWarning


class PixelStore:
    """Decoded images of one fixed layout, in a file, read by row.

    A row is what the model's preprocessing makes of one image: an
    ``(height, width, 3)`` ``uint8`` array for the fast path, or a record of
    the family's own processor outputs (e.g. SigLIP 2's patches and masks);
    the layout is taken from the first row. The file lives in ``directory``
    (a new temporary file by default) and is removed when the store is
    garbage collected.
    """

    def __init__(self, directory=None):
        self.item = None  # numpy dtype of one row, set by the first append
        handle, self.path = tempfile.mkstemp(
            prefix="sklearn-clip-pairs-", suffix=".bin", dir=directory
        )
        self._file = os.fdopen(handle, "r+b", buffering=0)
        self.n_rows = 0
        self._digest = hashlib.blake2b(digest_size=16)
        self._finalizer = weakref.finalize(self, _remove, self._file, self.path)

    @property
    def row_bytes(self):
        return self.item.itemsize

    def append(self, arrays):
        """Write decoded rows (each of the first row's layout) after the last."""
        for array in arrays:
            array = np.array(array, copy=None, order="C")  # keeps 0-d records 0-d
            item = np.dtype((array.dtype, array.shape)) if array.shape else array.dtype
            if self.item is None:
                self.item = item
            elif item != self.item:
                raise ValueError(
                    f"decoded images differ in layout ({item} after {self.item}); "
                    "the model's preprocessing must give every image one size"
                )
            data = array.reshape(-1).view(np.uint8).data
            written = 0
            while written < len(data):  # a raw write may be short
                written += self._file.write(data[written:])
            self._digest.update(data)
            self.n_rows += 1

    def digest(self):
        """A hash of every row written so far, in order."""
        return self._digest.hexdigest()

    def read(self, rows):
        """The rows at ``rows``, stacked: ``(len(rows), ...)``."""
        out = np.empty(len(rows), self.item)
        flat = out.reshape(len(rows), -1).view(np.uint8).reshape(len(rows), -1)
        fd = self._file.fileno()
        for i, row in enumerate(rows):
            # A positioned read needs no shared file offset, so threads and
            # the decoder can use the same file at once.
            n_read = os.preadv(fd, [flat[i]], int(row) * self.row_bytes)
            if n_read != self.row_bytes:
                raise OSError(f"the pairs file {self.path} is truncated at row {row}")
        return out

    def close(self):
        self._finalizer()


def _remove(file, path):
    file.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@dataclass
class PairedData:
    """Training pairs: rows of a :class:`PixelStore` and their caption ids."""

    store: PixelStore
    rows: np.ndarray  # (n,) rows of `store`
    caption_ids: np.ndarray  # (n,) int64, index into `captions`
    captions: list  # the distinct captions
    # Token ids and mask of every caption, set when training first needs them.
    tokens: tuple | None = field(default=None, repr=False, compare=False)

    def __len__(self):
        return len(self.caption_ids)

    def pixels(self, positions):
        """The decoded images of the pairs at ``positions``, stacked."""
        return self.store.read(self.rows[np.asarray(positions)])

    def subset(self, positions):
        """The pairs at ``positions``, with captions renumbered to those present."""
        positions = np.asarray(positions)
        distinct, ids = np.unique(self.caption_ids[positions], return_inverse=True)
        return PairedData(
            self.store,
            self.rows[positions],
            ids.reshape(-1).astype(np.int64),
            [self.captions[i] for i in distinct],
        )

    def fingerprint(self):
        """A short hash of the data, to refuse resuming a run on other data."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(self.store.digest().encode())
        digest.update(np.ascontiguousarray(self.rows, dtype=np.int64).tobytes())
        digest.update(self.caption_ids.tobytes())
        digest.update("\0".join(self.captions).encode())
        return digest.hexdigest()


def prepare_pairs(
    handle, rows, index, captions, *, on_error="raise", directory=None, n_workers=None
):
    """Decode every image once (threaded) into a file; number the captions.

    ``captions`` may hold None for a missing caption (those pairs are skipped
    under ``on_error="skip"``). Returns ``(data, errors)``: the usable pairs,
    and one record per pair left out (empty under ``on_error="raise"``).
    """
    missing = [p for p, caption in enumerate(captions) if caption is None]
    if missing and on_error == "raise":
        raise ValueError(
            f"the caption of row {missing[0]} ({rows[missing[0]]!r}) is missing; "
            "fill it, drop the row, or fit with on_error='skip'"
        )
    store = PixelStore(directory)
    wanted = np.setdiff1d(np.arange(len(rows)), missing)
    kept, failures = _decode_into(
        store, handle, rows, index, wanted, on_error=on_error, n_workers=n_workers
    )
    errors = _skipped_records(failures, missing, rows, index)
    if errors:
        _warn_skipped(errors, len(rows))
    if len(kept) < 2:
        raise ValueError(
            f"contrastive fine-tuning needs at least 2 usable pairs; {len(kept)} "
            f"of {len(rows)} are left after skipping unusable ones"
        )
    chosen = np.asarray([captions[p] for p in kept], dtype=object)
    distinct, ids = np.unique(chosen, return_inverse=True)
    data = PairedData(
        store,
        np.arange(len(kept)),
        ids.reshape(-1).astype(np.int64),
        [str(c) for c in distinct],
    )
    return data, errors


def _decode_into(store, handle, rows, index, wanted, *, on_error, n_workers):
    """Append the ``wanted`` rows' pixels to ``store``: ``(kept, failures)``."""
    failures, kept = [], []
    batches = iter_prepared_batches(
        rows,
        index,
        handle.image_config,
        batch_size=64,
        # "nan" hands back each row's error instead of raising it.
        on_error="raise" if on_error == "raise" else "nan",
        n_workers=n_workers,
        positions=wanted,
    )
    for start, arrays in batches:
        for position, array in zip(wanted[start : start + len(arrays)], arrays):
            if isinstance(array, Exception):
                failures.append((int(position), array))
            else:
                store.append([array])
                kept.append(int(position))
    return kept, failures


def _skipped_records(failures, missing, rows, index):
    records = failure_records(failures, rows, index)
    for position in missing:
        error = ValueError("the caption is missing")
        records += failure_records([(position, error)], rows, index)
    return sorted(records, key=lambda record: record["position"])


def _warn_skipped(errors, n_rows):
    first = errors[0]
    warning = InputErrorWarning(
        f"{len(errors)} of {n_rows} pairs could not be used and were left out of "
        f"training (see input_errors_); the first: row {first['position']}, "
        f"{first['source']}: {first['error']}: {first['message']}",
        errors,
    )
    warnings.warn(warning, stacklevel=4)


def split_validation(data, fraction, seed):
    """Hold out ``fraction`` of the pairs; no split when either side is tiny."""
    if fraction is None:
        return data, None
    n_val = math.ceil(fraction * len(data))
    if n_val < 2 or len(data) - n_val < 2:
        warnings.warn(
            f"validation_fraction={fraction} of {len(data)} pairs leaves too few "
            "pairs on one side (at least 2 each are needed); training on all "
            "pairs without validation.",
            UserWarning,
            stacklevel=3,
        )
        return data, None
    order = np.random.default_rng([seed, 1]).permutation(len(data))
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))
