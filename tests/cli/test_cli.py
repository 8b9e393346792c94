import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sklearn_clip import load_model
from sklearn_clip.cli import main
from sklearn_clip.datasets import make_shapes


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    data = make_shapes(12, image_size=48, random_state=0)
    paths = []
    for i, image in enumerate(data.images):
        path = folder / f"{i:02d}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    table = folder / "pairs.csv"
    pd.DataFrame(
        {"image": paths, "caption": data.captions, "color": data.color}
    ).to_csv(table, index=False)
    return folder, paths, table


def test_embed_images_from_a_folder_to_parquet(tiny_clip_path, shape_files, tmp_path):
    folder, paths, _ = shape_files
    out = tmp_path / "emb.parquet"
    assert (
        main(
            [
                "embed",
                "--model",
                tiny_clip_path,
                "--images",
                str(folder),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    frame = pd.read_parquet(out)
    assert frame["input"].tolist() == sorted(paths)
    assert frame.shape == (12, 1 + 32)
    expected = load_model(tiny_clip_path).encode_images(sorted(paths))
    np.testing.assert_allclose(
        frame.filter(like="clip_").to_numpy(), expected, atol=1e-6
    )


def test_embed_texts_from_a_csv_column_to_npy(tiny_clip_path, shape_files, tmp_path):
    _, _, table = shape_files
    out = tmp_path / "texts.npy"
    assert (
        main(
            [
                "embed",
                "--model",
                tiny_clip_path,
                "--table",
                str(table),
                "--column",
                "caption",
                "--modality",
                "text",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    embeddings = np.load(out)
    captions = pd.read_csv(table)["caption"].tolist()
    np.testing.assert_allclose(
        embeddings, load_model(tiny_clip_path).encode_texts(captions), atol=1e-6
    )


def test_zero_shot_writes_predictions_and_probabilities(
    tiny_clip_path, shape_files, tmp_path
):
    _, paths, _ = shape_files
    file_list = tmp_path / "files.txt"
    file_list.write_text("\n".join(paths))
    out = tmp_path / "pred.csv"
    assert (
        main(
            [
                "zero-shot",
                "--model",
                tiny_clip_path,
                "--file-list",
                str(file_list),
                "--labels",
                "red,green,blue",
                "--template",
                "something {}",
                "--template",
                "a {} shape",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    frame = pd.read_csv(out)
    assert frame["input"].tolist() == paths
    probabilities = frame[["proba_blue", "proba_green", "proba_red"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    columns = np.array(["blue", "green", "red"])
    assert (frame["prediction"].to_numpy() == columns[probabilities.argmax(1)]).all()


def test_finetune_saves_a_model_the_other_commands_use(
    tiny_clip_path, shape_files, tmp_path
):
    _, paths, table = shape_files
    out = tmp_path / "tuned"
    assert (
        main(
            [
                "finetune",
                "--model",
                tiny_clip_path,
                "--table",
                str(table),
                "--epochs",
                "2",
                "--batch-size",
                "6",
                "--learning-rate",
                "1e-3",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    tuned = load_model(out)
    assert tuned.encode_images(paths[:2]).shape == (2, 32)
    base = load_model(tiny_clip_path)
    assert not np.allclose(
        tuned.encode_texts(["a red circle"]), base.encode_texts(["a red circle"])
    )
    pred = tmp_path / "pred.csv"
    assert (
        main(
            [
                "zero-shot",
                "--model",
                str(out),
                "--table",
                str(table),
                "--column",
                "image",
                "--labels",
                "red,blue",
                "--output",
                str(pred),
            ]
        )
        == 0
    )
    assert len(pd.read_csv(pred)) == 12


def test_user_errors_are_short_and_exit_2(tiny_clip_path, shape_files, capsys):
    _, _, table = shape_files
    assert (
        main(
            [
                "embed",
                "--model",
                tiny_clip_path,
                "--table",
                str(table),
                "--column",
                "nope",
                "--output",
                "x.parquet",
            ]
        )
        == 2
    )
    assert "'nope' is not a column" in capsys.readouterr().err
    assert main(["embed", "--model", tiny_clip_path, "--output", "x.parquet"]) == 2
    assert "exactly one of --images" in capsys.readouterr().err
    assert (
        main(
            [
                "zero-shot",
                "--model",
                tiny_clip_path,
                "--table",
                str(table),
                "--column",
                "image",
                "--labels",
                "red",
                "--output",
                "p.csv",
            ]
        )
        == 2
    )
    assert "at least two labels" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "embed", "zero-shot", "finetune"])
def test_every_command_has_help(command):
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_clip.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--output" in result.stdout
