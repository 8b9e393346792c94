import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn import config_context
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    clear_model_cache,
    model_cache_info,
)
from sklearn_clip.exceptions import InputErrorWarning

N_ROWS = 20


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def table(tmp_path_factory, gradient):
    """An image-path column, a caption column, two numeric columns and labels."""
    folder = tmp_path_factory.mktemp("embedding-images")
    rng = np.random.default_rng(0)
    colours = ["red", "blue"]
    paths, captions, labels = [], [], []
    for i in range(N_ROWS):
        array = gradient(24 + i % 5, 30 - i % 3, seed=i)
        array[..., i % 2 * 2] = 255  # red or blue cast, by label
        path = folder / f"row_{i}.png"
        Image.fromarray(array).save(path)
        paths.append(str(path))
        captions.append(f"a {colours[i % 2]} square number {i}")
        labels.append(colours[i % 2])
    return pd.DataFrame(
        {
            "image": paths,
            "caption": captions,
            "width": rng.normal(size=N_ROWS),
            "height": rng.normal(size=N_ROWS),
            "label": labels,
        },
        index=[f"r{i}" for i in range(N_ROWS)],
    )


def test_transform_gives_unit_float32_rows(float32, tiny_clip_path, tiny_clip, table):
    embedder = CLIPEmbeddingTransformer(tiny_clip_path).fit(table["image"])
    assert embedder.embedding_dim_ == tiny_clip.embedding_dim == 32
    out = embedder.transform(table["image"])
    assert out.shape == (N_ROWS, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    expected = tiny_clip.encode_images(table["image"].tolist())
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_normalize_false_gives_the_raw_projection(tiny_clip_path, table):
    raw = CLIPEmbeddingTransformer(tiny_clip_path, normalize=False)
    raw = raw.fit_transform(table["image"])
    unit = CLIPEmbeddingTransformer(tiny_clip_path).fit_transform(table["image"])
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)
    np.testing.assert_allclose(
        raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-6
    )


def test_text_modality(float32, tiny_clip_path, tiny_clip, table):
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, modality="text")
    out = embedder.fit_transform(table["caption"])
    np.testing.assert_allclose(
        out, tiny_clip.encode_texts(table["caption"].tolist()), atol=1e-6
    )
    with pytest.raises(ValueError, match=r"row 1 \(index 'b'\) is a int"):
        embedder.transform(pd.Series(["a cat", 3], index=["a", "b"], dtype=object))


def test_a_loaded_handle_works_as_model(tiny_clip, table):
    embedder = CLIPEmbeddingTransformer(tiny_clip).fit(table["image"])
    assert embedder._get_model() is tiny_clip
    assert embedder.transform(table["image"][:2]).shape == (2, 32)


def test_feature_names_use_the_prefix(tiny_clip_path, table):
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, feature_prefix="img")
    embedder.fit(table[["image"]])
    names = embedder.get_feature_names_out()
    assert names.dtype == object and names[0] == "img_0" and names[-1] == "img_31"
    assert len(set(names)) == 32
    assert (embedder.get_feature_names_out(["image"]) == names).all()
    with pytest.raises(ValueError, match="input_features is not equal"):
        embedder.get_feature_names_out(["caption"])


@pytest.mark.parametrize("selector", [["image"], "image"])
def test_set_output_pandas_keeps_the_index(tiny_clip_path, table, selector):
    embedder = CLIPEmbeddingTransformer(tiny_clip_path).set_output(transform="pandas")
    out = embedder.fit(table[selector]).transform(table[selector][3:8])
    assert isinstance(out, pd.DataFrame)
    assert out.index.tolist() == table.index[3:8].tolist()
    assert out.columns.tolist() == [f"image_{i:02d}" for i in range(32)]
    with config_context(transform_output="pandas"):
        out = CLIPEmbeddingTransformer(tiny_clip_path).fit_transform(table[selector])
    assert out.index.equals(table.index)


def test_acceptance_5_batch_size_and_container_invariance(tiny_clip_path, table):
    """Acceptance 5: the same outputs for any batch size and any container."""
    for modality, column in [("image", "image"), ("text", "caption")]:
        values = table[column].tolist()
        containers = {
            "list": values,
            "Series": table[column],
            "one-column DataFrame": table[[column]],
            "(n, 1) object array": np.asarray(values, dtype=object).reshape(-1, 1),
        }
        reference = None
        worst = 0.0
        for batch_size in (1, 7, 64):
            embedder = CLIPEmbeddingTransformer(
                tiny_clip_path, modality=modality, batch_size=batch_size
            )
            for X in containers.values():
                out = embedder.fit(X).transform(X)
                if reference is None:
                    reference = out
                worst = max(worst, float(np.abs(out - reference).max()))
        print(f"{modality}: max |difference| over batch sizes x containers = {worst}")
        assert worst <= 1e-6


def test_acceptance_2_cross_val_score_loads_the_weights_once(
    tiny_clip_path, table, isolated_cache
):
    """Acceptance 2: a 5-fold cross_val_score of a linear probe loads once."""
    clear_model_cache()
    before = model_cache_info()["loads"]
    probe = Pipeline(
        [
            ("clip", CLIPEmbeddingTransformer(tiny_clip_path)),
            ("logreg", LogisticRegression(max_iter=1000)),
        ]
    )
    scores = cross_val_score(probe, table["image"], table["label"], cv=5)
    loads = model_cache_info()["loads"] - before
    print(f"cross_val_score: 5 fits, {loads} load(s), scores {scores.round(2)}")
    assert loads == 1
    assert scores.shape == (5,)


def test_acceptance_3_column_transformer_with_images_text_and_numbers(
    tiny_clip_path, table
):
    """Acceptance 3: image, caption and numeric columns into one linear model."""
    X, y = table.drop(columns="label"), table["label"]
    columns = ColumnTransformer(
        [
            ("image", CLIPEmbeddingTransformer(tiny_clip_path), "image"),
            (
                "caption",
                CLIPEmbeddingTransformer(tiny_clip_path, modality="text"),
                ["caption"],
            ),
            ("numbers", StandardScaler(), ["width", "height"]),
        ]
    )
    model = make_pipeline(columns, LogisticRegression(max_iter=1000))
    model.set_output(transform="pandas")
    model.fit(X[:15], y[:15])
    predictions = model.predict(X[15:])
    assert predictions.shape == (5,) and set(predictions) <= {"red", "blue"}
    features = model[:-1].transform(X[15:])
    names = features.columns.tolist()
    print(f"ColumnTransformer: {len(names)} features, e.g. {names[:2]} {names[-3:]}")
    assert features.index.equals(X.index[15:])
    assert len(names) == len(set(names)) == 32 + 32 + 2
    assert names[:2] == ["image__image_00", "image__image_01"]
    assert names[32] == "caption__caption_00"
    assert names[-2:] == ["numbers__width", "numbers__height"]
    assert model[:-1].get_feature_names_out().tolist() == names


def test_prefixes_keep_names_unique_without_verbose_names(tiny_clip_path, table):
    columns = ColumnTransformer(
        [
            (
                "i",
                CLIPEmbeddingTransformer(tiny_clip_path, feature_prefix="img"),
                "image",
            ),
            (
                "t",
                CLIPEmbeddingTransformer(
                    tiny_clip_path, modality="text", feature_prefix="txt"
                ),
                "caption",
            ),
        ],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    names = columns.fit_transform(table).columns.tolist()
    assert names[0] == "img_0" and names[32] == "txt_0" and len(set(names)) == 64


def test_frozen_embedder_in_a_pipeline(tiny_clip_path, table):
    embedder = CLIPEmbeddingTransformer(tiny_clip_path).fit(table["image"])
    probe = make_pipeline(FrozenEstimator(embedder), LogisticRegression())
    probe.fit(table["image"], table["label"])
    assert probe.score(table["image"], table["label"]) >= 0.5


def test_on_error_nan_records_the_rows_that_failed(tiny_clip_path, table, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    X = pd.Series(
        [table["image"].iloc[0], str(broken), table["image"].iloc[1]],
        index=["x", "y", "z"],
    )
    strict = CLIPEmbeddingTransformer(tiny_clip_path).fit(X)
    with pytest.raises(ValueError, match=r"row 1 \(index 'y'\), path '.*broken.png'"):
        strict.transform(X)
    assert not hasattr(strict, "input_errors_")
    lenient = CLIPEmbeddingTransformer(tiny_clip_path, on_error="nan").fit(X)
    with pytest.warns(InputErrorWarning, match="1 of 3 images") as caught:
        out = lenient.transform(X)
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()
    np.testing.assert_allclose(out[[0, 2]], strict.transform(X.iloc[[0, 2]]), atol=1e-6)
    # The rows travel with the call's warning; the estimator records nothing.
    [warning] = [w.message for w in caught if w.category is InputErrorWarning]
    [record] = warning.errors
    assert record["position"] == 1 and record["index"] == "y"
    assert record["source"] == str(broken)
    assert record["error"] == "UnidentifiedImageError"
    assert "cannot identify image file" in record["message"]
    assert not hasattr(lenient, "input_errors_")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputErrorWarning)  # no bad row, no warning
        lenient.transform(X.iloc[[0, 2]])


# -- skrub ----------------------------------------------------------------------


@pytest.mark.parametrize("frame_library", ["pandas", "polars"])
def test_skrub_apply_to_cols_embeds_each_image_column(
    tiny_clip_path, table, frame_library
):
    skrub = pytest.importorskip("skrub")
    frame = table.assign(scan=table["image"][::-1].to_numpy())
    if frame_library == "polars":
        frame = pytest.importorskip("polars").from_pandas(frame)
    embedder = CLIPEmbeddingTransformer(tiny_clip_path)
    out = skrub.ApplyToCols(embedder, cols=["image", "scan"]).fit_transform(frame)
    out = out.to_pandas() if frame_library == "polars" else out
    expected = embedder.fit(table["image"]).transform(table["image"])
    n_dims = expected.shape[1]
    # Each image column becomes its block of embeddings, where the column was.
    np.testing.assert_allclose(out.iloc[:, :n_dims], expected, atol=1e-6)
    np.testing.assert_allclose(out.iloc[:, -n_dims:], expected[::-1], atol=1e-6)
    middle = out.columns[n_dims:-n_dims].tolist()
    assert middle == ["caption", "width", "height", "label"]
    # Each block is named after its column, as skrub's own encoders name theirs.
    width = len(str(n_dims - 1))
    assert out.columns[0] == f"image_{0:0{width}d}"
    assert out.columns[-1] == f"scan_{n_dims - 1:0{width}d}"


def test_skrub_table_vectorizer_with_an_image_column(tiny_clip_path, table):
    skrub = pytest.importorskip("skrub")
    embedder = CLIPEmbeddingTransformer(tiny_clip_path)
    vectorizer = skrub.TableVectorizer(specific_transformers=[(embedder, ["image"])])
    out = vectorizer.fit_transform(table.drop(columns="label"))
    expected = embedder.fit(table["image"]).transform(table["image"])
    np.testing.assert_allclose(out.iloc[:, : expected.shape[1]], expected, atol=1e-6)
    assert {"width", "height"} <= set(out.columns)


def test_skrub_names_image_columns_as_its_own_encoders_name_text(tiny_clip_path, table):
    # skrub's TextEncoder needs a sentence-transformers model from the hub;
    # its StringEncoder names outputs by the same rule (the encoders share it):
    # the column's name, then the component's number zero-padded.
    skrub = pytest.importorskip("skrub")
    frame = table.rename(columns={"image": "photo"})
    frame["scan"] = frame["photo"][::-1].to_numpy()
    n_dims = CLIPEmbeddingTransformer(tiny_clip_path).fit(None).embedding_dim_
    text = skrub.StringEncoder(n_components=n_dims)
    vectorizer = skrub.TableVectorizer(
        specific_transformers=[
            (CLIPEmbeddingTransformer(tiny_clip_path), ["photo", "scan"]),
            (text, ["caption"]),
        ]
    )
    names = vectorizer.fit(frame.drop(columns="label")).get_feature_names_out()
    caption = [name for name in names if name.startswith("caption_")]
    assert caption == [f"caption_{i:02d}" for i in range(n_dims)]
    assert [n for n in names if n.startswith("photo")] == [
        c.replace("caption", "photo") for c in caption
    ]
    assert [n for n in names if n.startswith("scan")] == [
        c.replace("caption", "scan") for c in caption
    ]
    assert not [name for name in names if "__skrub_" in name]


def test_fit_none_loads_the_model_and_forgets_the_columns(tiny_clip_path, table):
    embedder = CLIPEmbeddingTransformer(tiny_clip_path).fit(table[["image"]])
    assert embedder.feature_names_in_.tolist() == ["image"]
    assert embedder.fit(None) is embedder
    assert not hasattr(embedder, "feature_names_in_")
    assert embedder.get_feature_names_out()[0] == "clip_0"
    expected = CLIPEmbeddingTransformer(tiny_clip_path).fit(table["image"])
    np.testing.assert_array_equal(
        embedder.transform(table["image"]), expected.transform(table["image"])
    )
