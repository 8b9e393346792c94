"""Retrieval faults: outputs that destroy nothing, safe contact sheets, right numbers.

Each test is one fault found by probing ``search``, ``duplicates`` and
:class:`~sklearn_clip.CLIPNearestNeighbors`; see the "Retrieval and the files
written" section of ``docs/reliability.md``.
"""

import os
import pickle
import re
import shutil
import subprocess
from urllib.parse import unquote_to_bytes

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_clip import CLIPNearestNeighbors
from sklearn_clip.cli import main
from sklearn_clip.datasets import make_shapes

# Names that broke links or could run a script: a scheme, a fragment, a query,
# a percent escape, a newline, markup, and bytes that are not UTF-8.
CRAFTED = [
    "javascript:alert(document.domain).png",
    "a#b.png",
    "q?x=1.png",
    "%41.png",
    "new\nline.png",
    "\"><svg onload=document.title='pwned'>.png",
    os.fsdecode(b"caf\xe9.png"),
]


@pytest.fixture(scope="module")
def crafted_folder(tmp_path_factory):
    """Images under crafted names, a broken file, and a symlink out of the folder."""
    base = tmp_path_factory.mktemp("crafted")
    folder, outside = base / "photos", base / "private"
    folder.mkdir()
    outside.mkdir()
    images = make_shapes(len(CRAFTED) + 1, image_size=32, random_state=1).images
    for name, image in zip(CRAFTED, images):
        Image.fromarray(image).save(folder / name, format="PNG")
    Image.fromarray(images[-1]).save(outside / "secret.png")
    (folder / "leak.png").symlink_to(outside / "secret.png")
    (folder / "broken.jpg").write_bytes(b"not a JPEG")
    return folder


def search_args(model, folder, *more):
    return ["search", "--model", model, "--images", str(folder), "--query", "x", *more]


# -- one writer for outputs ---------------------------------------------------
def test_search_refuses_a_non_html_output_before_any_work(tmp_path, capsys):
    photo = tmp_path / "img0.png"
    Image.new("RGB", (8, 8), "red").save(photo)
    before = photo.read_bytes()
    # The model does not exist: reaching it would be a different error.
    args = search_args(str(tmp_path / "no-model"), tmp_path, "--output", str(photo))
    assert main(args) == 2
    assert "--output must end in .html" in capsys.readouterr().err
    assert photo.read_bytes() == before


def test_search_replaces_an_existing_sheet_only_with_overwrite(
    tiny_clip_path, crafted_folder, tmp_path, capsys
):
    sheet = tmp_path / "hits.html"
    sheet.write_text("keep me")
    args = search_args(
        str(tmp_path / "no-model"), crafted_folder, "--output", str(sheet)
    )
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert sheet.read_text() == "keep me"
    args = search_args(tiny_clip_path, crafted_folder, "--output", str(sheet))
    assert main([*args, "--overwrite"]) == 0
    assert sheet.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["hits.html"]  # no temporary


# -- the contact sheet ----------------------------------------------------------
@pytest.fixture(scope="module")
def crafted_sheet(tiny_clip_path, crafted_folder):
    """``search`` over the crafted folder, its sheet written beside the images."""
    sheet = crafted_folder / "hits.html"
    args = search_args(tiny_clip_path, crafted_folder, "-k", "20")
    assert main([*args, "--output", str(sheet), "--overwrite"]) == 0
    return sheet


def test_sheet_links_are_encoded_relative_links_to_the_right_files(
    crafted_sheet, crafted_folder
):
    page = crafted_sheet.read_text(encoding="utf-8")
    links = re.findall(r'href="([^"]*)"', page)
    assert len(links) == len(CRAFTED)
    for link in links:
        assert re.fullmatch(r"[A-Za-z0-9_.~/%-]+", link), link  # no scheme, ? or #
    targets = {unquote_to_bytes(link) for link in links}
    assert targets == {os.fsencode(name) for name in CRAFTED}
    assert all((crafted_folder / os.fsdecode(t)).is_file() for t in targets)


def test_sheet_does_not_follow_links_out_of_the_folder(crafted_sheet):
    page = crafted_sheet.read_text(encoding="utf-8")
    assert "secret.png" not in page and "leak.png" in page
    assert "(links outside the searched folder; not shown)" in page
    assert page.count("data:image/jpeg") == len(CRAFTED)


def test_sheet_names_the_model_the_count_and_the_skipped_files(
    crafted_sheet, tiny_clip_path
):
    page = crafted_sheet.read_text(encoding="utf-8")
    assert f"Model: {tiny_clip_path}" in page
    assert f"Images searched: {len(CRAFTED) + 1}" in page
    assert "Files skipped: 1" in page and "broken.jpg" in page
    assert "caf\\xe9.png" in page  # a name that is not UTF-8, shown escaped


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_a_browser_runs_no_script_of_the_sheet(crafted_sheet, tmp_path):
    def title_in_browser(page):
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        return re.search(r"<title>(.*?)</title>", dom, re.S).group(1), dom

    # The check can fail: the same browser does run a page's own script.
    control = tmp_path / "control.html"
    control.write_text(
        "<html><head><title>before</title></head><body>"
        "<svg onload=document.title='pwned'></svg></body></html>"
    )
    assert title_in_browser(control)[0] == "pwned"
    title, dom = title_in_browser(crafted_sheet)
    assert title == "Search: x"
    assert not re.search(r'href="[a-z]+:', dom)  # as the browser parsed it


# -- numbers right or refused -------------------------------------------------------
def unit(n, d, seed=0):
    rows = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("embedding_dtype", ["float32", "float16"])
@pytest.mark.parametrize("index", ["exact", "faiss"])
def test_threshold_one_finds_exact_copies(index, embedding_dtype):
    if index == "faiss":
        pytest.importorskip("faiss")
    rows = unit(300, 512)
    # Copies of rows whose float32 product with themselves is below 1.
    tensor = torch.from_numpy(rows)
    a, b = np.flatnonzero(torch.diagonal(tensor @ tensor.T).numpy() < 1)[:2]
    rows[[a + 1, 250]] = rows[a]
    rows[299] = rows[b]
    searcher = CLIPNearestNeighbors(
        modality="embedding", index=index, embedding_dtype=embedding_dtype
    ).fit(rows)
    groups = searcher.find_duplicates(threshold=1.0)
    assert [g.tolist() for g in groups] == [[a, a + 1, 250], [b, 299]]


def test_faiss_with_many_identical_rows_returns_real_rows_in_order():
    pytest.importorskip("faiss")
    rows = unit(1500, 32)
    rows[:1000] = rows[0]
    exact = CLIPNearestNeighbors(modality="embedding").fit(rows)
    approximate = CLIPNearestNeighbors(modality="embedding", index="faiss").fit(rows)
    distances, indices = approximate.kneighbors(rows[[0]], 10)
    np.testing.assert_array_equal(indices[0], np.arange(10))  # ties by row
    reloaded = pickle.loads(pickle.dumps(approximate))  # the copies kept aside too
    np.testing.assert_array_equal(reloaded.kneighbors(rows[[0]], 10)[1], indices)
    np.testing.assert_allclose(distances, 0, atol=1e-6)
    queries = unit(200, 32, seed=1)
    found = approximate.kneighbors(queries, 10, return_distance=False)
    truth = exact.kneighbors(queries, 10, return_distance=False)
    assert found.min() >= 0
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.95


@pytest.mark.parametrize("scale", [1e30, 1e-25, 1e-30])
def test_given_embeddings_of_any_finite_scale_keep_their_direction(scale):
    rows = unit(4, 8)
    given = rows.astype(np.float64)
    given[2] *= scale
    searcher = CLIPNearestNeighbors(modality="embedding").fit(given.astype(np.float32))
    np.testing.assert_allclose(searcher.embeddings_, rows, atol=1e-6)
    indices = searcher.kneighbors(given[[2]].astype(np.float32), 1)[1]
    assert indices[0, 0] == 2


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_given_embeddings_with_a_non_finite_value_are_refused(bad):
    rows = unit(4, 8)
    rows[2, 3] = bad
    with pytest.raises(ValueError, match="row 2 of the embeddings"):
        CLIPNearestNeighbors(modality="embedding").fit(rows)
    searcher = CLIPNearestNeighbors(modality="embedding").fit(unit(4, 8))
    with pytest.raises(ValueError, match="row 2 of the embeddings"):
        searcher.kneighbors(rows, 1)


def _status_bytes(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def test_duplicate_search_memory_does_not_grow_with_the_pairs():
    # 4,000 near-copies of one row: all 8 million pairs pass. Kept, their
    # indices alone would take 256 MB; the documented bound is about 100 MB.
    rows = np.tile(unit(1, 16), (4000, 1)) + 0.01 * unit(4000, 16, seed=1)
    searcher = CLIPNearestNeighbors(modality="embedding").fit(rows)
    searcher.find_duplicates(0.9)  # warm-up: imports, first allocations
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current RSS (Linux)
    before = _status_bytes("VmRSS")
    groups = searcher.find_duplicates(0.9)
    assert _status_bytes("VmHWM") - before < 100e6
    assert [len(g) for g in groups] == [4000]
