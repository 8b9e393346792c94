"""CLIPFewShotClassifier: zero-shot at 0 shots, errors, and (slow) its gains.

The fast tests use the tiny random model; the slow ones a small CLIP that the
demo trains on generated shapes, asked for the shape of held-out images, a
task its zero-shot accuracy leaves room on.
"""

import contextlib

import numpy as np
import pytest
from sklearn import config_context
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedKFold,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import make_pipeline

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
    FewShotWarning,
    _base,
)
from sklearn_clip._classify.few_shot_methods import FALLBACK

LABELS = ["bird", "cat", "dog"]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 24, 24, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def labels():
    return np.repeat(LABELS, 4)


@pytest.mark.parametrize("method", ["linear", "tip"])
def test_no_images_is_the_zero_shot_classifier(tiny_clip_path, images, method):
    zero_shot = CLIPZeroShotClassifier(tiny_clip_path).fit(None, LABELS)
    few_shot = CLIPFewShotClassifier(tiny_clip_path, method=method).fit(None, LABELS)
    np.testing.assert_array_equal(few_shot.predict(images), zero_shot.predict(images))
    np.testing.assert_allclose(
        few_shot.predict_proba(images), zero_shot.predict_proba(images), atol=1e-6
    )
    assert few_shot.cv_results_ is None
    assert (few_shot.regularization_, few_shot.prompt_weight_) == (np.inf, 1.0)


def test_classes_without_images_keep_their_text_weights(tiny_clip_path, images, labels):
    clf = CLIPFewShotClassifier(
        tiny_clip_path,
        candidate_labels=[*LABELS, "fish"],
        regularization=0.1,
        prompt_weight=1.0,
    ).fit(images, labels)
    fish = clf.classes_.tolist().index("fish")
    text = clf.logit_scale_ * clf.class_embeddings_
    np.testing.assert_allclose(clf.coef_[fish], text[fish], atol=1e-6)
    assert not np.allclose(clf.coef_, text, atol=1e-3)
    np.testing.assert_array_equal(clf.intercept_, 0.0)
    assert clf.regularization_ == 0.1 and clf.cv_results_ is None


@pytest.mark.parametrize("method", ["linear", "tip"])
def test_cv_chooses_from_the_grid_and_reports_it(
    tiny_clip_path, images, labels, method
):
    clf = CLIPFewShotClassifier(tiny_clip_path, method=method, cv=2, random_state=0)
    clf.fit(images, labels)
    results = clf.cv_results_
    n = len(results["params"])
    # 12 images: the 2 folds are repeated 5 times, 10 splits in all.
    splits = [f"split{k}_test_accuracy" for k in range(10)]
    assert {
        k: np.shape(v) for k, v in results.items() if k != "params"
    } == dict.fromkeys(
        ["mean_test_accuracy", "std_test_accuracy", "mean_test_log_loss", *splits],
        (n,),
    )
    best = np.flatnonzero(
        results["mean_test_accuracy"] == results["mean_test_accuracy"].max()
    )
    chosen = {
        "regularization": clf.regularization_,
        "prompt_weight": clf.prompt_weight_,
    }
    assert chosen in [{k: results["params"][i][k] for k in chosen} for i in best]
    first = results["params"][0]
    assert (first["regularization"], first["prompt_weight"]) == (np.inf, 1.0)
    # both ends of the path are candidates: the prompts and a plain probe
    assert {p["prompt_weight"] for p in results["params"]} == {0.0, 1.0}


def test_prompt_weight_zero_is_logistic_regression(tiny_clip_path, images, labels):
    """The probe's end of the path is reachable: scikit-learn's own probe."""
    clf = CLIPFewShotClassifier(
        tiny_clip_path, regularization=0.5, prompt_weight=0.0, max_iter=5000
    ).fit(images, labels)
    embeddings = CLIPEmbeddingTransformer(tiny_clip_path).fit(images).transform(images)
    probe = LogisticRegression(C=1 / (0.5 * len(images)), tol=1e-10, max_iter=5000)
    probe.fit(embeddings, labels)
    np.testing.assert_allclose(
        clf.predict_proba(images), probe.predict_proba(embeddings), atol=1e-4
    )


def test_image_embeddings_are_computed_once_per_fit(
    tiny_clip_path, images, labels, monkeypatch
):
    calls = []
    encode_rows = _base.encode_rows

    def counting(*args, **kwargs):
        calls.append(kwargs["modality"])
        return encode_rows(*args, **kwargs)

    monkeypatch.setattr(_base, "encode_rows", counting)
    CLIPFewShotClassifier(tiny_clip_path, cv=3).fit(images, labels)
    assert calls == ["image"]


@pytest.mark.parametrize("method", ["linear", "tip"])
def test_one_image_of_a_class_falls_back_with_a_warning(tiny_clip_path, images, method):
    clf = CLIPFewShotClassifier(tiny_clip_path, method=method)
    with pytest.warns(FewShotWarning, match=r"\['bird', 'cat', 'dog'\] have one"):
        clf.fit(images[:3], LABELS)
    assert clf.regularization_ == FALLBACK["regularization"]
    assert clf.prompt_weight_ == FALLBACK["prompt_weight"]
    assert clf.cv_results_ is None


def test_fit_refuses_bad_targets(tiny_clip_path, images, labels):
    clf = CLIPFewShotClassifier(tiny_clip_path, candidate_labels=LABELS)
    with pytest.raises(ValueError, match=r"not in candidate_labels: \['fish'\]"):
        clf.fit(images, [*labels[:-1], "fish"])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        clf.fit(images, labels[:-1])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"method": "linear", "regularization": (0.1, 1.0)}, "former .alpha, beta."),
        ({"method": "tip", "regularization": (0.1,)}, "two finite numbers"),
        ({"method": "tip", "regularization": (np.inf, 1.0)}, "two finite numbers"),
        ({"method": "tip", "regularization": (0.1, np.nan)}, "two finite numbers"),
        ({"regularization": -1.0}, "'regularization' parameter"),
        ({"regularization": 0.0}, "'regularization' parameter"),
        ({"prompt_weight": 1.5}, "'prompt_weight' parameter"),
        ({"class_weight": "even"}, "'class_weight' parameter"),
    ],
)
def test_fit_refuses_bad_settings(tiny_clip_path, images, labels, params, match):
    with pytest.raises(ValueError, match=match):
        CLIPFewShotClassifier(tiny_clip_path, **params).fit(images, labels)


def test_tip_float_regularization_is_alpha_over_it(tiny_clip_path, images, labels):
    """One meaning for both methods: Tip-Adapter's alpha = 0.01 / regularization
    (beta 5.5), the former (alpha, beta) pair giving the same head."""
    tip = {"method": "tip", "prompt_weight": 1.0}
    pair = CLIPFewShotClassifier(tiny_clip_path, regularization=(0.02, 5.5), **tip)
    value = CLIPFewShotClassifier(tiny_clip_path, regularization=0.5, **tip)
    probabilities = value.fit(images, labels).predict_proba(images)
    np.testing.assert_allclose(
        pair.fit(images, labels).predict_proba(images), probabilities, atol=1e-12
    )
    assert np.isfinite(probabilities).all() and value.beta_ == 5.5
    zero_shot = CLIPZeroShotClassifier(tiny_clip_path).fit(None, LABELS)
    infinite = CLIPFewShotClassifier(tiny_clip_path, regularization=np.inf, **tip)
    np.testing.assert_allclose(
        infinite.fit(images, labels).predict_proba(images),
        zero_shot.predict_proba(images),
        atol=1e-6,
    )


@pytest.mark.parametrize("method", ["linear", "tip"])
def test_sample_weight_counts_like_repeated_images(
    tiny_clip_path, images, labels, method
):
    fixed = {"method": method, "regularization": 0.3, "prompt_weight": 1.0}
    weights = np.array([2, 1, 1, 0] * 3)
    weighted = CLIPFewShotClassifier(tiny_clip_path, **fixed)
    weighted.fit(images, labels, sample_weight=weights)
    repeated = np.repeat(np.arange(12), weights)
    plain = CLIPFewShotClassifier(tiny_clip_path, **fixed)
    plain.fit(images[repeated], labels[repeated])
    np.testing.assert_allclose(
        weighted.predict_proba(images), plain.predict_proba(images), atol=1e-5
    )
    unweighted = CLIPFewShotClassifier(tiny_clip_path, **fixed).fit(images, labels)
    assert not np.allclose(
        weighted.predict_proba(images), unweighted.predict_proba(images), atol=1e-4
    )


def test_class_weight_multiplies_sample_weight(tiny_clip_path, images, labels):
    fixed = {"regularization": 0.3, "prompt_weight": 0.0}
    rows = np.r_[0:4, 4:6, 8:10]  # four birds, two cats, two dogs
    balanced = CLIPFewShotClassifier(tiny_clip_path, class_weight="balanced", **fixed)
    balanced.fit(images[rows], labels[rows], sample_weight=np.full(8, 2.0))
    expected = CLIPFewShotClassifier(tiny_clip_path, **fixed)
    expected.fit(images[rows], labels[rows], sample_weight=[1.5] * 4 + [3.0] * 4)
    np.testing.assert_allclose(
        balanced.predict_proba(images), expected.predict_proba(images), atol=1e-6
    )


def test_sample_weight_is_routed(tiny_clip_path, images, labels):
    """With metadata routing: through cross_validate and through a Pipeline."""
    clf = CLIPFewShotClassifier(tiny_clip_path, regularization=0.3, prompt_weight=1.0)
    weights = np.array([3.0, 1.0, 0.0, 1.0] * 3)
    folds = StratifiedKFold(2)
    with config_context(enable_metadata_routing=True):
        clf.set_fit_request(sample_weight=True).set_score_request(sample_weight=False)
        routed = cross_validate(
            clf, images, labels, cv=folds, params={"sample_weight": weights}
        )["test_score"]
        pipeline = make_pipeline(clone(clf)).fit(images, labels, sample_weight=weights)
    by_hand = [
        clone(clf)
        .fit(images[train], labels[train], sample_weight=weights[train])
        .score(images[test], labels[test])
        for train, test in folds.split(images, labels)
    ]
    np.testing.assert_allclose(routed, by_hand)
    weighted = clone(clf).fit(images, labels, sample_weight=weights)
    np.testing.assert_allclose(
        pipeline.predict_proba(images), weighted.predict_proba(images)
    )


def test_a_grid_spans_both_methods(tiny_clip_path, images, labels):
    clf = CLIPFewShotClassifier(tiny_clip_path, candidate_labels=LABELS, cv=2)
    grid = {"method": ["linear", "tip"], "regularization": [0.1, 1.0, np.inf]}
    search = GridSearchCV(clf, grid, cv=2, error_score="raise").fit(images, labels)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    scores = cross_val_score(clf, images, labels, cv=2, error_score="raise")
    assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))


# -- slow: gains over zero-shot and over a probe, on the demo's model ----------

SHAPES = ("circle", "square", "triangle", "cross", "diamond")


@pytest.fixture(scope="module")
def world(demo_model_path, tmp_path_factory):
    """The shape task: a labelled pool, held-out images, and the zero-shot."""
    from sklearn_clip.datasets import COLORS, make_shapes

    pool = make_shapes(800, image_size=32, random_state=101)
    test = make_shapes(1000, image_size=32, random_state=102)
    options = {
        "candidate_labels": list(SHAPES),
        "templates": ["a {}", *(f"a {color} {{}}" for color in COLORS)],
        "cache_dir": tmp_path_factory.mktemp("few-shot-cache"),
    }
    zero_shot = CLIPZeroShotClassifier(demo_model_path, **options).fit()
    embed = CLIPEmbeddingTransformer(demo_model_path, cache_dir=options["cache_dir"])
    embed.fit(pool.images)
    return {
        "pool": (pool.images, pool.shape.astype(str), embed.transform(pool.images)),
        "test": (test.images, test.shape.astype(str), embed.transform(test.images)),
        "zero_shot": zero_shot.score(test.images, test.shape.astype(str)),
        "options": options,
        "model": demo_model_path,
    }


def _sample(labels, shots, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), shots, replace=False) for c in SHAPES]
    )


def _probe(shots):
    probe = LogisticRegression(max_iter=2000)
    if shots < 2:
        return probe
    grid = {"C": np.logspace(-2, 3, 6)}
    return GridSearchCV(probe, grid, cv=StratifiedKFold(min(5, shots)))


def _accuracies(world, shots, seeds=(0, 1, 2)):
    images, labels, embeddings = world["pool"]
    test_images, test_labels, test_embeddings = world["test"]
    rows = []
    for seed in seeds:
        chosen = _sample(labels, shots, seed)
        few_shot = CLIPFewShotClassifier(
            world["model"], random_state=seed, **world["options"]
        )
        expected = pytest.warns(FewShotWarning) if shots == 1 else _no_warning()
        with expected:
            few_shot.fit(images[chosen], labels[chosen])
        probe = _probe(shots).fit(embeddings[chosen], labels[chosen])
        rows.append(
            (
                few_shot.score(test_images, test_labels),
                probe.score(test_embeddings, test_labels),
            )
        )
    print(f"{shots} shot(s), seeds {seeds}: (ours, probe) = {rows}")
    return np.mean(rows, axis=0)


def _no_warning():
    return contextlib.nullcontext()


@pytest.mark.slow
def test_zero_shot_leaves_room(world):
    print(f"zero-shot shape accuracy: {world['zero_shot']:.3f}")
    assert 0.3 < world["zero_shot"] < 0.9


@pytest.mark.slow
def test_one_shot_is_no_worse_than_zero_shot_and_beats_a_probe(world):
    ours, probe = _accuracies(world, shots=1)
    assert ours >= world["zero_shot"] - 0.01
    assert ours > probe


@pytest.mark.slow
def test_sixteen_shots_are_no_worse_than_zero_shot_or_a_probe(world):
    ours, probe = _accuracies(world, shots=16)
    assert ours >= max(world["zero_shot"], probe) - 0.01
