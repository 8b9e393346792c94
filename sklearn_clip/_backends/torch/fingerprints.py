"""What a model is: tokens and hashes that change when its weights change.

A model's identity is :func:`weights_fingerprint`, a hash of every weight's
bytes: fitted estimators, cache entries and embedding shards record it, so
that weights rewritten under the same path are noticed. The embedding cache
names its folders by :func:`model_fingerprint` (that hash at the precision the
model runs at) and the tokenizer's fingerprint
(:func:`sklearn_clip._encoding.tokens.tokenizer_fingerprint`); the in-process text
memo keys its entries by :func:`weights_signature`, which is cheap enough to
take on every call and changes with the weights.
"""

import hashlib
import json
import threading
import weakref

import numpy as np
import torch

# Elements read from each tensor for the weights' signature. A few dozen cost
# about as much as one; edits through ``.data`` or ``.detach()`` bypass the
# version counter, and only these samples can notice them.
SAMPLES_PER_TENSOR = 64


def weights_signature(model):
    """A cheap token that changes when the weights change.

    In-place updates through autograd-visible tensors (an optimizer step,
    ``load_state_dict``, ``p.add_()`` under ``torch.no_grad()``) bump a
    tensor's version counter; assigning new tensors changes their storage.
    Edits through ``p.data`` or ``p.detach()`` bump neither, so the token also
    holds a checksum of :data:`SAMPLES_PER_TENSOR` evenly spaced elements (and
    the last) of every tensor: an edit that changes any of them, such as
    ``p.data.mul_(0.5)``, changes the token. An edit of a few elements between
    the samples, through ``.data``, is not seen (``docs/reliability.md``).
    """
    tensors = [*model.parameters(), *model.buffers()]
    counters = tuple((t.data_ptr(), getattr(t, "_version", 0)) for t in tensors)
    return counters, _sampled_checksum(model, tensors)


# Integer types of each width: a view that keeps a tensor's bits, whatever its
# dtype (numpy has no bfloat16).
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}

# Flat views of each model's tensors, kept while the tensors keep their
# storage: slicing a kept view costs far less than the torch operations that
# make one, and a view sees every later edit of the memory it shares.
_bit_views = weakref.WeakKeyDictionary()


def _sampled_checksum(model, tensors):
    storage = tuple((t.data_ptr(), t.shape) for t in tensors)
    known = _bit_views.get(model)
    if known is None or known[0] != storage:
        known = (storage, [_bits(t) for t in tensors])
        # A non-contiguous tensor is flattened into a copy, which would not
        # see later edits: such a model's views are made afresh each time.
        if all(t.is_contiguous() for t in tensors):
            _bit_views[model] = known
    digest = hashlib.blake2b(digest_size=16)
    elsewhere = []
    for bits in known[1]:
        if bits is None:
            continue
        step = max(1, len(bits) // SAMPLES_PER_TENSOR)
        if isinstance(bits, np.ndarray):
            digest.update(bits[::step].tobytes())
            digest.update(bits[-1:].tobytes())
        else:
            elsewhere.append(torch.cat([bits[::step], bits[-1:]]).view(torch.uint8))
    if elsewhere:
        # One transfer for every tensor on an accelerator.
        digest.update(torch.cat(elsewhere).cpu().numpy().tobytes())
    return digest.hexdigest()


def _bits(tensor):
    """A flat view of a tensor's bits (numpy on the CPU), or None if it has none."""
    flat = tensor.detach().reshape(-1)
    if not flat.numel() or flat.is_meta:
        return None
    bits = flat.view(_BITS.get(flat.element_size(), torch.uint8))
    return bits.numpy() if bits.device.type == "cpu" else bits


_fingerprints = weakref.WeakKeyDictionary()
_fingerprint_lock = threading.Lock()


def weights_fingerprint(model):
    """A hash of a model's class, config and every weight's bytes (hex).

    What the model computes, not where it was read from: the same weights
    loaded from two folders hash alike, and a folder rewritten with other
    weights hashes differently. It reads every weight's bytes, so it is
    computed once per model and again only if the weights change.
    """
    signature = weights_signature(model)
    with _fingerprint_lock:
        known = _fingerprints.get(model)
        if known is not None and known[0] == signature:
            return known[1]
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
        _fingerprints[model] = (signature, fingerprint)
    return fingerprint


def model_fingerprint(handle):
    """The :func:`weights_fingerprint` of the model a handle runs.

    At the precision it runs at: a bfloat16 copy of float32 weights hashes
    differently from them, as its embeddings differ (the embedding cache keeps
    them apart). The model's identity whatever the precision is
    ``ModelHandle.fingerprint``.
    """
    return weights_fingerprint(handle.model)


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


def check_reread_weights(model, fingerprint, directory):
    """Refuse weights read again from ``directory`` unless they are ``fingerprint``'s.

    A handle that runs below its stored precision reads its stored weights
    again to save or export them; if the folder was rewritten since, those
    are other weights, which must never be written under this handle's name.
    """
    if weights_fingerprint(model) == fingerprint:
        return
    raise ValueError(
        f"the weights in {str(directory)!r} changed since this handle loaded "
        "them: it runs a lower-precision copy and reads its stored weights from "
        "there again to save or export them, and they are now other weights. "
        "Put the original weights back, or load the model again "
        f"(sklearn_clip.clear_model_cache(), then load_model({str(directory)!r})) "
        "to save or export the weights there now."
    )
