"""What tools that save estimators need to know, and what a saved file may hold.

A pickle or a skops file is read back as the values it holds. The package's
own state is plain values (strings, numbers, bytes) from known sets, and it is
checked as it is restored: an estimator's parameters against its
``_parameter_constraints``, a model handle's against the arguments
:func:`~sklearn_clip.load_model` takes from a file (:func:`check_handle_state`).
So a crafted file cannot pass arbitrary options to ``torch.compile`` or to any
other call the estimator makes later.
"""

import numbers
import re

from sklearn.utils._param_validation import (
    InvalidParameterError,
    validate_parameter_constraints,
)

from sklearn_clip._files import is_plain_file_name
from sklearn_clip._options import (
    BACKENDS,
    COMPILE_OPTIONS,
    DTYPE_NAMES,
    QUANTIZATIONS,
)

# A device as a handle saves it: its type, maybe with an index ("cuda:1").
_DEVICE = re.compile(r"[a-z]+(:[0-9]+)?")
# What a handle's reference holds, in the order of the pickles that stored it
# as a tuple (before exported models existed).
_REFERENCE_KEYS = (
    "source",
    "revision",
    "device",
    "dtype",
    "compile",
    "fingerprint",
    "backend",
)
_PLAIN = (str, bytes, numbers.Number, type(None))


def skops_trusted_types():
    """The package's types, for skops' ``trusted`` list (and mlflow's).

    skops reads only the types it is told to trust. A file that holds an
    estimator of this package holds these classes (the estimators and their
    model handles, whose saved state is plain values: a path with the
    weights' fingerprint, or the weights' files), besides scikit-learn's and
    numpy's own types, which skops trusts by default.

    Returns
    -------
    list of str
        Fully qualified class names, sorted.

    Examples
    --------
    >>> import skops.io as sio
    >>> from sklearn_clip import CLIPZeroShotClassifier, skops_trusted_types
    >>> from sklearn_clip.toy import make_tiny_clip
    >>> clf = CLIPZeroShotClassifier(make_tiny_clip(), candidate_labels=["a", "b"])
    >>> data = sio.dumps(clf.fit(None))
    >>> set(sio.get_untrusted_types(data=data)) <= set(skops_trusted_types())
    True
    >>> clf = sio.loads(data, trusted=skops_trusted_types())
    """
    return sorted(_name(module, name) for module, name in _SAVED_CLASSES)


# The classes a saved estimator may hold: the estimators, the model handles and
# the few-shot heads (the values of few_shot_methods.METHODS; named here, not
# imported, because the estimators' base class imports this module).
_SAVED_CLASSES = (
    ("sklearn_clip._classify.few_shot_methods", "LinearHead"),
    ("sklearn_clip._classify.few_shot_methods", "TipHead"),
    ("sklearn_clip._train.finetuner", "CLIPContrastiveFinetuner"),
    ("sklearn_clip._embedding", "CLIPEmbeddingTransformer"),
    ("sklearn_clip._classify.few_shot", "CLIPFewShotClassifier"),
    ("sklearn_clip._retrieval.neighbors", "CLIPNearestNeighbors"),
    # A searcher over a LanceDB table: where the table is, never its rows.
    ("sklearn_clip._retrieval.lance", "LanceIndex"),
    ("sklearn_clip._retrieval.lance_searcher", "TablePaths"),
    ("sklearn_clip._classify.zero_shot", "CLIPZeroShotClassifier"),
    ("sklearn_clip._backends.torch.handle", "ModelHandle"),
    ("sklearn_clip._backends.exported.handle", "ExportedModelHandle"),
)


def _name(module, name):
    """The class's qualified name, as the class itself gives it where it can
    be imported (the modules that need PyTorch cannot, where only exported
    models run)."""
    import importlib

    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError:
        return f"{module}.{name}"
    return f"{cls.__module__}.{cls.__qualname__}"


def check_estimator_state(cls, state):
    """Refuse a restored estimator's state unless it holds values it may.

    Called by ``__setstate__`` (pickle, joblib and skops all restore an
    estimator through it): the parameters are checked against
    ``cls._parameter_constraints``, as ``fit`` checks them; a model handle
    among them against the options a saved handle may carry; model files
    carried in the state must be plain file names with bytes.

    Parameters
    ----------
    cls : type
        The estimator's class.
    state : dict
        What is about to become the estimator's ``__dict__``.

    Raises
    ------
    ValueError
        One line naming the parameter and the value refused.

    Examples
    --------
    >>> from sklearn_clip import CLIPZeroShotClassifier
    >>> from sklearn_clip._persistence import check_estimator_state
    >>> state = CLIPZeroShotClassifier().__getstate__()
    >>> check_estimator_state(CLIPZeroShotClassifier, state)
    >>> check_estimator_state(CLIPZeroShotClassifier, {**state, "dtype": "float64"})
    Traceback (most recent call last):
    ...
    sklearn...InvalidParameterError: a saved CLIPZeroShotClassifier holds a ...
    """
    constraints = getattr(cls, "_parameter_constraints", {})
    params = {name: state[name] for name in constraints if name in state}
    try:
        validate_parameter_constraints(constraints, params, cls.__name__)
    except InvalidParameterError as exc:
        raise InvalidParameterError(
            f"a saved {cls.__name__} holds a value its parameters do not take: {exc}"
        ) from None
    for name, value in params.items():
        if isinstance(value, dict):
            _check_plain(value, f"parameter {name!r}")
    # A model handle among the parameters was checked when it was rebuilt
    # (check_handle_state).
    if state.get("_pickled_model_files") is not None:
        _check_files(state["_pickled_model_files"])


def check_handle_state(state):
    """Refuse a saved model handle's state unless it holds known, plain values.

    What :meth:`ModelHandle.__getstate__` writes: ``{"reference": {...}}``
    (the :func:`~sklearn_clip.load_model` arguments that load it again, with
    the weights' fingerprint), or ``{"files", "dtype", "device_type"}``. To be
    called before the handle is rebuilt from it.

    Parameters
    ----------
    state : dict
        The state read back from a pickle or a skops file.

    Raises
    ------
    ValueError
        One line naming the key or the value refused.

    Examples
    --------
    >>> from sklearn_clip._persistence import check_handle_state
    >>> reference = {"source": "openai/clip-vit-base-patch32", "revision": None,
    ...              "device": "cpu", "dtype": "float32", "compile": None,
    ...              "fingerprint": None}
    >>> check_handle_state({"reference": reference})
    >>> check_handle_state({"reference": {**reference, "compile": {"options": {}}}})
    Traceback (most recent call last):
    ...
    ValueError: a saved model handle asks torch.compile for 'options', ...
    """
    if not isinstance(state, dict):
        _refuse("its state", state)
    if "reference" in state:
        _check_keys(state, ("reference",), "state")
        _check_reference(state["reference"])
        return
    _check_keys(state, ("files", "dtype", "device_type"), "state")
    _check_files(state.get("files"))
    # An export's precision may be its quantization ("int8").
    precisions = ("auto", *DTYPE_NAMES, *filter(None, QUANTIZATIONS))
    _check_value("dtype", state.get("dtype"), precisions)
    _check_device("device_type", state.get("device_type"))


def check_compile_options(options):
    """Refuse ``torch.compile`` options that a saved handle may not carry.

    None (no compilation) and ``{}`` (``compile=True``) pass; a dict passes
    when each keyword and value is in
    :data:`~sklearn_clip._options.COMPILE_OPTIONS`.

    Examples
    --------
    >>> from sklearn_clip._persistence import check_compile_options
    >>> check_compile_options({"backend": "eager"})
    >>> check_compile_options({"backend": "my_module.run"})
    Traceback (most recent call last):
    ...
    ValueError: a saved model handle asks torch.compile for backend='my_module.run', ...
    """
    if options is None or options is False or options is True:
        return
    if not isinstance(options, dict):
        _refuse("torch.compile options", options)
    for key, value in options.items():
        if key not in COMPILE_OPTIONS:
            raise ValueError(
                f"a saved model handle asks torch.compile for {key!r}, which a "
                f"saved file may not set (only {sorted(COMPILE_OPTIONS)}); pass "
                "it to load_model(..., compile=...) in code instead."
            )
        if not _is_one_of(value, COMPILE_OPTIONS[key]):
            raise ValueError(
                f"a saved model handle asks torch.compile for {key}={value!r}, "
                f"not one of {COMPILE_OPTIONS[key]}; pass it to "
                "load_model(..., compile=...) in code instead."
            )


def _check_reference(reference):
    if isinstance(reference, list | tuple):  # pickles before exported models
        if len(reference) > len(_REFERENCE_KEYS):
            _refuse("reference", reference)
        reference = dict(zip(_REFERENCE_KEYS, reference, strict=False))
    if not isinstance(reference, dict):
        _refuse("reference", reference)
    _check_keys(reference, _REFERENCE_KEYS, "reference")
    for name in ("source", "revision", "fingerprint"):
        value = reference.get(name)
        if not (value is None or isinstance(value, str)):
            _refuse(name, value)
    _check_device("device", reference.get("device"))
    _check_value("dtype", reference.get("dtype"), (None, "auto", *DTYPE_NAMES))
    _check_value("backend", reference.get("backend"), (None, *BACKENDS))
    check_compile_options(reference.get("compile"))


def _check_files(files):
    # {file name: bytes}: a name with a folder in it would be written outside
    # the temporary folder the handle is rebuilt in.
    if not isinstance(files, dict):
        _refuse("model files", files)
    for name, data in files.items():
        if not is_plain_file_name(name):
            _refuse("model file name", name)
        if not isinstance(data, bytes):
            _refuse(f"model file {name!r}", type(data).__name__)


def _check_plain(value, where):
    # Parameters given as dicts (lora=) hold plain values, nested at most in
    # lists and dicts with string keys: never objects a later call would run.
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                _refuse(f"{where} key", key)
            _check_plain(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_plain(item, where)
    elif not isinstance(value, _PLAIN):
        _refuse(where, type(value).__name__)


def _check_keys(mapping, known, what):
    unknown = sorted(str(key) for key in mapping if key not in known)
    if unknown:
        raise ValueError(
            f"a saved model handle's {what} holds unknown keys {unknown}; "
            f"known: {list(known)}. The file was not written by sklearn-clip."
        )


def _check_device(name, value):
    if not (value is None or (isinstance(value, str) and _DEVICE.fullmatch(value))):
        _refuse(name, value)


def _check_value(name, value, allowed):
    if not _is_one_of(value, allowed):
        raise ValueError(
            f"a saved model handle holds {name}={value!r}, not one of {allowed}."
        )


def _is_one_of(value, allowed):
    # By type as well as value: 1 == True, but 1 is not a bool.
    return any(value is a or (type(value) is type(a) and value == a) for a in allowed)


def _refuse(what, value):
    text = repr(value)
    text = text if len(text) <= 80 else f"{text[:77]}..."
    raise ValueError(
        f"a saved sklearn-clip object holds {what} {text}, which is not a value "
        "it may hold. The file was not written by sklearn-clip, or was altered."
    )
