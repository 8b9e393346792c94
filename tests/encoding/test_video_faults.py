"""Bad videos: each gives its documented row error, and the other rows stay."""

import warnings

import numpy as np
import pytest

from sklearn_clip import CLIPEmbeddingTransformer
from sklearn_clip.exceptions import ImageInputError, InputErrorWarning

# What each bad file gives: the reason its row error names.
REASONS = {
    "truncated.mp4": "PyAV cannot open it as a video",  # its index was cut off
    "not_video.mp4": "PyAV cannot open it as a video",
    "audio.mp4": r"no video stream \(only audio\)",
    "empty.mp4": r"no video stream \(no stream at all: an empty clip\)",
    "truncated.mkv": r"frame \d at [\d.]+ s of path .*: EOFError: no frame at",
}


@pytest.fixture(scope="module")
def embedder(tiny_clip_path):
    return CLIPEmbeddingTransformer(
        tiny_clip_path, dtype="float32", device="cpu", video={"frames": 6}
    )


@pytest.mark.parametrize("name", sorted(REASONS))
def test_bad_clip_raises_naming_row_file_and_reason(embedder, video_files, name):
    rows = [video_files["clip.mp4"], video_files[name]]
    est = embedder.set_params(on_error="raise").fit(rows)
    with pytest.raises(ImageInputError) as caught:
        est.transform(rows)
    message = str(caught.value)
    assert message.startswith("could not read the video in row 1, ")
    assert str(video_files[name]) in message
    assert caught.match(REASONS[name])
    assert "\n" not in message


@pytest.mark.parametrize("name", sorted(REASONS))
def test_bad_clip_is_a_nan_row_and_the_others_are_kept(embedder, video_files, name):
    good = [video_files["clip.mp4"], video_files["short.mp4"]]
    est = embedder.set_params(on_error="nan").fit(good)
    alone = est.transform(good)
    with pytest.warns(InputErrorWarning) as record:
        out = est.transform([good[0], video_files[name], good[1]])
    np.testing.assert_allclose(out[[0, 2]], alone, atol=1e-6)
    assert np.isnan(out[1]).all()
    (error,) = record[0].message.errors
    assert error["position"] == 1
    assert error["source"] == str(video_files[name])


def test_truncated_clip_keeps_the_frames_it_has(embedder, video_files):
    # The header says 4 s; the data stops about half way: the frames before
    # the cut are embedded, those after it are NaN, and the clip is NaN
    # rather than pooled from part of itself.
    est = embedder.set_params(on_error="nan").fit([video_files["truncated.mkv"]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = est.transform_frames([video_files["clip.mkv"]])
    with pytest.warns(InputErrorWarning):
        table = est.transform_frames(
            [video_files["clip.mkv"], video_files["truncated.mkv"]]
        )
    features = est.get_feature_names_out()
    cut = table[table["row"] == 1]
    readable = ~cut[features].isna().any(axis=1).to_numpy()
    assert 0 < readable.sum() < len(cut)
    assert readable[: readable.sum()].all()  # the frames before the cut
    np.testing.assert_allclose(
        cut[features].to_numpy()[readable],
        whole[features].to_numpy()[readable],
        atol=1e-6,
    )
    with pytest.warns(InputErrorWarning):
        assert np.isnan(
            est.transform([video_files["truncated.mkv"], video_files["clip.mkv"]])[0]
        ).all()


def test_unopenable_clip_has_no_frames_in_the_long_table(embedder, video_files):
    est = embedder.set_params(on_error="nan").fit([video_files["clip.mp4"]])
    rows = [video_files["audio.mp4"], video_files["clip.mp4"]]
    with pytest.warns(InputErrorWarning, match="1 of 2 images could not be read"):
        table = est.transform_frames(rows)
    assert set(table["row"]) == {1}
    assert len(table) == 6


def test_every_clip_failing_raises(embedder, video_files):
    est = embedder.set_params(on_error="nan").fit([video_files["clip.mp4"]])
    with pytest.raises(ImageInputError, match="all 2 images failed"):
        est.transform([video_files["audio.mp4"], video_files["not_video.mp4"]])


def test_missing_video_file(embedder, tmp_path, video_files):
    est = embedder.set_params(on_error="raise").fit([video_files["clip.mp4"]])
    with pytest.raises(ImageInputError, match="FileNotFoundError: no such file"):
        est.transform([tmp_path / "gone.mp4"])
