"""Containers of rows -> one flat sequence, with the index kept for errors.

scikit-learn hands an estimator whatever the user or a meta-estimator holds: a
list, a 1-D object array, a ``pandas.Series``, a one-column ``DataFrame``, or
the ``(n, 1)`` object array that ``ColumnTransformer`` passes for a selected
column. They all become one list of rows here, so the rest of the package sees
one shape.
"""

import numbers
import sys
from pathlib import Path

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd


def as_rows(X, *, kind="image"):
    """Flatten a container of images or texts into ``(rows, index)``.

    Parameters
    ----------
    X : list, tuple, ndarray, Series or DataFrame
        The rows. A numeric ndarray of shape ``(n, H, W)`` or ``(n, H, W, C)``
        is read as a batch of ``n`` images. Series and one-column data frames
        of pandas, polars and pyarrow (arrays, chunked arrays, tables), and any
        other library narwhals reads, are accepted.
    kind : {"image", "text"}
        Only used to word error messages and to accept image batches.

    Returns
    -------
    rows : list
        One entry per input row, in order.
    index : pandas.Index or None
        The pandas index when ``X`` is a Series or DataFrame, for error messages
        and for ``set_output(transform="pandas")``.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_clip._encoding.inputs import as_rows
    >>> as_rows(pd.DataFrame({"text": ["a", "b"]}, index=[7, 9]), kind="text")
    (['a', 'b'], Index([7, 9], dtype='int64'))
    """
    index = None
    X = _from_other_frame_libraries(X, kind)
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise ValueError(
                f"expected a DataFrame with one {kind} column; got {X.shape[1]} "
                f"columns "
                f"{list(X.columns)!r}. Select one column, e.g. X[['{kind}']] or a "
                "ColumnTransformer column."
            )
        index = X.index
        rows = X.iloc[:, 0].tolist()
    elif isinstance(X, pd.Series):
        index = X.index
        rows = X.tolist()
    elif isinstance(X, np.ndarray):
        rows = _rows_of_array(X, kind)
    elif isinstance(X, str | bytes | Path):
        raise TypeError(
            f"expected a sequence of {kind}s, got a single {type(X).__name__}; "
            f"wrap it in a list: [{X!r}]"
        )
    elif isinstance(X, list | tuple) or hasattr(X, "__iter__"):
        rows = list(X)
    else:
        raise TypeError(
            f"expected a list, array, Series or DataFrame of {kind}s; got "
            f"{type(X).__name__}"
        )
    if kind == "image":
        # Row arrays taken from an image batch arrive as numpy rows already.
        rows = [np.asarray(r) if isinstance(r, np.ndarray) else r for r in rows]
    return rows, index


def _from_other_frame_libraries(X, kind):
    """A polars, pyarrow, ... column or one-column table -> its list of rows.

    pandas keeps its own path (its index names rows in errors and outputs);
    every other data frame library narwhals reads (as scikit-learn itself
    does) gives plain rows. Anything else is returned as it came.
    """
    if isinstance(X, pd.DataFrame | pd.Series | np.ndarray | list | tuple):
        return X
    pyarrow = sys.modules.get("pyarrow")  # a pyarrow input means it is loaded
    if pyarrow is not None and isinstance(X, pyarrow.Array):
        return X.to_pylist()  # narwhals reads chunked arrays, not plain ones
    frame = nw.from_native(X, eager_only=True, allow_series=True, pass_through=True)
    if isinstance(frame, nw.Series):
        return frame.to_list()
    if isinstance(frame, nw.DataFrame):
        if frame.shape[1] != 1:
            raise ValueError(
                f"expected a DataFrame with one {kind} column; got "
                f"{frame.shape[1]} columns {frame.columns!r}. Select one column, "
                f"e.g. X[['{kind}']] or a ColumnTransformer column."
            )
        return frame.get_column(frame.columns[0]).to_list()
    return X


def _rows_of_array(X, kind):
    if X.dtype == object or X.dtype.kind in "US":
        if X.ndim == 1:
            return X.tolist()
        if X.ndim == 2 and X.shape[1] == 1:
            return X[:, 0].tolist()
        raise ValueError(
            f"expected a 1-D array or an (n, 1) column of {kind}s; got an array of "
            f"shape {X.shape}"
        )
    if kind == "image" and X.ndim in (3, 4):
        return list(X)
    raise ValueError(
        f"expected a 1-D object array, an (n, 1) column, or for images an (n, H, W) "
        f"or (n, H, W, C) batch; got an array of shape {X.shape} and dtype {X.dtype}"
    )


def index_label(position, index):
    """A row's pandas index label as a plain Python value; its position if none."""
    if index is None:
        return position
    label = index[position]
    # numpy 2 writes np.int64(11) for repr(index[...]); users wrote 11.
    return label.item() if isinstance(label, np.generic) else label


def row_label(position, index):
    """How to name a row in an error: its position, and its index label."""
    if index is None:
        return f"row {position}"
    return f"row {position} (index {index_label(position, index)!r})"


def is_missing(value):
    """Whether a row holds a missing value: None, NaN, ``pd.NA`` or ``pd.NaT``.

    The one definition every input check uses (images, texts, labels).
    Booleans and numbers other than NaN are values, not missing ones.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn_clip._encoding.inputs import is_missing
    >>> [is_missing(v) for v in (None, np.nan, pd.NA, pd.NaT, 0.0, "", False)]
    [True, True, True, True, False, False, False]
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and bool(np.isnan(value))
    )


def check_texts(rows, index):
    """Check that every text row is a string; return them as ``str``.

    Missing values (None, NaN, ``pd.NA``), non-strings and strings that are not
    valid Unicode (lone surrogates) raise a ``ValueError`` naming the row. Empty
    strings are valid texts.
    """
    texts = []
    for position, value in enumerate(rows):
        if isinstance(value, np.str_):
            value = str(value)
        if not isinstance(value, str):
            what = (
                "is missing (None/NaN)"
                if is_missing(value)
                else f"is a {type(value).__name__}"
            )
            raise ValueError(
                f"{row_label(position, index)} {what}; every text must be a string. "
                "Fill or drop missing texts first, e.g. X.fillna('')."
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            # A lone surrogate (e.g. from a bad decode with errors="surrogateescape")
            # is not text a tokenizer can read.
            raise ValueError(
                f"{row_label(position, index)} is not valid Unicode text: {exc.reason} "
                f"at character {exc.start} ({value[exc.start : exc.end]!r})"
            ) from exc
        texts.append(value)
    return texts
