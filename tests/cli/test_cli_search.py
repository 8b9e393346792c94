"""``sklearn-clip search`` and ``duplicates`` on a folder with bad files in it."""

import base64
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sklearn_clip import load_model
from sklearn_clip.cli import main
from sklearn_clip.datasets import make_shapes


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Ten shape images, an exact copy of one, and two unreadable files."""
    folder = tmp_path_factory.mktemp("photos")
    data = make_shapes(10, image_size=48, random_state=0)
    for i, image in enumerate(data.images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    (folder / "nested").mkdir()
    shutil.copy(folder / "03.png", folder / "nested" / "copy-of-03.png")
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    (folder / "truncated.png").write_bytes((folder / "01.png").read_bytes()[:60])
    good = sorted(str(p) for p in folder.rglob("*.png") if p.name != "truncated.png")
    return folder, good


def test_search_prints_hits_lists_bad_files_and_writes_a_sheet(
    tiny_clip_path, photo_folder, tmp_path, capsys
):
    folder, good = photo_folder
    sheet = tmp_path / "out" / "hits.html"
    args = ["search", "--model", tiny_clip_path, "--images", str(folder)]
    args += ["--query", "a red circle", "-k", "4", "--output", str(sheet)]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    out, err = capsys.readouterr()
    assert "broken.jpg" in err and "truncated.png" in err
    assert "embedding" in err  # a progress bar while the folder is embedded
    hits = [line.split("\t") for line in out.splitlines() if "\t" in line]
    # The reference: brute-force cosine over the model's own embeddings.
    handle = load_model(tiny_clip_path)
    sims = handle.encode_images(good) @ handle.encode_texts(["a red circle"])[0]
    best = np.argsort(-sims, kind="stable")[:4]
    assert [h[2] for h in hits] == [good[i] for i in best]
    np.testing.assert_allclose([float(h[1]) for h in hits], sims[best], atol=1e-4)

    page = sheet.read_text()
    thumbnails = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    links = re.findall(r'href="([^"]+)"', page)
    assert len(thumbnails) == len(links) == 4
    for encoded in thumbnails:
        assert Image.open(io.BytesIO(base64.b64decode(encoded))).size[0] > 0
    resolved = [str((sheet.parent / link).resolve()) for link in links]
    assert resolved == [str(Path(good[i]).resolve()) for i in best]
    assert not any(Path(link).is_absolute() for link in links)

    # A second run reads the cached embeddings and gives the same hits.
    assert main([*args, "--cache-dir", str(tmp_path / "cache"), "--overwrite"]) == 0
    again = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [h[2] for h in again if len(h) == 3] == [h[2] for h in hits]


def test_search_by_example_image(tiny_clip_path, photo_folder, capsys):
    folder, good = photo_folder
    query = str(folder / "03.png")
    args = ["search", "--model", tiny_clip_path, "--images", str(folder)]
    assert main([*args, "--query-image", query, "-k", "2"]) == 0
    hits = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert {h[2] for h in hits} == {query, str(folder / "nested" / "copy-of-03.png")}
    assert all(float(h[1]) == pytest.approx(1.0, abs=1e-5) for h in hits)


def test_duplicates_lists_the_copies_and_the_bad_files(
    tiny_clip_path, photo_folder, capsys
):
    folder, _ = photo_folder
    args = ["duplicates", "--model", tiny_clip_path, "--images", str(folder)]
    assert main([*args, "--threshold", "0.9999"]) == 0
    out, err = capsys.readouterr()
    assert "broken.jpg" in err and "truncated.png" in err
    assert out.splitlines() == [
        "group 1 (2 images)",
        f"  {folder / '03.png'}",
        f"  {folder / 'nested' / 'copy-of-03.png'}",
        "1 groups, 2 images",
    ]


def test_a_folder_without_images_is_a_short_error(tmp_path, capsys):
    assert main(["duplicates", "--images", str(tmp_path)]) == 2
    assert "no image files" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["search", "duplicates"])
def test_search_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "--cache-dir" in capsys.readouterr().out
