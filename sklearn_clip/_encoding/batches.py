"""Batches of rows through a model: the batch size, fixed or found while it runs.

With ``batch_size="auto"`` the batch grows on a GPU while throughput improves,
and an out-of-memory error halves it and retries the same rows.
"""

import time

from sklearn_clip._torch import torch_or_none

# batch_size="auto": the first and the largest batch, by device type and
# modality. On a GPU the batch doubles while images (or texts) per second grow
# by 5 % or more; on a CPU throughput is flat beyond a few dozen rows (see
# docs/performance.md), so the batch stays put.
AUTO_BATCH_SIZES = {
    ("image", "cuda"): (64, 1024),
    ("text", "cuda"): (256, 4096),
    ("image", "cpu"): (64, 64),
    ("text", "cpu"): (128, 128),
}


def _OUT_OF_MEMORY_ERRORS():  # noqa: N802 (named as the constant it stands for)
    # Only PyTorch runs out of device memory in a way worth a smaller batch.
    torch = torch_or_none()
    return (torch.OutOfMemoryError,) if torch is not None else ()


class BatchSizer:
    """The batch size of one encoding call: fixed, or found while it runs.

    Under ``"auto"`` the size starts at the first value of
    :data:`AUTO_BATCH_SIZES` for the device and doubles whenever a size ran at
    least 5 % more rows per second than the size before (timed on its second
    batch; up to the largest value), then settles on the faster one. An
    out-of-memory error halves it for the rest of the call, and the same rows
    are retried.
    """

    def __init__(self, batch_size, device, *, kind="image"):
        self.auto = isinstance(batch_size, str) and batch_size == "auto"
        if self.auto:
            default = AUTO_BATCH_SIZES[(kind, "cpu")]
            first, self.largest = AUTO_BATCH_SIZES.get((kind, device.type), default)
            self.size = first
        else:
            self.size = self.largest = int(batch_size)
        self.device = device
        self._growing = self.auto and self.size < self.largest
        self._rates, self._warmed = {}, set()

    def observe(self, n_rows, seconds):
        """Record a batch's time; maybe grow."""
        if not self._growing or n_rows < self.size:
            return
        # The first batch of a size pays for warm-up (kernel choice for the
        # new shapes, allocator growth): judge the size by its second batch.
        if self.size not in self._warmed:
            self._warmed.add(self.size)
            return
        rate = n_rows / max(seconds, 1e-9)
        before = self._rates.get(self.size // 2)
        self._rates[self.size] = rate
        if before is not None and rate < 1.05 * before:
            self.size //= 2
            self._growing = False
        elif 2 * self.size <= self.largest:
            self.size *= 2
        else:
            self._growing = False

    def shrink(self, n_rows):
        """After an out-of-memory error on ``n_rows``: halve, or say it cannot."""
        if not self.auto or n_rows <= 1:
            return False
        self.size = self.largest = max(1, n_rows // 2)
        self._growing = False
        return True

    def release_memory(self):
        if self.device.type == "cuda":
            torch_or_none().cuda.empty_cache()


def run_batches(items, forward, out, sizer, *, keep_partial=False, done=None):
    """Run ``forward`` over ``(position, payload)`` items, batch by batch.

    Each batch's rows go to ``out[positions]``. With ``keep_partial`` a last
    batch smaller than the current size is not run but returned, to be joined
    by the next rows. An out-of-memory error under ``batch_size="auto"``
    halves the batch and runs the same rows again, so order is kept.
    """
    first = 0
    while first < len(items) and (len(items) - first >= sizer.size or not keep_partial):
        n_rows = min(sizer.size, len(items) - first)
        chosen = items[first : first + n_rows]
        started = time.perf_counter()
        try:
            embeddings = forward([payload for _, payload in chosen])
        except _OUT_OF_MEMORY_ERRORS():
            if not sizer.shrink(n_rows):
                raise
            embeddings = None
        if embeddings is None:
            # Outside the except block: the error's frames, and the tensors
            # they hold, are gone before the cache is emptied.
            sizer.release_memory()
            continue
        sizer.observe(n_rows, time.perf_counter() - started)
        out[[position for position, _ in chosen]] = embeddings
        if done is not None:
            done(n_rows)
        first += n_rows
    return items[first:]
