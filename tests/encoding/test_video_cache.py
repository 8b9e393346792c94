"""The embedding cache keys a video frame by its clip's content and its time."""

import shutil

import numpy as np
import pytest

from sklearn_clip import CLIPEmbeddingTransformer
from sklearn_clip._encoding import video as video_module


@pytest.fixture
def decoded(monkeypatch):
    """The times of the frames decoded, as the test goes."""
    times = []
    frame_at = video_module.ClipReader.frame_at

    def counting(self, t):
        times.append(t)
        return frame_at(self, t)

    monkeypatch.setattr(video_module.ClipReader, "frame_at", counting)
    return times


def test_a_rerun_decodes_no_frame_and_a_copy_is_the_same_clip(
    tiny_clip_path, video_files, tmp_path, decoded
):
    est = CLIPEmbeddingTransformer(
        tiny_clip_path,
        dtype="float32",
        device="cpu",
        cache_dir=tmp_path / "cache",
        video={"frames": 5},
    ).fit([video_files["clip.mp4"]])
    first = est.transform([video_files["clip.mp4"]])
    assert len(decoded) == 5
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 5

    again = est.transform([video_files["clip.mp4"]])
    copy = shutil.copy(video_files["clip.mp4"], tmp_path / "renamed.mp4")
    renamed = est.transform([copy])
    assert len(decoded) == 5  # nothing decoded twice, whatever the file's name
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(renamed, first)


def test_other_content_or_other_times_are_other_entries(
    tiny_clip_path, video_files, tmp_path, decoded
):
    est = CLIPEmbeddingTransformer(
        tiny_clip_path,
        dtype="float32",
        device="cpu",
        cache_dir=tmp_path / "cache",
        video={"frames": 4},
    ).fit([video_files["clip.mp4"]])
    path = tmp_path / "clip.mp4"
    shutil.copy(video_files["clip.mp4"], path)
    before = est.transform([path])
    shutil.copy(video_files["short.mp4"], path)  # the same name, new content
    after = est.transform([path])
    assert len(decoded) == 4 + 3
    assert not np.allclose(before, after)
    est.set_params(video={"frames": 2}).transform([path])  # other times
    assert len(decoded) == 4 + 3 + 2


def test_frames_decoded_before_a_failure_are_kept_in_the_cache(
    tiny_clip_path, video_files, tmp_path, decoded
):
    est = CLIPEmbeddingTransformer(
        tiny_clip_path,
        dtype="float32",
        device="cpu",
        cache_dir=tmp_path / "cache",
        on_error="nan",
        video={"frames": 6},
    ).fit([video_files["clip.mp4"]])
    rows = [video_files["clip.mp4"], video_files["truncated.mkv"]]
    with pytest.warns(UserWarning):
        first = est.transform_frames(rows)
    n_decoded = len(decoded)
    with pytest.warns(UserWarning):
        second = est.transform_frames(rows)
    readable = first.notna().all(axis=1).sum()
    # Only the frames that failed are tried again.
    assert len(decoded) - n_decoded == len(first) - readable
    np.testing.assert_array_equal(second.to_numpy(), first.to_numpy())
