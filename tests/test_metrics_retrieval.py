"""Retrieval ranks with several captions per image: a hand-computed case with
ties, CLIP_benchmark's own recall, and the scorers in a grid search."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from sklearn_clip import CLIPContrastiveFinetuner
from sklearn_clip.metrics import (
    make_retrieval_scorer,
    mean_rank,
    mean_reciprocal_rank,
    recall_at_k,
    retrieval_ranks,
    retrieval_recall,
    retrieval_report,
)

# Three images with five captions each: texts 0-4 are image 0's, 5-9 image
# 1's, 10-14 image 2's. Images are the rows of SCORES and texts the unit
# vectors, so each similarity is the number written here (exact in float32).
SCORES = np.array(
    [
        # t0   t1    t2    t3 t4 | t5  t6    t7    t8    t9 | t10   t11 t12 t13 t14
        [0.5, 0.25, 0.25, 0, 0, 0.5, 0, 0, 0, 0, 0.75, 0, 0, 0, 0],
        [0.25, 0, 0, 0, 0, 0, 0.25, 0.25, 0.25, 0, 0, 0, 0, 0, 0.25],
        [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
    ]
)
TEXTS = np.eye(15)
IMAGE_OF_TEXT = np.repeat(np.arange(3), 5)

# Worked by hand. Image 0: best caption t0 (0.5), tied by t5 and beaten by t10.
# Image 1: best captions t6-t8 (0.25), tied by t0 and t14. Image 2: t10 (1),
# tied by t1.
IMAGE_RANKS = {
    "pessimistic": [3, 3, 2],
    "optimistic": [2, 1, 1],
    "index": [2, 2, 2],  # ahead: t10; t0 (before t6); t1 (before t10)
}
# Each text has one image among three; a column of zeros ties all three.
TEXT_RANKS = {
    "pessimistic": [1, 2, 1, 3, 3, 3, 1, 1, 1, 3, 1, 3, 3, 3, 3],
    "optimistic": [1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2],
    "index": [1, 2, 1, 1, 1, 2, 1, 1, 1, 2, 1, 3, 3, 3, 3],
}


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "index"])
def test_ranks_with_five_captions_per_image_and_ties(ties):
    assert (
        retrieval_ranks(SCORES, TEXTS, IMAGE_OF_TEXT, ties=ties).tolist()
        == (IMAGE_RANKS[ties])
    )
    ranks = retrieval_ranks(
        SCORES, TEXTS, IMAGE_OF_TEXT, direction="text_to_image", ties=ties
    )
    assert ranks.tolist() == TEXT_RANKS[ties]


def test_recall_mean_rank_and_mrr_by_hand():
    # Pessimistic (the default): image ranks 3, 3, 2.
    assert retrieval_recall(SCORES, TEXTS, IMAGE_OF_TEXT, k=1) == 0.0
    assert retrieval_recall(SCORES, TEXTS, IMAGE_OF_TEXT, k=2) == pytest.approx(1 / 3)
    assert retrieval_recall(SCORES, TEXTS, IMAGE_OF_TEXT, k=3) == 1.0
    assert mean_rank(SCORES, TEXTS, IMAGE_OF_TEXT) == pytest.approx(8 / 3)
    assert mean_reciprocal_rank(SCORES, TEXTS, IMAGE_OF_TEXT) == pytest.approx(
        (1 / 3 + 1 / 3 + 1 / 2) / 3
    )
    # Text to image: 6 of 15 captions rank their image first, 12 of 15 when
    # ties go the caption's way.
    t2i = {"direction": "text_to_image"}
    assert retrieval_recall(SCORES, TEXTS, IMAGE_OF_TEXT, **t2i) == 0.4
    optimistic = retrieval_recall(
        SCORES, TEXTS, IMAGE_OF_TEXT, ties="optimistic", **t2i
    )
    assert optimistic == 0.8
    assert mean_rank(SCORES, TEXTS, IMAGE_OF_TEXT, **t2i) == pytest.approx(32 / 15)
    report = retrieval_report(SCORES, TEXTS, IMAGE_OF_TEXT, k=(1, 2))
    assert report["image_to_text_recall@2"] == pytest.approx(1 / 3)
    assert report["text_to_image_recall@1"] == 0.4
    assert report["text_to_image_mean_rank"] == pytest.approx(32 / 15)


def test_pairs_of_shared_captions_and_images_without_captions():
    # (image, text) pairs: text 0 describes images 0 and 1; image 2 has none,
    # so it is no query.
    images = np.eye(3)
    texts = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    pairs = [(0, 0), (1, 0), (1, 1)]
    assert retrieval_ranks(images, texts, pairs).tolist() == [2, 1]
    assert retrieval_ranks(
        images, texts, pairs, direction="text_to_image"
    ).tolist() == [2, 1]
    recall = recall_at_k(images, texts[[1, 0]], [1, 0, 0], ties="optimistic")
    assert recall == pytest.approx(2 / 3)


def test_bad_pairs_and_options_are_named():
    with pytest.raises(ValueError, match="pair 1 is \\(3, 0\\)"):
        retrieval_ranks(np.eye(3), np.eye(3), [(0, 0), (3, 0)])
    with pytest.raises(ValueError, match="image row of each of the 3 texts"):
        retrieval_ranks(np.eye(3), np.eye(3), [0, 1])
    with pytest.raises(ValueError, match="ties must be one of"):
        retrieval_ranks(np.eye(3), np.eye(3), [0, 1, 2], ties="random")
    with pytest.raises(ValueError, match="same number of columns"):
        retrieval_ranks(np.eye(3), np.eye(2), [0, 1])
    with pytest.raises(ValueError, match="metric must be one of"):
        make_retrieval_scorer("map")


def _unit(rows):
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_recall_equals_clip_benchmarks_own(k):
    torch = pytest.importorskip("torch")
    # clip_benchmark.metrics.zeroshot_retrieval imports only torch and tqdm.
    from clip_benchmark.metrics.zeroshot_retrieval import recall_at_k as cb_recall

    rng = np.random.default_rng(k)
    images = _unit(rng.standard_normal((40, 16)))
    image_of_text = np.repeat(np.arange(40), 5)
    texts = _unit(images[image_of_text] + 0.9 * rng.standard_normal((200, 16)))
    # As CLIP_benchmark's evaluate(): scores (texts, images), a positive
    # matrix from each text's image, and "recall > 0" averaged over queries.
    scores = torch.from_numpy(texts) @ torch.from_numpy(images).T
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(200), torch.from_numpy(image_of_text)] = True
    text_to_image = (cb_recall(scores, positive, k) > 0).float().mean().item()
    image_to_text = (cb_recall(scores.T, positive.T, k) > 0).float().mean().item()
    ours = retrieval_report(images, texts, image_of_text, k=(k,))
    assert ours[f"text_to_image_recall@{k}"] == pytest.approx(text_to_image, abs=1e-7)
    assert ours[f"image_to_text_recall@{k}"] == pytest.approx(image_to_text, abs=1e-7)
    assert 0 < ours[f"text_to_image_recall@{k}"] < 1


@pytest.fixture(scope="module")
def captioned_files(tmp_path_factory, gradient):
    """Six image files, each with two captions: twelve (path, caption) rows."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("captioned")
    paths, captions = [], []
    for i in range(6):
        path = folder / f"{i}.png"
        Image.fromarray(gradient(20, 20, i)).save(path)
        paths += [str(path), str(path)]
        captions += [f"picture number {i}", f"image {i} of six"]
    return paths, captions


def test_scorer_groups_an_images_captions(tiny_clip_path, captioned_files, float32):
    paths, captions = captioned_files
    tuner = CLIPContrastiveFinetuner(
        tiny_clip_path, max_epochs=1, batch_size=4, validation_fraction=None
    )
    tuner.fit(paths, captions)
    images = tuner.transform(paths[::2])
    distinct, text_ids = np.unique(captions, return_inverse=True)
    texts = tuner.transform(list(distinct), modality="text")
    pairs = np.column_stack([np.repeat(np.arange(6), 2), text_ids])
    for metric, expected in [
        ("recall", retrieval_recall(images, texts, pairs, k=2)),
        ("mean_reciprocal_rank", mean_reciprocal_rank(images, texts, pairs)),
        ("neg_mean_rank", -mean_rank(images, texts, pairs)),
    ]:
        scorer = make_retrieval_scorer(metric, k=2)
        assert scorer(tuner, paths, captions) == expected


def test_scorers_in_a_grid_search_over_the_finetuner(
    tiny_clip_path, captioned_files, float32
):
    paths, captions = captioned_files
    search = GridSearchCV(
        CLIPContrastiveFinetuner(
            tiny_clip_path, max_epochs=1, batch_size=4, validation_fraction=None
        ),
        {"learning_rate": [1e-5, 1e-3]},
        scoring={
            "recall@5": make_retrieval_scorer(k=5, direction="text_to_image"),
            "mrr": make_retrieval_scorer("mean_reciprocal_rank"),
        },
        refit="mrr",
        cv=2,
        error_score="raise",
    )
    search.fit(paths, captions)
    results = search.cv_results_
    assert results["mean_test_mrr"].shape == (2,)
    assert np.all((results["mean_test_recall@5"] > 0) & (results["mean_test_mrr"] > 0))
    assert search.best_params_["learning_rate"] in (1e-5, 1e-3)
