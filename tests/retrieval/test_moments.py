"""Search over moments: hits name a clip and a time, and that frame matches best."""

import numpy as np
import pytest

from sklearn_clip import CLIPEmbeddingTransformer, CLIPNearestNeighbors
from sklearn_clip.exceptions import InputErrorWarning

OPTIONS = {"dtype": "float32", "device": "cpu", "video": {"fps": 4.0}}


@pytest.fixture(scope="module")
def collection(tiny_clip_path, video_files, image_files):
    rows = [video_files["clip.mp4"], image_files["rgb.png"], video_files["clip.mkv"]]
    searcher = CLIPNearestNeighbors(tiny_clip_path, n_neighbors=3, **OPTIONS)
    embedder = CLIPEmbeddingTransformer(tiny_clip_path, **OPTIONS).fit(rows)
    return rows, searcher.fit(rows), embedder


@pytest.mark.parametrize("query", ["a red square", "a blue sky at noon"])
def test_each_hit_is_the_frame_at_its_time_best_first(collection, pyav_frame_at, query):
    rows, searcher, embedder = collection
    n_frames = len(searcher.frames_["row"])
    hits = searcher.search_moments([query], n_frames, query_modality="text")
    text = CLIPEmbeddingTransformer(embedder.model, modality="text", **OPTIONS)
    query_embedding = text.fit([query]).transform([query])[0]
    similarities = []
    for row, time in zip(hits["row"], hits["time"]):
        if np.isnan(time):
            image = [rows[row]]  # a still image is its own moment
        else:
            image = pyav_frame_at(rows[row], time)[None]
        similarities.append(embedder.transform(image)[0] @ query_embedding)
    np.testing.assert_allclose(1 - hits["distance"], similarities, atol=1e-5)
    assert similarities[0] >= max(similarities) - 1e-6  # the best, within ties
    assert (np.diff(hits["distance"]) >= 0).all()


def test_a_frame_finds_its_own_clip_and_time(collection, video_files, pyav_frame_at):
    _, searcher, _ = collection
    frames = searcher.frames_
    # The frame the mkv clip shows at its fifth sampled time, from PyAV.
    t = frames["time"][(frames["row"] == 2) & (frames["frame"] == 4)][0]
    query = pyav_frame_at(video_files["clip.mkv"], t)[None]
    top = searcher.search_moments(query, 1, query_modality="image").iloc[0]
    assert (top["row"], top["frame"], top["time"]) == (2, 4, t)
    assert top["distance"] < 1e-6


def test_clips_search_by_their_pooled_embedding(collection):
    rows, searcher, embedder = collection
    np.testing.assert_allclose(
        searcher.embeddings_, embedder.transform(rows), atol=1e-6
    )
    assert searcher.frames_["row"].tolist().count(1) == 1  # the still image


def test_partial_fit_numbers_new_frames_after_the_old_rows(
    tiny_clip_path, video_files, image_files
):
    searcher = CLIPNearestNeighbors(tiny_clip_path, **OPTIONS)
    searcher.fit([image_files["rgb.png"], image_files["rgb.jpg"]])
    assert "frames_" not in searcher.__dict__
    with pytest.raises(ValueError, match="needs a collection with videos"):
        searcher.search_moments(["a red square"], 1, query_modality="text")
    searcher.partial_fit([video_files["clip.mkv"]])  # 4 s at 4 frames a second
    assert searcher.frames_["row"].tolist() == [0, 1] + [2] * 16
    searcher.partial_fit([image_files["rgb.png"]])
    assert searcher.frames_["row"].tolist() == [0, 1] + [2] * 16 + [3]
    assert searcher.frames_["embedding"].shape == (19, searcher.embedding_dim_)
    np.testing.assert_array_equal(
        searcher.frames_["embedding"][[0, 1, 18]], searcher.embeddings_[[0, 1, 3]]
    )


def test_unreadable_query_and_clip(tiny_clip_path, video_files, tmp_path):
    searcher = CLIPNearestNeighbors(tiny_clip_path, on_error="nan", **OPTIONS)
    with pytest.warns(InputErrorWarning):
        searcher.fit([video_files["clip.mp4"], video_files["audio.mp4"]])
    assert set(searcher.frames_["row"]) == {0}
    assert searcher.input_errors_[0]["position"] == 1
    with pytest.warns(InputErrorWarning):
        hits = searcher.search_moments(
            [tmp_path / "missing.png", video_files["clip.mp4"]],
            2,
            query_modality="image",
        )
    assert hits["row"].tolist()[:2] == [-1, -1]
    assert np.isinf(hits["distance"][:2]).all()
    assert hits["row"].tolist()[2:] == [0, 0]
