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


# -- data frame libraries and Hugging Face datasets -------------------------------
TEXTS = ["a red square", "a blue circle", "a green star"]


@pytest.mark.parametrize(
    "container",
    [
        pytest.param(lambda v: __import__("polars").Series("t", v), id="polars-series"),
        pytest.param(
            lambda v: __import__("polars").DataFrame({"t": v}), id="polars-df"
        ),
        pytest.param(lambda v: __import__("pyarrow").array(v), id="pyarrow-array"),
        pytest.param(
            lambda v: __import__("pyarrow").chunked_array([v[:1], v[1:]]),
            id="pyarrow-chunked",
        ),
        pytest.param(
            lambda v: __import__("pyarrow").table({"t": v}), id="pyarrow-table"
        ),
    ],
)
def test_other_frame_libraries_give_their_rows_in_order(container):
    pytest.importorskip("polars")
    rows, index = as_rows(container(TEXTS), kind="text")
    assert rows == TEXTS and index is None


def test_a_polars_frame_of_several_columns_is_refused_naming_them():
    pl = pytest.importorskip("polars")
    with pytest.raises(ValueError, match=r"2 columns \['a', 'b'\]"):
        as_rows(pl.DataFrame({"a": ["x"], "b": ["y"]}), kind="image")


@pytest.fixture(scope="module")
def image_dataset(image_files):
    """A Hugging Face dataset of three image files, as its users hold one."""
    datasets = pytest.importorskip("datasets")
    paths = [str(image_files[name]) for name in ("rgb.jpg", "rgb.png", "grey.png")]
    table = datasets.Dataset.from_dict({"image": paths})
    return table.cast_column("image", datasets.Image()), paths


def _image_values(dataset, form):
    datasets = pytest.importorskip("datasets")
    if form == "decoded":
        return dataset["image"]
    if form == "undecoded":
        undecoded = dataset.cast_column("image", datasets.Image(decode=False))
        return undecoded["image"]
    if form == "pandas":
        return dataset.to_pandas()["image"]
    return [row["image"] for row in dataset.with_format("torch")]


@pytest.mark.parametrize("form", ["decoded", "undecoded", "pandas", "torch"])
def test_dataset_image_values_embed_as_their_files(
    image_dataset, form, tiny_clip, float32
):
    from sklearn_clip import CLIPEmbeddingTransformer

    dataset, paths = image_dataset
    embedder = CLIPEmbeddingTransformer(tiny_clip).fit(paths)
    # Lossless formats only: a JPEG decoded twice is the same image.
    expected = embedder.transform(paths)
    np.testing.assert_allclose(
        embedder.transform(_image_values(dataset, form)), expected, atol=1e-5
    )


def test_an_image_dict_without_bytes_or_path_is_refused_naming_the_row(
    tiny_clip, image_files
):
    from sklearn_clip import CLIPEmbeddingTransformer
    from sklearn_clip.exceptions import ImageInputError

    embedder = CLIPEmbeddingTransformer(tiny_clip).fit([image_files["rgb.png"]])
    with pytest.raises(ImageInputError, match="row 0.*neither bytes nor a path"):
        embedder.transform([{"bytes": None, "path": None}])
