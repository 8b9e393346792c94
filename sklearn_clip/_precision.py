"""Which precision runs fastest here: the policy behind ``dtype="auto"``.

On a GPU, bfloat16 where the card has it, else float16. On a CPU, bfloat16 only
where the CPU has native bfloat16 matrix units (Intel AMX tiles, or the
AVX512-BF16 dot-product instructions), as reported by torch, and only once a
short matrix-product probe has shown that bfloat16 is actually faster here:
elsewhere bfloat16 is emulated and slower than float32, so ``"auto"`` stays
float32. The same policy chooses bfloat16 autocast in fine-tuning.

The probe runs at most once per process, and only on CPUs that report such
units, so on every other CPU nothing is timed.
"""

import functools
import time

import torch

# bfloat16 must beat float32 by this factor in the probe to be chosen: a
# smaller gain would be eaten by the casts around the matrix products.
MIN_BF16_SPEEDUP = 1.3


def _cpu_query(name):
    # torch.cpu's capability queries are private and may be missing from
    # other releases: a missing or failing one means "not available".
    query = getattr(torch.cpu, name, None)
    try:
        return bool(query()) if query is not None else False
    except (RuntimeError, AttributeError):
        return False


def cpu_bf16_units():
    """The native bfloat16 matrix units torch reports on this CPU.

    Returns
    -------
    tuple of str
        A subset of ``("amx", "avx512_bf16")``; empty where bfloat16 would be
        emulated, or where torch was built without oneDNN (which runs
        bfloat16 matrix products on those units).

    Examples
    --------
    >>> from sklearn_clip._precision import cpu_bf16_units
    >>> set(cpu_bf16_units()) <= {"amx", "avx512_bf16"}
    True
    """
    if not torch.backends.mkldnn.is_available():
        return ()
    queries = {
        "amx": "_is_amx_tile_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
    }
    return tuple(unit for unit, query in queries.items() if _cpu_query(query))


def bf16_speedup(rows=256, width=768, repeats=5):
    """How many times faster a ViT-B-sized linear layer runs in bfloat16 on CPU.

    The best of ``repeats`` timings of each precision, after one warm-up run;
    tens of milliseconds in all.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, width, generator=generator)
    weight = torch.randn(4 * width, width, generator=generator)
    seconds = {}
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            a, w = x.to(dtype), weight.to(dtype)
            torch.nn.functional.linear(a, w)  # warm-up: kernel choice, packing
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                torch.nn.functional.linear(a, w)
                best = min(best, time.perf_counter() - start)
            seconds[dtype] = best
    return seconds[torch.float32] / max(seconds[torch.bfloat16], 1e-12)


@functools.cache
def cpu_prefers_bf16():
    """True where this CPU has native bfloat16 units and the probe found them faster."""
    return bool(cpu_bf16_units()) and bf16_speedup() >= MIN_BF16_SPEEDUP


def auto_dtype(device):
    """The weights' dtype that ``dtype="auto"`` means on ``device``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_clip._precision import auto_dtype, cpu_prefers_bf16
    >>> auto_dtype(torch.device("cpu")) == (
    ...     torch.bfloat16 if cpu_prefers_bf16() else torch.float32
    ... )
    True
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    if device.type == "cpu" and cpu_prefers_bf16():
        return torch.bfloat16
    return torch.float32


def autocast_dtype(device):
    """The autocast dtype for training on ``device``, or None to train in float32.

    bfloat16 needs no loss scaling, so it is used wherever it is native; float16
    autocast (which would need a gradient scaler) is never chosen.
    """
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_prefers_bf16():
        return torch.bfloat16
    return None
