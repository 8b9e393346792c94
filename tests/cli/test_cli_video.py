"""The command line on videos: moments in search, per-frame tables."""

import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from sklearn_clip import CLIPNearestNeighbors
from sklearn_clip.cli import main

# A file name that is markup, quotes and a URL at once.
HOSTILE = "<b onclick='x'>\"clip\" & #1?.mp4"


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, video_files, image_files):
    folder = tmp_path_factory.mktemp("clips")
    shutil.copy(video_files["clip.mp4"], folder / HOSTILE)
    shutil.copy(video_files["clip.mkv"], folder / "b.mkv")
    shutil.copy(image_files["rgb.png"], folder / "c.png")
    shutil.copy(video_files["audio.mp4"], folder / "d-audio.mp4")
    rows = sorted(str(p) for p in folder.iterdir() if p.name != "d-audio.mp4")
    return folder, rows


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_search_prints_and_shows_moments(tiny_clip_path, clip_folder, tmp_path, capsys):
    folder, rows = clip_folder
    sheet = tmp_path / "hits.html"
    args = ["search", "--model", tiny_clip_path, "--images", str(folder), "--fps", "2"]
    args += ["--query", "a red square", "-k", "4", "--output", str(sheet)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "d-audio.mp4" in err and "no video stream" in err
    printed = [line.split("\t") for line in out.splitlines() if "\t" in line]

    searcher = CLIPNearestNeighbors(tiny_clip_path, video={"fps": 2.0}).fit(rows)
    hits = searcher.search_moments(["a red square"], 4, query_modality="text")
    expected = [
        rows[r] + ("" if t != t else f" @ {t:.1f} s")
        for r, t in zip(hits["row"], hits["time"])
    ]
    assert [p[2] for p in printed] == expected
    np.testing.assert_allclose(
        [float(p[1]) for p in printed], 1 - hits["distance"], atol=1e-4
    )

    page = sheet.read_text()
    assert "<b onclick" not in page and "&lt;b onclick=" in page
    parsed = _Text()
    parsed.feed(page)
    assert "script" not in parsed.tags and parsed.tags.count("img") == 4
    captions = "".join(parsed.text)
    for line in expected:
        assert line.split("/")[-1] in captions  # "file @ 1.2 s", unescaped
    links = re.findall(r'href="([^"]+)"', page)
    moments = [t for t in hits["time"] if t == t]
    assert sum("#t=" in link for link in links) == len(moments)
    assert all(link.split("#")[0].count("<") == 0 for link in links)


def test_embed_per_clip_and_per_frame(tiny_clip_path, clip_folder, tmp_path):
    folder, rows = clip_folder
    base = ["embed", "--model", tiny_clip_path, "--file-list", str(tmp_path / "l")]
    (tmp_path / "l").write_text("\n".join(rows))
    assert main([*base, "--frames", "3", "--output", str(tmp_path / "c.csv")]) == 0
    clips = pd.read_csv(tmp_path / "c.csv")
    assert clips["input"].tolist() == rows
    out = tmp_path / "f.parquet"
    assert main([*base, "--frames", "3", "--per-frame", "--output", str(out)]) == 0
    frames = pd.read_parquet(out)
    assert frames["input"].tolist() == [rows[0]] * 3 + [rows[1]] * 3 + [rows[2]]
    assert frames["frame"].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert frames["time"].isna().tolist() == [False] * 6 + [True]
    features = [c for c in frames.columns if c.startswith("clip_")]
    mean = frames.loc[frames["input"] == rows[0], features].to_numpy().mean(axis=0)
    video = clips.loc[0, features].to_numpy(dtype=float)
    np.testing.assert_allclose(video, mean / np.linalg.norm(mean), atol=1e-5)


def test_zero_shot_label_track(tiny_clip_path, clip_folder, tmp_path):
    folder, rows = clip_folder
    (tmp_path / "l").write_text("\n".join(rows[:2]))
    out = tmp_path / "track.csv"
    args = ["zero-shot", "--model", tiny_clip_path, "--file-list", str(tmp_path / "l")]
    args += ["--labels", "red,blue", "--frames", "2", "--per-frame"]
    assert main([*args, "--output", str(out)]) == 0
    track = pd.read_csv(out)
    assert list(track.columns) == [
        "input",
        "frame",
        "time",
        "prediction",
        "proba_blue",
        "proba_red",
    ]
    assert track["input"].tolist() == [rows[0]] * 2 + [rows[1]] * 2
    assert set(track["prediction"]) <= {"red", "blue"}
    np.testing.assert_allclose(track[["proba_blue", "proba_red"]].sum(axis=1), 1)


def test_per_frame_needs_one_output_file(tiny_clip_path, clip_folder, tmp_path, capsys):
    folder, _ = clip_folder
    args = ["embed", "--model", tiny_clip_path, "--images", str(folder)]
    assert main([*args, "--per-frame", "--output", f"{tmp_path}/shards/"]) == 2
    assert "--per-frame writes one file" in capsys.readouterr().err
