import numpy as np
import pandas as pd
import pytest

from sklearn_clip._encoding.inputs import as_rows, check_texts


@pytest.mark.parametrize(
    "container",
    [
        lambda v: list(v),
        lambda v: np.array(v, dtype=object),
        lambda v: pd.Series(v),
        lambda v: pd.DataFrame({"c": v}),
        lambda v: np.array(v, dtype=object).reshape(-1, 1),
    ],
)
def test_containers_flatten_in_order(container):
    values = ["a.jpg", "b.jpg", "c.jpg"]
    rows, _ = as_rows(container(values))
    assert rows == values


def test_index_is_kept():
    _, index = as_rows(pd.Series(["x", "y"], index=["r1", "r2"]))
    assert list(index) == ["r1", "r2"]


def test_image_batch_array_is_split_into_rows():
    rows, _ = as_rows(np.zeros((5, 8, 8, 3), np.uint8))
    assert len(rows) == 5 and rows[0].shape == (8, 8, 3)


def test_bad_containers_are_named():
    with pytest.raises(ValueError, match="one image column"):
        as_rows(pd.DataFrame({"a": [1], "b": [2]}))
    with pytest.raises(TypeError, match="wrap it in a list"):
        as_rows("one.jpg")


def test_missing_text_names_the_row():
    with pytest.raises(ValueError, match=r"row 1 \(index 'b'\) is missing"):
        check_texts(["ok", None], pd.Index(["a", "b"]))
    with pytest.raises(ValueError, match="row 0 is a int"):
        check_texts([3], None)
