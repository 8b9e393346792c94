"""Model handles read back from pickles, joblib and skops files.

A saved handle is plain values
(:class:`sklearn_clip._backends.state.HandleState`): a reference that
:func:`~sklearn_clip.load_model` loads again (through the process cache),
checked to hold the weights it was saved with, or the files of weights that
lived in memory. The backends hand the state to
:func:`rebuild_handle` through the hook this module installs when the package
is imported, so no backend imports the loader above it.

Importing this module is cheap (the package's root imports it): everything
heavier is imported when a handle is rebuilt.
"""

from sklearn_clip._backends import state as _state


def __getattr__(name):
    # Pickles of 0.1.0 name the PyTorch handle sklearn_clip._model.ModelHandle,
    # a name that now leads here (sklearn_clip._compat).
    if name == "ModelHandle":
        from sklearn_clip._backends.torch.handle import ModelHandle

        return ModelHandle
    raise AttributeError(name)


def rebuild_handle(state):
    """The handle that :meth:`ModelHandle.__getstate__` described."""
    from sklearn_clip._persistence import check_handle_state

    check_handle_state(state)  # read from a file: plain, known values only
    if "reference" in state:
        reference = state["reference"]
        # A tuple in pickles written before exported models existed.
        if isinstance(reference, dict):
            return _load_reference(**reference)
        return _load_reference(*reference)
    return handle_from_files(state["files"], state["dtype"], state.get("device_type"))


def _auto_device_type():
    from sklearn_clip._backends.torch.weights import resolve_device

    return resolve_device("auto").type


def _load_reference(
    source,
    revision,
    device="auto",
    dtype="auto",
    compile=None,
    fingerprint=None,
    backend=None,
):
    """The handle a pickle refers to: loaded again, and checked to be the same."""
    # Weights pickled on a GPU machine may be read where there is none.
    if device not in ("cpu", "auto") and _auto_device_type() != device:
        device, dtype = "auto", "auto"
    from sklearn_clip._loader.registry import load_model

    handle = load_model(
        source,
        backend=backend,
        revision=revision,
        device=device,
        dtype=dtype,
        compile=compile,
    )
    check_same_model(handle, fingerprint, "a pickled model handle")
    return handle


def check_same_model(handle, fingerprint, what):
    """Refuse ``handle`` unless its weights are those ``fingerprint`` names.

    None (pickles of 0.1.0, which did not record it) is not checked.
    """
    if fingerprint is None or handle.fingerprint == fingerprint:
        return
    where = "in memory" if handle.source is None else f"at {handle.source!r}"
    raise ValueError(
        f"{what} was made with other weights than those now {where}: that "
        "folder was rewritten with another model, so "
        "its answers would be in another embedding space. Put the original "
        "weights back at that path, or fit again with the weights there now "
        "(to carry the weights inside a pickle, fit with "
        "store_weights_in_pickle=True)."
    )


def _handle_from_files(files):
    """The handle of a 0.1.0 pickle's in-memory weights (a fine-tuned model).

    0.1.0 pickled it as ``sklearn_clip._model._handle_from_files(files)``, a
    name that leads here, and ran it at the precision its files hold.
    """
    return handle_from_files(files, None)


def handle_from_files(files, dtype="auto", device_type=None):
    """The handle of model files carried in a pickle, ``{name: bytes}``."""
    from sklearn_clip._backends.exported.manifest import MANIFEST_NAME

    if MANIFEST_NAME in files:
        from sklearn_clip._loader.auto_export import exported_from_files

        return exported_from_files(files)
    from sklearn_clip._backends.torch.loading import handle_from_files as torch_handle

    return torch_handle(files, dtype, device_type)


_state.install_rebuilder(rebuild_handle)
