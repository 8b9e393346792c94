import json
import math
import os
import pickle
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from sklearn_clip import (
    CLIPContrastiveFinetuner,
    CLIPEmbeddingTransformer,
    CLIPZeroShotClassifier,
    _contrastive,
    _training,
    load_model,
    model_cache_info,
)
from sklearn_clip._backends.torch.weights import as_numpy_state
from sklearn_clip._loader.registry import cached_handles
from sklearn_clip.datasets import COLORS, SHAPES, make_shapes
from sklearn_clip.toy import make_tiny_clip

# A model small enough that a few epochs take well under a second.
TRAIN = {
    "learning_rate": 3e-3,
    "weight_decay": 0.05,
    "max_epochs": 3,
    "batch_size": 8,
    "caption_template": "a {} shape",
    "random_state": 0,
    # These tests follow validation, which is off by default.
    "validation_fraction": 0.1,
}

# The tests here compare trained weights with float32 references (transformers'
# from_pretrained, saved files, mixed weights); the bfloat16 path of
# fine-tuning is tested in tests/backends/test_precision.py.
pytestmark = pytest.mark.usefixtures("float32_module")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def fitted(fast_path, shapes):
    return CLIPContrastiveFinetuner(fast_path, **TRAIN).fit(shapes.images, shapes.color)


def _state(handle_or_model):
    model = getattr(handle_or_model, "model", handle_or_model)
    return as_numpy_state(model)


def _assert_states_equal(first, second):
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def _changed(first, second):
    return {k for k in first if not np.array_equal(first[k], second[k])}


# -- scikit-learn contract -----------------------------------------------------


def test_fitted_state_and_outputs(fitted, shapes):
    assert fitted.n_iter_ == 3 and len(fitted.history_) == 3
    assert not fitted.interrupted_ and fitted.checkpoint_ is None
    assert set(fitted.history_[0]) >= {
        "epoch",
        "train_loss",
        "val_loss",
        "val_recall_at_1",
        "learning_rate",
        "seconds",
    }
    images = fitted.transform(shapes.images[:5])
    texts = fitted.transform(["a red shape", "a blue shape"], modality="text")
    assert images.shape == (5, 32) and images.dtype == np.float32
    assert texts.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, rtol=1e-5)
    assert list(fitted.get_feature_names_out()[:2]) == [
        "clipcontrastivefinetuner0",
        "clipcontrastivefinetuner1",
    ]
    with pytest.raises(ValueError, match="modality must be 'image' or 'text'"):
        fitted.transform(shapes.images[:2], modality="audio")


def test_unfitted_estimator_raises(fast_path, shapes):
    with pytest.raises(NotFittedError):
        CLIPContrastiveFinetuner(fast_path).transform(shapes.images[:2])


def test_clone_is_unfitted_and_keeps_parameters(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "history_") and not hasattr(copy, "model_")


def test_training_lowers_the_loss_and_learns_colour(fitted, shapes):
    losses = [h["train_loss"] for h in fitted.history_]
    assert losses[-1] < losses[0]
    assert fitted.score(shapes.images, shapes.color) > 1 / len(COLORS)


def test_plot_history_draws_losses_and_recall(fitted):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = fitted.plot_history()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train loss", "validation loss", "validation recall@1"]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    plt.close("all")


# -- the starting model is never modified --------------------------------------
def test_the_cached_base_model_is_never_modified(fast_path, shapes):
    base = load_model(fast_path)
    before = {id(h): _state(h) for h in cached_handles()}
    tuner = CLIPContrastiveFinetuner(fast_path, **TRAIN).fit(
        shapes.images, shapes.color
    )
    for handle in cached_handles():
        if id(handle) in before:
            _assert_states_equal(_state(handle), before[id(handle)])
    assert tuner.model_ is not base and tuner.model_.model is not base.model
    assert _changed(_state(base), _state(tuner.model_))


# -- the tuned model in the other estimators, on disk and in a pickle ----------
def test_tuned_model_works_in_the_other_estimators(fitted, shapes):
    classifier = CLIPZeroShotClassifier(
        fitted.model_, candidate_labels=list(COLORS), templates="a {} shape"
    ).fit(None)
    assert clone(classifier).model is fitted.model_  # clone-safe handle
    predictions = classifier.predict(shapes.images)
    assert set(predictions) <= set(COLORS)
    # Zero-shot accuracy with the training template is what score measures.
    accuracy = classifier.score(shapes.images, shapes.color)
    assert accuracy == pytest.approx(fitted.score(shapes.images, shapes.color))
    embedder = CLIPEmbeddingTransformer(fitted.model_).fit(shapes.images)
    np.testing.assert_allclose(
        embedder.transform(shapes.images[:4]),
        fitted.transform(shapes.images[:4]),
        atol=1e-6,
    )


def test_save_pretrained_round_trips_through_load_model_and_transformers(
    fitted, shapes, tmp_path
):
    from transformers import CLIPModel

    path = fitted.save_pretrained(tmp_path / "tuned")
    assert (path / "model.safetensors").exists()
    assert not list(path.glob("*.bin"))
    reloaded = load_model(path)
    np.testing.assert_allclose(
        reloaded.encode_images(shapes.images[:4]),
        fitted.transform(shapes.images[:4]),
        atol=1e-6,
    )
    model = CLIPModel.from_pretrained(path)
    _assert_states_equal(_state(model), _state(fitted.model_))


def test_save_pretrained_writes_a_model_card(fitted, tmp_path):
    import importlib.metadata

    card = (fitted.save_pretrained(tmp_path / "tuned") / "README.md").read_text()
    history = fitted.history_
    assert card.startswith("---\nlibrary_name: transformers\n")
    # A local folder is not a base model a reader elsewhere can find (a hub id
    # is; tests/test_reliability_settings.py checks both).
    assert "base_model" not in card and str(fitted.model) not in card
    sizes = fitted._pair_counts
    assert f"{sizes['train']} training pairs, {sizes['validation']} validation" in card
    assert f"| `learning_rate` | `{fitted.learning_rate!r}` |" in card
    assert f"epochs trained: {len(history)}" in card
    assert f"final training loss: {history[-1]['train_loss']:.4f}" in card
    for library in ("sklearn-clip", "torch", "transformers"):
        assert f"- {library} {importlib.metadata.version(library)}" in card


def test_pickle_keeps_the_tuned_weights_as_safetensors(fitted, shapes, request):
    data = pickle.dumps(fitted)
    expected = fitted.transform(shapes.images[:4])
    # The restored estimator needs no cached model at alpha 1.
    request.getfixturevalue("isolated_cache")
    restored = pickle.loads(data)
    np.testing.assert_allclose(
        restored.transform(shapes.images[:4]), expected, atol=1e-6
    )
    assert restored.history_ == fitted.history_
    # Mixing needs the starting weights again: they reload from the source.
    restored.set_params(wise_alpha=0.0)
    _assert_states_equal(_state(restored.model_), _state(load_model(fitted.model)))
    assert b"safetensors" in data or b"model.safetensors" in data


# -- WiSE-FT -------------------------------------------------------------------
def test_wise_alpha_mixes_start_and_tuned_weights_without_refitting(fitted):
    tuner = pickle.loads(pickle.dumps(fitted))
    tuned = _state(tuner.model_)
    start = _state(load_model(tuner.model))
    history = tuner.history_
    tuner.set_params(wise_alpha=0.0)
    _assert_states_equal(_state(tuner.model_), start)
    tuner.set_params(wise_alpha=0.5)
    mixed = _state(tuner.model_)
    for name in tuned:
        np.testing.assert_allclose(
            mixed[name], (start[name] + tuned[name]) / 2, rtol=1e-6, atol=1e-6
        )
    assert tuner.history_ is history  # no retraining
    tuner.set_params(wise_alpha=1.0)
    _assert_states_equal(_state(tuner.model_), tuned)
    # Assigned directly, the weight is honoured at the next use.
    tuner.wise_alpha = 0.0
    np.testing.assert_allclose(
        tuner.transform(["a red shape"], modality="text"),
        load_model(tuner.model).encode_texts(["a red shape"]),
        atol=1e-6,
    )


def test_an_invalid_wise_alpha_is_refused_without_being_applied(fitted):
    tuner = pickle.loads(pickle.dumps(fitted))
    with pytest.raises(ValueError, match="wise_alpha must be a float in"):
        tuner.set_params(wise_alpha=1.5)
    assert tuner.wise_alpha == fitted.wise_alpha


def test_a_pickle_that_kept_model_as_an_attribute_loads_with_its_mix(fitted):
    # Before model_ followed wise_alpha, pickles held the mixed model and the
    # weight it was mixed at as attributes of their own.
    tuner = pickle.loads(pickle.dumps(fitted)).set_params(wise_alpha=0.5)
    mixed = _state(tuner.model_)
    state = tuner.__getstate__()
    state["_model_alpha"], state["model_"] = state.pop("_mixed")
    old = CLIPContrastiveFinetuner.__new__(CLIPContrastiveFinetuner)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.wise_alpha == 0.5
    _assert_states_equal(_state(old.model_), mixed)


# -- inputs --------------------------------------------------------------------
def test_labels_become_captions_through_the_template(fast_path, shapes, monkeypatch):
    seen = {}
    original = _training.prepare_pairs

    def spy(handle, rows, index, captions, **kwargs):
        seen["captions"] = list(captions)
        return original(handle, rows, index, captions, **kwargs)

    monkeypatch.setattr("sklearn_clip._train.finetuner.prepare_pairs", spy)
    params = {**TRAIN, "max_epochs": 1, "validation_fraction": None}
    CLIPContrastiveFinetuner(fast_path, **params).fit(
        shapes.images[:8], shapes.color[:8]
    )
    assert seen["captions"] == [f"a {c} shape" for c in shapes.color[:8]]


def test_fits_a_dataframe_column_of_image_files(fast_path, shapes, tmp_path):
    import pandas as pd
    from PIL import Image

    paths = []
    for i, image in enumerate(shapes.images[:12]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    frame = pd.DataFrame({"image": paths}, index=[f"r{i}" for i in range(12)])
    params = {**TRAIN, "max_epochs": 1, "validation_fraction": None}
    tuner = CLIPContrastiveFinetuner(fast_path, **params)
    tuner.fit(frame, pd.Series(shapes.color[:12], index=frame.index))
    np.testing.assert_allclose(
        tuner.transform(frame),
        tuner.model_.encode_images(shapes.images[:12]),
        atol=1e-6,
    )
    frame.iloc[3, 0] = str(tmp_path / "missing.png")
    with pytest.raises(ValueError, match=r"row 3 \(index 'r3'\).*missing.png"):
        tuner.fit(frame, shapes.color[:12])


@pytest.fixture(scope="module")
def files_with_3_bad(fast_path, tmp_path_factory):
    """200 image files of generated shapes, 3 of which cannot be read."""
    from PIL import Image

    directory = tmp_path_factory.mktemp("pairs")
    data = make_shapes(200, image_size=16, random_state=1)
    paths = [str(directory / f"{i}.png") for i in range(200)]
    for image, path in zip(data.images, paths):
        Image.fromarray(image).save(path)
    for bad in (7, 50, 199):
        with open(paths[bad], "wb") as handle:
            handle.write(b"not an image")
    return paths, list(data.color)


def test_skip_leaves_out_unreadable_pairs_and_reports_them(
    fast_path, files_with_3_bad, monkeypatch
):
    paths, colors = files_with_3_bad
    seen = {}
    original = _training.train

    def spy(handle, train_data, val_data, config, **kwargs):
        seen["n_pairs"] = len(train_data)
        return original(handle, train_data, val_data, config, **kwargs)

    monkeypatch.setattr("sklearn_clip._train.finetuner.train", spy)
    params = {**TRAIN, "max_epochs": 1, "validation_fraction": None}
    tuner = CLIPContrastiveFinetuner(fast_path, on_error="skip", **params)
    with pytest.warns(UserWarning, match="3 of 200 pairs could not be used") as caught:
        tuner.fit(paths, colors)
    assert len([w for w in caught if "could not be used" in str(w.message)]) == 1
    assert seen["n_pairs"] == 197
    assert [(e["position"], e["source"]) for e in tuner.input_errors_] == [
        (row, paths[row]) for row in (7, 50, 199)
    ]
    assert {e["error"] for e in tuner.input_errors_} == {"UnidentifiedImageError"}


def test_skip_leaves_out_pairs_whose_caption_is_missing(fast_path, shapes):
    captions = [f"a {c} shape" for c in shapes.color[:12]]
    captions[4] = None
    params = {**TRAIN, "max_epochs": 1, "validation_fraction": None}
    params.pop("caption_template")
    tuner = CLIPContrastiveFinetuner(fast_path, on_error="skip", **params)
    with pytest.warns(UserWarning, match="1 of 12 pairs"):
        tuner.fit(shapes.images[:12], captions)
    (record,) = tuner.input_errors_
    assert record["position"] == 4 and "missing" in record["message"]


def test_by_default_an_unreadable_pair_raises_before_any_step(
    fast_path, files_with_3_bad, monkeypatch
):
    paths, colors = files_with_3_bad
    steps = []
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda *a, **k: steps.append(1))
    tuner = CLIPContrastiveFinetuner(fast_path, **{**TRAIN, "max_epochs": 1})
    with pytest.raises(ValueError, match=r"row 7\b.*7\.png"):
        tuner.fit(paths, colors)
    assert steps == []


@pytest.mark.parametrize("template", ["a photo", "a {} {}", "a {name}"])
def test_a_bad_caption_template_is_refused(fast_path, shapes, template):
    tuner = CLIPContrastiveFinetuner(fast_path, caption_template=template)
    with pytest.raises(ValueError, match="exactly one"):
        tuner.fit(shapes.images[:4], shapes.color[:4])


def test_bad_pairs_are_refused_with_clear_errors(fast_path, shapes):
    tuner = CLIPContrastiveFinetuner(fast_path, max_epochs=1)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        tuner.fit(shapes.images[:1], ["a red circle"])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        tuner.fit(shapes.images[:3], ["a", "b"])
    with pytest.raises(ValueError, match=r"row 1 is missing"):
        tuner.fit(shapes.images[:3], ["a red circle", None, "a cat"])
    with pytest.raises(ValueError, match="fit requires y to be passed"):
        tuner.fit(shapes.images[:3], None)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        tuner.set_params(resume=True).fit(shapes.images[:3], ["a", "b", "c"])


def test_a_dataset_smaller_than_one_batch_still_trains(fast_path, shapes):
    tuner = CLIPContrastiveFinetuner(fast_path, **{**TRAIN, "batch_size": 32})
    with pytest.warns(UserWarning, match="without validation"):
        tuner.fit(shapes.images[:5], shapes.captions[:5])
    assert tuner.n_iter_ == 3
    assert all(h["train_loss"] > 0 for h in tuner.history_)
    assert _changed(_state(load_model(fast_path)), _state(tuner.model_))


# -- what trains ---------------------------------------------------------------
def test_lock_image_trains_the_text_tower_only(fast_path, shapes):
    tuner = CLIPContrastiveFinetuner(
        fast_path, train_parts="lock_image", **{**TRAIN, "max_epochs": 1}
    ).fit(shapes.images, shapes.color)
    changed = _changed(_state(load_model(fast_path)), _state(tuner.model_))
    assert "logit_scale" in changed
    assert any(name.startswith("text_model.") for name in changed)
    assert not any(name.startswith(("vision_model.", "visual_")) for name in changed)


def test_lora_adapters_are_merged_into_plain_weights(fast_path, shapes):
    pytest.importorskip("peft")
    tuner = CLIPContrastiveFinetuner(
        fast_path, lora=2, **{**TRAIN, "max_epochs": 1}
    ).fit(shapes.images, shapes.color)
    base = _state(load_model(fast_path))
    tuned = _state(tuner.model_)
    assert tuned.keys() == base.keys()
    assert type(tuner.model_.model).__name__ == "CLIPModel"
    changed = _changed(base, tuned)
    assert any("self_attn.q_proj.weight" in name for name in changed)
    assert not any("embeddings" in name or "projection" in name for name in changed)


def test_siglip_models_train_with_the_sigmoid_loss(tiny_siglip_path, shapes):
    data = make_shapes(12, image_size=30, random_state=1)
    tuner = CLIPContrastiveFinetuner(
        tiny_siglip_path, **{**TRAIN, "max_epochs": 2, "validation_fraction": None}
    ).fit(data.images, data.color)
    changed = _changed(_state(load_model(tiny_siglip_path)), _state(tuner.model_))
    assert "logit_bias" in changed and "logit_scale" in changed
    assert tuner.history_[-1]["train_loss"] < tuner.history_[0]["train_loss"]


# -- acceptance 3: model selection ---------------------------------------------
def test_grid_search_selects_the_learning_rate_by_score(
    tmp_path, shapes, make_fast_clip
):
    path = make_fast_clip(tmp_path / "grid-clip")
    loads = model_cache_info()["loads"]
    search = GridSearchCV(
        CLIPContrastiveFinetuner(path, **{**TRAIN, "validation_fraction": None}),
        {"learning_rate": [1e-8, 3e-3]},
        cv=2,
        error_score="raise",
    ).fit(shapes.images, shapes.color)
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0]
    assert search.best_params_ == {"learning_rate": 3e-3}
    assert search.best_score_ == scores.max()
    # 4 fits and the refit share one load of the base weights ...
    assert model_cache_info()["loads"] - loads == 1
    # ... which still equal the file on disk.
    from transformers import CLIPModel

    _assert_states_equal(
        _state(load_model(path)), _state(CLIPModel.from_pretrained(path))
    )


# -- acceptance 4: reproducibility and resuming --------------------------------
def test_same_random_state_gives_identical_weights(fast_path, shapes):
    def fit(seed):
        params = {**TRAIN, "random_state": seed}
        tuner = CLIPContrastiveFinetuner(fast_path, **params)
        return _state(tuner.fit(shapes.images, shapes.color).model_)

    first, second, other = fit(0), fit(0), fit(1)
    _assert_states_equal(first, second)
    assert _changed(first, other)


def _interrupt_at(monkeypatch, call):
    counter = {"calls": 0}
    original = _contrastive.contrastive_loss

    def loss(*args, **kwargs):
        counter["calls"] += 1
        if counter["calls"] == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(_contrastive, "contrastive_loss", loss)


def test_resume_after_an_interruption_gives_the_uninterrupted_weights(
    fast_path, shapes, tmp_path, monkeypatch
):
    full = CLIPContrastiveFinetuner(fast_path, **TRAIN).fit(shapes.images, shapes.color)
    # 28 training pairs in batches of 8, 4 validation pairs: calls 1-4 train
    # epoch 1 and call 5 validates it; call 7 is mid-way through epoch 2.
    _interrupt_at(monkeypatch, 7)
    with pytest.warns(UserWarning, match="Training interrupted in epoch 2"):
        part = CLIPContrastiveFinetuner(
            fast_path, checkpoint_dir=tmp_path, **TRAIN
        ).fit(shapes.images, shapes.color)
    monkeypatch.undo()
    assert part.interrupted_ and part.n_iter_ == 1
    assert part.checkpoint_.endswith("step-00000005.pt")
    resumed = CLIPContrastiveFinetuner(
        fast_path, checkpoint_dir=tmp_path, resume=True, **TRAIN
    ).fit(shapes.images, shapes.color)
    _assert_states_equal(_state(resumed.model_), _state(full.model_))
    assert [h["train_loss"] for h in resumed.history_] == pytest.approx(
        [h["train_loss"] for h in full.history_], rel=1e-6
    )


def test_resume_from_an_epoch_checkpoint_by_path(fast_path, shapes, tmp_path):
    full = CLIPContrastiveFinetuner(fast_path, checkpoint_dir=tmp_path, **TRAIN).fit(
        shapes.images, shapes.color
    )
    # The newest two are kept, in the run's own subdirectory: those of epochs
    # 2 and 3 (4 steps each).
    (run,) = tmp_path.iterdir()
    assert sorted(p.name for p in run.iterdir()) == [
        "step-00000008.pt",
        "step-00000012.pt",
    ]
    resumed = CLIPContrastiveFinetuner(
        fast_path, resume=str(run / "step-00000008.pt"), **TRAIN
    ).fit(shapes.images, shapes.color)
    _assert_states_equal(_state(resumed.model_), _state(full.model_))


# -- acceptance 5: faults ------------------------------------------------------
def _nan_at(monkeypatch, call):
    counter = {"calls": 0}
    original = _contrastive.contrastive_loss

    def loss(*args, **kwargs):
        counter["calls"] += 1
        value = original(*args, **kwargs)
        return value * math.nan if counter["calls"] == call else value

    monkeypatch.setattr(_contrastive, "contrastive_loss", loss)


def _all_finite(handle):
    return all(np.isfinite(v).all() for v in _state(handle).values())


def test_a_nan_loss_raises_and_keeps_finite_weights(fast_path, shapes, monkeypatch):
    _nan_at(monkeypatch, 7)
    tuner = CLIPContrastiveFinetuner(fast_path, **TRAIN)
    with pytest.raises(
        FloatingPointError,
        match=r"epoch 2, optimizer step 6: the loss is nan.*last good step",
    ):
        tuner.fit(shapes.images, shapes.color)
    assert _all_finite(tuner.model_)
    assert tuner.n_iter_ == 1 and not tuner.interrupted_
    assert np.isfinite(tuner.transform(shapes.images[:3])).all()
    assert _changed(_state(load_model(fast_path)), _state(tuner.model_))


def test_a_non_finite_gradient_is_never_applied(fast_path, shapes, monkeypatch):
    calls = {"n": 0}
    original = torch.nn.utils.clip_grad_norm_

    def clip(parameters, max_norm, *args, **kwargs):
        calls["n"] += 1
        norm = original(parameters, max_norm, *args, **kwargs)
        return norm * math.inf if calls["n"] == 2 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    tuner = CLIPContrastiveFinetuner(fast_path, **TRAIN)
    with pytest.raises(FloatingPointError, match="gradient norm is inf"):
        tuner.fit(shapes.images, shapes.color)
    assert _all_finite(tuner.model_)


def test_an_overflowed_update_falls_back_to_the_last_checkpoint(
    fast_path, shapes, monkeypatch, tmp_path
):
    steps = {"n": 0}
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        steps["n"] += 1
        if steps["n"] == 6:  # an update that overflows the weights
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(math.inf)
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    tuner = CLIPContrastiveFinetuner(fast_path, checkpoint_dir=tmp_path, **TRAIN)
    with pytest.raises(FloatingPointError, match="keeps the weights of the checkpoint"):
        tuner.fit(shapes.images, shapes.color)
    assert _all_finite(tuner.model_)
    (run,) = tmp_path.iterdir()
    saved = _training.load_checkpoint(run / "step-00000004.pt")["model"]
    np.testing.assert_array_equal(
        _state(tuner.model_)["text_projection.weight"],
        saved["text_projection.weight"].numpy(),
    )


def test_keyboard_interrupt_leaves_a_usable_fitted_estimator(
    fast_path, shapes, monkeypatch
):
    _interrupt_at(monkeypatch, 3)
    tuner = CLIPContrastiveFinetuner(fast_path, **TRAIN)
    with pytest.warns(UserWarning, match="keeping the model trained so far"):
        tuner.fit(shapes.images, shapes.color)
    assert tuner.interrupted_ and tuner.n_iter_ == 0
    assert tuner.transform(shapes.images[:3]).shape == (3, 32)
    assert 0 <= tuner.score(shapes.images, shapes.color) <= 1
    # Two steps were taken before the interruption: the model moved.
    assert _changed(_state(load_model(fast_path)), _state(tuner.model_))


# -- early stopping ------------------------------------------------------------
def test_early_stopping_keeps_the_best_epoch(fast_path, shapes, monkeypatch, tmp_path):
    recalls = iter([0.5, 0.75, 0.5, 0.5, 0.9])
    original = _training.evaluate

    def scripted(*args, **kwargs):
        loss, _ = original(*args, **kwargs)
        return loss, next(recalls)

    monkeypatch.setattr(_training, "evaluate", scripted)
    tuner = CLIPContrastiveFinetuner(
        fast_path,
        n_iter_no_change=2,
        checkpoint_dir=tmp_path,
        **{**TRAIN, "max_epochs": 5},
    ).fit(shapes.images, shapes.color)
    assert tuner.n_iter_ == 4  # epochs 3 and 4 did not beat epoch 2
    assert [h["val_recall_at_1"] for h in tuner.history_] == [0.5, 0.75, 0.5, 0.5]
    best = _training.load_checkpoint(tuner.checkpoint_)["best_model"]
    np.testing.assert_array_equal(
        _state(tuner.model_)["visual_projection.weight"],
        best["visual_projection.weight"].numpy(),
    )


def test_by_default_every_pair_trains_and_early_stopping_holds_out_a_tenth(
    fast_path, shapes, monkeypatch
):
    sizes = []
    original = _training.train

    def spy(handle, train_data, val_data, config, **kwargs):
        sizes.append((len(train_data), 0 if val_data is None else len(val_data)))
        return original(handle, train_data, val_data, config, **kwargs)

    monkeypatch.setattr("sklearn_clip._train.finetuner.train", spy)
    params = {**TRAIN, "max_epochs": 1}
    del params["validation_fraction"]
    default = CLIPContrastiveFinetuner(fast_path, **params)
    assert default.validation_fraction is None
    default.fit(shapes.images, shapes.color)
    assert math.isnan(default.history_[0]["val_recall_at_1"])
    stopping = CLIPContrastiveFinetuner(fast_path, n_iter_no_change=1, **params)
    stopping.fit(shapes.images, shapes.color)
    assert 0 <= stopping.history_[0]["val_recall_at_1"] <= 1
    # 32 pairs: all train by default; early stopping holds out ceil(3.2) = 4.
    assert sizes == [(32, 0), (28, 4)]


def test_fit_on_the_happy_path_warns_nothing(fast_path, shapes):
    # How long it takes is measured in benchmarks/small_cpu.py, not asserted.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CLIPContrastiveFinetuner(fast_path, **TRAIN).fit(shapes.images, shapes.color)


def test_zero_shot_templates_of_the_acceptance_tests_are_valid(fitted):
    # The slow tests build prompts per shape; they must be valid templates.
    templates = [f"a {{}} {shape}" for shape in SHAPES]
    CLIPZeroShotClassifier(
        fitted.model_, candidate_labels=list(COLORS), templates=templates
    ).fit(None)


# -- acceptance 1 and 2: learning from random weights (slow) -------------------
# A tiny CLIP with 8-pixel patches over 32-pixel images, trained from random
# weights on captions naming colour and shape; small shapes (6 to 8 pixels)
# are too few patches to tell a circle from a diamond, so large ones only.
FROM_SCRATCH = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "context_length": 16,
}
PRETRAINING = {
    "weight_decay": 0.05,
    "batch_size": 64,
    "validation_fraction": None,
    "learning_rate": 2e-3,
    "max_epochs": 10,
}
PRETRAINING_PROMPT = "a photo of a {}."


def _large_shapes(n_samples, random_state):
    data = make_shapes(2 * n_samples, image_size=32, random_state=random_state)
    keep = data.size == "large"
    return data.images[keep], data.color[keep], data.shape[keep]


@pytest.fixture(scope="module")
def from_random_weights(tmp_path_factory):
    """A tiny CLIP trained from random weights on colour-and-shape captions."""
    folder = tmp_path_factory.mktemp("random-init")
    path = make_tiny_clip(folder, **FROM_SCRATCH, random_state=0)
    images, colour, shape = _large_shapes(3000, random_state=0)
    labels = np.char.add(np.char.add(colour.astype(str), " "), shape.astype(str))
    start = time.perf_counter()
    tuner = CLIPContrastiveFinetuner(
        path, caption_template=PRETRAINING_PROMPT, random_state=0, **PRETRAINING
    ).fit(images, labels)
    return path, tuner, time.perf_counter() - start


@pytest.mark.slow
def test_acceptance_training_from_random_weights(from_random_weights):
    path, tuner, seconds = from_random_weights
    images, colour, shape = _large_shapes(600, random_state=100)
    labels = np.char.add(np.char.add(colour.astype(str), " "), shape.astype(str))
    captions = sorted(set(labels))
    assert len(captions) >= 20  # 6 colours x 5 shapes

    def recall(model):
        # Image-to-text recall@1 over the distinct held-out captions.
        classifier = CLIPZeroShotClassifier(
            model, candidate_labels=captions, templates=PRETRAINING_PROMPT
        )
        return classifier.fit(None).score(images, labels)

    before, after = recall(path), tuner.score(images, labels)
    colour_classifier = CLIPZeroShotClassifier(
        tuner.model_,
        candidate_labels=list(COLORS),
        templates=[f"a photo of a {{}} {name}." for name in SHAPES],
    ).fit(None)
    colour_accuracy = colour_classifier.score(images, colour)
    print(
        f"\n{len(images)} held-out images, {len(captions)} captions: recall@1 "
        f"{before:.3f} -> {after:.3f} (chance {1 / len(captions):.3f}); trained in "
        f"{seconds:.0f} s; zero-shot colour accuracy {colour_accuracy:.3f}"
    )
    assert after == pytest.approx(recall(tuner.model_))
    assert before < 0.1
    assert after >= 0.8
    assert colour_accuracy >= 0.9


@pytest.mark.slow
def test_acceptance_wise_ft_traces_the_trade_off(tmp_path):
    # The experiment is the benchmark's, run as its users run it.
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "wise_ft.py"
    out = tmp_path / "rows.json"
    # In the environment a user runs it from: Dask's workers, started by
    # earlier tests, leave OMP_NUM_THREADS=1 and the like in this process's
    # environment, and the run's sums (so where training ends) follow the
    # number of threads.
    caps = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in caps}
    done = subprocess.run(
        [sys.executable, str(script), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    by_alpha = {row["alpha"]: row for row in rows}
    print("\nalpha  colour  shape")
    for row in rows:
        print(f"{row['alpha']!s:>5}  {row['colour']:.3f}   {row['shape']:.3f}")
    start, middle, end = by_alpha[0.0], by_alpha[0.5], by_alpha[1.0]
    # The colour-tuned model knows colours, not shapes; the shape-tuned one
    # learned shapes and forgot colours.
    assert start["colour"] >= 0.9 and start["shape"] <= 0.4
    assert end["shape"] >= 0.8 and end["colour"] <= start["colour"] - 0.3
    # Half-way keeps the colours and gains shape ...
    assert middle["colour"] >= 0.95 * start["colour"]
    assert middle["shape"] >= start["shape"] + 0.1
    # ... and a mix in the middle is better at both than either end is.
    mixes = [by_alpha[alpha] for alpha in (0.25, 0.5, 0.75)]
    best = max(min(row["colour"], row["shape"]) for row in mixes)
    assert best > max(min(row["colour"], row["shape"]) for row in (start, end)) + 0.2
    alphas = sorted(alpha for alpha in by_alpha if alpha is not None)
    colours = [by_alpha[a]["colour"] for a in alphas]
    shapes_ = [by_alpha[a]["shape"] for a in alphas]
    assert all(b <= a + 0.03 for a, b in zip(colours, colours[1:]))
    assert all(b >= a - 0.03 for a, b in zip(shapes_, shapes_[1:]))


def test_the_finetune_command_documents_each_option_and_its_default():
    import argparse

    from sklearn_clip import cli

    commands = next(
        a
        for a in cli.build_parser()._actions
        if isinstance(a, argparse._SubParsersAction)
    )
    helps = {
        option: action.help
        for action in commands.choices["finetune"]._actions
        for option in action.option_strings
    }
    for option in (
        "--caption-template",
        "--label-column",
        "--lora",
        "--train-parts",
        "--validation-fraction",
        "--early-stopping",
        "--checkpoint-dir",
        "--resume",
        "--wise-alpha",
        "--gradient-accumulation-steps",
        "--dtype",
        "--batch-size",
    ):
        assert "(default: " in helps[option], option
