"""`sklearn-clip evaluate`: two models on class folders, a table and a plot;
a second run with new prompts decodes no image again."""

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from sklearn_clip._encoding.cache import counters
from sklearn_clip.cli import main
from sklearn_clip.datasets import make_shapes


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-classes")
    shapes = make_shapes(20, image_size=16, shapes=["circle", "square"], random_state=2)
    for i, (image, shape) in enumerate(zip(shapes.images, shapes.shape, strict=True)):
        (root / shape).mkdir(exist_ok=True)
        Image.fromarray(image).save(root / shape / f"{i}.png")
    return root


def _image_counts():
    return dict(counters["image"])


def test_two_models_then_new_prompts_from_the_cache(
    class_folders, tiny_clip_path, tiny_siglip_path, tmp_path, capsys
):
    table, plot, cache = tmp_path / "r.csv", tmp_path / "r.png", tmp_path / "cache"
    argv = [
        "evaluate", "--model", str(tiny_clip_path), "--model", str(tiny_siglip_path),
        "--data", str(class_folders), "--shots", "1,2", "--dtype", "float32",
        "--cache-dir", str(cache), "--output", str(table), "--plot", str(plot),
    ]  # fmt: skip
    before = _image_counts()
    assert main(argv) == 0
    first = _image_counts()
    results = pd.read_csv(table)
    assert sorted(results["model"].unique()) == sorted(
        [Path(tiny_clip_path).name, Path(tiny_siglip_path).name]
    )
    assert set(results["task"]) == {"zero-shot", "few-shot", "linear probe"}
    assert (results["n_images"] == 20).all()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Each model decoded each of the 20 images once; every later step (the
    # zero-shot classifier, the few-shot fits and scores) read the cache.
    assert first["misses"] - before.get("misses", 0) == 2 * 20  # decoded
    assert first["hits"] - before.get("hits", 0) > 0

    again = [*argv, "--prompts", "a drawing of a {}.|a {} shape", "--overwrite"]
    texts_before = dict(counters["text"])
    assert main(again) == 0
    second = _image_counts()
    assert second["misses"] == first["misses"]  # no image decoded again
    assert second["hits"] > first["hits"]
    assert counters["text"]["misses"] > texts_before["misses"]  # the new prompts
    rerun = pd.read_csv(table)
    assert set(rerun["prompts"].dropna()) == {"prompts 1"}
    out = capsys.readouterr().out
    assert "wrote the plot" in out


def test_bad_arguments_stop_before_any_work(
    class_folders, tiny_clip_path, tmp_path, capsys
):
    out = tmp_path / "r.csv"
    argv = ["evaluate", "--model", str(tiny_clip_path), "--output", str(out)]
    assert main([*argv, "--data", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (
        main([*argv, "--data", str(class_folders), "--plot", str(tmp_path / "p.gif")])
        == 2
    )
    assert not out.exists()


def test_every_model_failing_is_a_failure(class_folders, tmp_path, capsys):
    argv = [
        "evaluate", "--model", str(tmp_path / "missing"), "--data", str(class_folders),
        "--output", str(tmp_path / "r.csv"),
    ]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "problem: model 'missing' failed" in err
    assert not (tmp_path / "r.csv").exists()
