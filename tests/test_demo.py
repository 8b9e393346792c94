"""The offline main job, end to end (slow: it trains a small CLIP from scratch)."""

import time

import pytest

from sklearn_clip import load_model
from sklearn_clip.demo import run_demo


@pytest.mark.slow
def test_demo_learns_zero_shot_tasks_from_random_weights(tmp_path):
    start = time.perf_counter()
    results = run_demo(tmp_path, verbose=False).set_index("task")
    seconds = time.perf_counter() - start
    print(f"\n{results}\n{seconds:.0f} s")
    # The issue asks for under 3 minutes on 2 idle cores (measured: about 150 s);
    # the bound here leaves room for a busier CI machine.
    assert seconds < 300
    assert results.loc["colour", "accuracy"] >= 0.9
    assert results.loc["shape", "accuracy"] >= 0.8
    unseen = results.loc["unseen colour-shape pairs"]
    assert unseen["classes"] == 30
    assert unseen["accuracy"] >= 5 * unseen["chance"]
    for plot in ("history.png", "confusion_colour.png", "embedding_map.png"):
        assert (tmp_path / plot).stat().st_size > 10_000
    tuned = load_model(tmp_path / "model")
    assert tuned.encode_texts(["a red circle"]).shape == (1, 64)
