"""evaluate(): the few-shot curve against the estimators run by hand, retrieval
on a captioned table, and bad input named while the rest stands."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
    load_model,
)
from sklearn_clip.datasets import make_shapes
from sklearn_clip.evaluate import (
    evaluate,
    few_shot_split,
    load_evaluation_data,
)
from sklearn_clip.metrics import retrieval_report

SHAPES = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    """Three class folders of eight PNG shapes each."""
    root = tmp_path_factory.mktemp("classes")
    shapes = make_shapes(90, image_size=16, shapes=list(SHAPES), random_state=0)
    counts = dict.fromkeys(SHAPES, 0)
    for image, shape in zip(shapes.images, shapes.shape, strict=True):
        if counts[shape] < 8:
            (root / shape).mkdir(exist_ok=True)
            Image.fromarray(image).save(root / shape / f"{counts[shape]}.png")
            counts[shape] += 1
    return root


def _values(report, **where):
    table = report.results
    for column, value in where.items():
        table = table[table[column] == value]
    return table


@pytest.mark.filterwarnings("ignore::sklearn_clip.exceptions.FewShotWarning")
def test_few_shot_curve_equals_the_estimators_by_hand(class_folders, tiny_clip_path):
    shots, seeds = (1, 3), (0, 7)
    report = evaluate(
        tiny_clip_path, class_folders, shots=shots, seeds=seeds, dtype="float32",
        progress=False,
    )  # fmt: skip
    assert report.problems == []
    data = load_evaluation_data(class_folders)
    images, labels = data.images, data.labels
    model = load_model(tiny_clip_path, dtype="float32")
    embeddings = CLIPEmbeddingTransformer(model).fit(images).transform(images)
    for count in shots:
        for seed in seeds:
            train, test, left_out = few_shot_split(labels, count, seed)
            assert left_out == [] and len(train) == 3 * count
            clf = CLIPFewShotClassifier(
                model, candidate_labels=list(SHAPES), random_state=seed
            ).fit([images[i] for i in train], labels[train])
            expected = clf.score([images[i] for i in test], labels[test])
            probe = LogisticRegression(max_iter=1000, random_state=seed)
            probe.fit(embeddings[train], labels[train])
            probed = probe.score(embeddings[test], labels[test])
            where = {"shots": count, "seed": seed}
            few = _values(report, task="few-shot", **where)["value"]
            lin = _values(report, task="linear probe", **where)["value"]
            assert few.tolist() == [expected]
            assert lin.tolist() == [probed]
    # Zero-shot against the classifier by hand, too.
    zero = CLIPZeroShotClassifier(model, candidate_labels=list(SHAPES)).fit(None)
    predicted = zero.predict(images)
    row = _values(report, task="zero-shot", prompts="simple")
    got = dict(zip(row["metric"], row["value"], strict=True))
    assert got == {
        "top-1": accuracy_score(labels, predicted),
        "balanced": balanced_accuracy_score(labels, predicted),
    }
    # Every row says which model, data and machine it belongs to.
    first = report.results.iloc[0]
    assert first["fingerprint"] == str(model.fingerprint)[:16]
    assert (first["n_images"], first["n_classes"]) == (24, 3)
    assert first["precision"] == "float32" and "cores" in first["machine"]


def test_few_shot_split_draws_per_class():
    labels = np.array(["a"] * 5 + ["b"] * 3 + ["c"])
    train, test, left_out = few_shot_split(labels, 2, random_state=3)
    assert left_out == ["c"]
    assert sorted(labels[train]) == ["a", "a", "b", "b"]
    assert sorted(np.r_[train, test]) == list(range(8))
    again = few_shot_split(labels, 2, random_state=3)
    assert again[0].tolist() == train.tolist()


@pytest.fixture(scope="module")
def captioned_table(tmp_path_factory):
    """Six images with five captions each (thirty rows), the paths relative."""
    root = tmp_path_factory.mktemp("captioned")
    shapes = make_shapes(6, image_size=16, random_state=1)
    rows = []
    for i, image in enumerate(shapes.images):
        Image.fromarray(image).save(root / f"{i}.png")
        for j in range(5):
            rows.append({"image": f"{i}.png", "caption": f"{shapes.captions[i]} {j}"})
    table = pd.DataFrame(rows)
    table.to_csv(root / "pairs.csv", index=False)
    return root / "pairs.csv", table


def test_retrieval_counts_every_caption_of_an_image(captioned_table, tiny_clip_path):
    path, table = captioned_table
    report = evaluate(tiny_clip_path, path, k=(1, 5), dtype="float32", progress=False)
    model = load_model(tiny_clip_path, dtype="float32")
    images = [str(path.parent / f"{i}.png") for i in range(6)]
    image_embeddings = model.encode_images(images)
    texts = model.encode_texts(table["caption"].tolist())
    expected = retrieval_report(
        image_embeddings, texts, np.repeat(np.arange(6), 5), k=(1, 5)
    )
    got = _values(report, task="retrieval")
    assert dict(zip(got["metric"], got["value"], strict=True)) == pytest.approx(
        expected
    )
    assert (got["n_images"].iloc[0], got["n_captions"].iloc[0]) == (6, 30)


def test_bad_input_is_named_and_the_rest_stands(
    class_folders, captioned_table, tiny_clip_path, tiny_siglip_path, tmp_path
):
    # An empty class folder, a label outside the label space, and a model
    # that fails to load among three.
    import shutil

    folder = tmp_path / "classes"
    shutil.copytree(class_folders, folder)
    (folder / "hexagon").mkdir()
    models = {
        "clip": tiny_clip_path,
        "broken": tmp_path / "no-such-model",
        "siglip": tiny_siglip_path,
    }
    report = evaluate(
        models, folder, shots=(2,), candidate_labels=["circle", "square", "star"],
        dtype="float32", progress=False,
    )  # fmt: skip
    problems = "\n".join(report.problems)
    assert "hexagon" in problems and "holds no image" in problems
    assert "label 'triangle' (8 images) is not among candidate_labels" in problems
    assert "model 'broken' failed" in problems
    assert set(report.results["model"]) == {"clip", "siglip"}
    assert (report.results["n_classes"] == 3).all()  # circle, square, star
    clean = evaluate(
        {"clip": tiny_clip_path}, class_folders, shots=(2,),
        candidate_labels=["circle", "square", "star"], dtype="float32",
        progress=False,
    )  # fmt: skip
    same = _values(report, model="clip")["value"].tolist()
    assert same == clean.results["value"].tolist()

    # A caption table with a missing image: that row is named, the rest evaluated.
    path, table = captioned_table
    missing = pd.DataFrame([{"image": "gone.png", "caption": "x"}])
    broken = pd.concat([table, missing], ignore_index=True)
    broken.to_csv(tmp_path / "pairs.csv", index=False)
    for i in range(6):
        shutil.copy(path.parent / f"{i}.png", tmp_path / f"{i}.png")
    report = evaluate(tiny_clip_path, tmp_path / "pairs.csv", progress=False,
                      dtype="float32")  # fmt: skip
    assert len(report.problems) == 1
    assert "row 30: image file" in report.problems[0]
    assert "gone.png' does not exist" in report.problems[0]
    reference = evaluate(tiny_clip_path, path, progress=False, dtype="float32")
    assert report.results["value"].tolist() == reference.results["value"].tolist()


def test_a_fine_tuner_and_a_report_plot(captioned_table, tiny_clip_path, float32):
    from sklearn_clip import CLIPContrastiveFinetuner

    path, table = captioned_table
    images = [str(path.parent / name) for name in table["image"]]
    tuner = CLIPContrastiveFinetuner(
        tiny_clip_path, max_epochs=1, batch_size=8, validation_fraction=None
    )
    tuner.fit(images, table["caption"])
    report = evaluate(
        {"base": tiny_clip_path, "tuned": tuner}, path, dtype="float32",
        progress=False,
    )  # fmt: skip
    fingerprints = report.results.groupby("model")["fingerprint"].first()
    assert fingerprints["base"] != fingerprints["tuned"]
    figure = report.plot()
    assert [ax.get_title() for ax in figure.axes] == ["retrieval recall@k"]


def test_a_datasets_dataset_reads_as_its_folder(class_folders, tiny_clip_path):
    datasets = pytest.importorskip("datasets")
    data = load_evaluation_data(class_folders)
    names = sorted(set(data.labels))
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
    )
    dataset = datasets.Dataset.from_dict(
        {"image": data.images, "label": [names.index(y) for y in data.labels]},
        features=features,
    )
    options = {"shots": (), "dtype": "float32", "progress": False}
    from_hub = evaluate(tiny_clip_path, dataset, **options)
    from_folder = evaluate(tiny_clip_path, class_folders, **options)
    assert from_hub.results["n_images"].iloc[0] == 24
    assert from_hub.results["value"].tolist() == from_folder.results["value"].tolist()
