"""Classifiers over videos: one prediction per clip, and a label track per frame."""

import numpy as np
import pytest
from scipy.special import softmax

from sklearn_clip import (
    CLIPEmbeddingTransformer,
    CLIPFewShotClassifier,
    CLIPZeroShotClassifier,
)
from sklearn_clip.exceptions import InputErrorWarning

LABELS = ["a red square", "a blue sky", "a green field"]


@pytest.fixture(scope="module")
def fitted(tiny_clip_path):
    options = {"dtype": "float32", "device": "cpu", "video": {"frames": 4}}
    clf = CLIPZeroShotClassifier(tiny_clip_path, candidate_labels=LABELS, **options)
    return clf.fit(), CLIPEmbeddingTransformer(tiny_clip_path, **options).fit([])


def zero_shot(clf, embeddings):
    return softmax(clf.logit_scale_ * embeddings @ clf.class_embeddings_.T, axis=1)


def test_a_clip_is_classified_by_its_pooled_embedding(fitted, video_files):
    clf, embedder = fitted
    clips = [video_files["clip.mp4"], video_files["vfr.mkv"]]
    expected = zero_shot(clf, embedder.transform(clips))
    np.testing.assert_allclose(clf.predict_proba(clips), expected, atol=1e-5)
    assert list(clf.predict(clips)) == list(clf.classes_[expected.argmax(axis=1)])


def test_label_track_scores_each_frame(fitted, video_files):
    clf, embedder = fitted
    clips = [video_files["clip.mp4"], video_files["short.mp4"]]
    track = clf.predict_frames(clips)
    frames = embedder.transform_frames(clips)
    expected = zero_shot(clf, frames[embedder.get_feature_names_out()].to_numpy())
    columns = [f"proba_{label}" for label in clf.classes_]
    np.testing.assert_allclose(track[columns].to_numpy(), expected, atol=1e-5)
    assert track["label"].tolist() == list(clf.classes_[expected.argmax(axis=1)])
    assert track[["row", "frame"]].values.tolist() == [
        [0, 0],
        [0, 1],
        [0, 2],
        [0, 3],
        [1, 0],
        [1, 1],
        [1, 2],
    ]
    np.testing.assert_array_equal(track["time"], frames["time"])


def test_label_track_names_unreadable_frames(fitted, video_files):
    clf, _ = fitted
    clf.set_params(on_error="nan")
    try:
        with pytest.warns(InputErrorWarning):
            track = clf.predict_frames(
                [video_files["truncated.mkv"], video_files["short.mp4"]]
            )
    finally:
        clf.set_params(on_error="raise")
    unread = track["label"].isna().to_numpy()
    assert unread.any() and not unread[track["row"] == 0].all()
    assert not unread[track["row"] == 1].any()
    assert track.loc[unread, "proba_a blue sky"].isna().all()


def test_few_shot_learns_from_clips_pooled_by_its_rule(tiny_clip_path, video_files):
    options = {"dtype": "float32", "device": "cpu", "video": {"frames": 3}}
    clips = [video_files[name] for name in ("clip.mp4", "vfr.mkv", "short.mp4")]
    clips = clips * 2
    labels = ["a red square", "a blue sky", "a green field"] * 2
    clf = CLIPFewShotClassifier(tiny_clip_path, prompt_weight=0.0, **options)
    clf.fit(clips, labels)
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, **options).fit([])

    def head(embeddings):
        return softmax(embeddings @ clf.coef_.T + clf.intercept_, axis=1)

    np.testing.assert_allclose(
        clf.predict_proba(clips), head(embedder.transform(clips)), atol=1e-5
    )
    track, frames = clf.predict_frames(clips[:2]), embedder.transform_frames(clips[:2])
    assert track["frame"].tolist() == [0, 1, 2, 0, 1, 2]
    columns = [f"proba_{label}" for label in clf.classes_]
    expected = head(frames[embedder.get_feature_names_out()].to_numpy())
    np.testing.assert_allclose(track[columns].to_numpy(), expected, atol=1e-5)
