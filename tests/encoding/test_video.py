"""Videos as rows: sampled frames equal PyAV's own frames, clips pool them."""

import sys
import types

import av
import numpy as np
import pandas as pd
import pytest

from sklearn_clip import CLIPEmbeddingTransformer
from sklearn_clip.exceptions import ImageInputError


def header_duration(path):
    """The clip's duration as its header says: the stream's, else the file's."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return container.duration / 1_000_000


def documented_times(duration, n):
    return [(k + 0.5) * duration / n for k in range(n)]


@pytest.fixture(scope="module")
def embedder(tiny_clip_path):
    return CLIPEmbeddingTransformer(tiny_clip_path, dtype="float32", device="cpu")


@pytest.mark.parametrize(
    "name, video, n",
    [
        ("clip.mp4", None, 8),
        ("clip.mp4", {"frames": 5}, 5),
        ("clip.mp4", {"fps": 2.0}, 6),
        ("clip.mkv", {"frames": 3}, 3),
        ("rotated.mp4", {"frames": 4}, 4),
        ("vfr.mkv", {"frames": 6}, 6),
        ("short.mp4", {"frames": 16}, 3),  # a clip shorter than the frames asked
    ],
)
def test_frames_equal_pyav_frames_passed_as_arrays(
    embedder, video_files, pyav_frame_at, name, video, n
):
    path = video_files[name]
    times = documented_times(header_duration(path), n)
    reference_frames = [pyav_frame_at(path, t) for t in times]
    est = embedder.set_params(video=video).fit([path])
    expected = est.transform(np.stack(reference_frames))

    table = est.transform_frames([str(path)])
    features = est.get_feature_names_out()
    np.testing.assert_allclose(table["time"], times, rtol=0, atol=1e-9)
    assert table["frame"].tolist() == list(range(n))
    assert (table["row"] == 0).all()
    np.testing.assert_allclose(table[features].to_numpy(), expected, atol=1e-6)

    clip = est.transform([path])
    mean = expected.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(clip[0], mean / np.linalg.norm(mean), atol=1e-6)
    assert clip.dtype == np.float32


def test_rotated_clip_is_upright(embedder, video_files, pyav_frame_at):
    # The display matrix turns the stored 96 x 64 frames by 90 degrees.
    with av.open(str(video_files["rotated.mp4"])) as container:
        assert next(container.decode(video=0)).rotation == 90
    assert pyav_frame_at(video_files["rotated.mp4"], 0.0).shape == (96, 64, 3)


def test_max_pooling_and_unnormalised_mean(embedder, video_files):
    path = video_files["clip.mp4"]
    est = embedder.set_params(video={"frames": 4, "pooling": "max"}).fit([path])
    frames = est.transform_frames([path])[est.get_feature_names_out()].to_numpy()
    np.testing.assert_allclose(
        est.transform([path])[0],
        frames.max(axis=0) / np.linalg.norm(frames.max(axis=0)),
        atol=1e-6,
    )
    raw = est.set_params(normalize=False, video={"frames": 4})
    frames = raw.transform_frames([path])[raw.get_feature_names_out()].to_numpy()
    np.testing.assert_allclose(raw.transform([path])[0], frames.mean(axis=0), atol=1e-6)
    embedder.set_params(normalize=True)


def test_videos_and_images_mix_and_keep_their_rows(embedder, video_files, image_files):
    rows = pd.Series(
        [str(image_files["rgb.jpg"]), video_files["clip.mp4"], image_files["rgb.png"]],
        index=["a", "b", "c"],
    )
    est = embedder.set_params(video={"frames": 2}).fit(rows)
    mixed = est.transform(rows)
    alone = est.transform(rows[["a", "c"]])
    # Equal up to the rounding of other batch compositions.
    np.testing.assert_allclose(mixed[[0, 2]], alone, atol=1e-6)
    video_alone = est.transform([video_files["clip.mp4"]])[0]
    np.testing.assert_allclose(mixed[1], video_alone, atol=1e-6)
    table = est.transform_frames(rows)
    assert table["row"].tolist() == ["a", "b", "b", "c"]
    assert table["time"].isna().tolist() == [True, False, False, True]


def test_bytes_and_datasets_values_read_as_the_file(embedder, video_files):
    path = video_files["clip.mkv"]
    data = path.read_bytes()
    est = embedder.set_params(video={"frames": 3}).fit([path])
    rows = [
        path,
        data,
        {"bytes": None, "path": str(path)},
        {"bytes": data, "path": None},
    ]
    out = est.transform(rows)
    for row in out[1:]:
        np.testing.assert_allclose(row, out[0], atol=1e-6)


class StandInVideoDecoder:
    """torchcodec's ``VideoDecoder`` as datasets calls it, for this test only:
    torchcodec needs FFmpeg's shared libraries, which the test machines lack.
    datasets' own ``Video`` feature decodes the column and tags each value."""

    __module__ = "torchcodec.decoders"

    def __init__(self, source, **options):
        self.metadata = types.SimpleNamespace(path=None)


@pytest.fixture
def datasets_decodes_videos(monkeypatch):
    datasets = pytest.importorskip("datasets")
    package = types.ModuleType("torchcodec")
    package.decoders = types.ModuleType("torchcodec.decoders")
    package.decoders.VideoDecoder = StandInVideoDecoder
    package.decoders.AudioDecoder = type("AudioDecoder", (), {})
    monkeypatch.setitem(sys.modules, "torchcodec", package)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", package.decoders)
    monkeypatch.setattr(datasets.config, "TORCHCODEC_AVAILABLE", True)
    return datasets


def test_decoded_datasets_videos_read_as_their_file(
    embedder, video_files, datasets_decodes_videos
):
    datasets, path = datasets_decodes_videos, video_files["clip.mkv"]
    values = [str(path), {"bytes": path.read_bytes(), "path": None}]
    features = datasets.Features({"video": datasets.Video()})
    column = datasets.Dataset.from_dict({"video": values}, features=features)["video"]
    assert all(isinstance(value, StandInVideoDecoder) for value in column)

    est = embedder.set_params(video={"frames": 3}).fit([path])
    expected = est.transform([path, path])
    np.testing.assert_allclose(est.transform(column), expected, atol=1e-6)
    with pytest.raises(ImageInputError, match="not made by datasets' Video"):
        est.transform([StandInVideoDecoder(str(path))])


@pytest.mark.parametrize(
    "video, message",
    [
        ({"frames": 0}, "'frames' must be an integer >= 1"),
        ({"fps": -1}, "'fps' must be a number > 0"),
        ({"pooling": "median"}, "'pooling' must be one of"),
        ({"every": 2}, "video must be None or a dict"),
    ],
)
def test_bad_sampling_is_refused_with_the_fix(embedder, video_files, video, message):
    est = embedder.set_params(video=video).fit([video_files["clip.mp4"]])
    with pytest.raises(ValueError, match=message):
        est.transform([video_files["clip.mp4"]])


def test_frames_of_texts_are_refused(tiny_clip_path):
    texts = CLIPEmbeddingTransformer(tiny_clip_path, modality="text").fit(["a"])
    with pytest.raises(ValueError, match="modality is 'text': use transform"):
        texts.transform_frames(["a"])
