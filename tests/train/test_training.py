import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sklearn_clip._backends.torch.weights import as_numpy_state
from sklearn_clip._encoding.images import prepare_image
from sklearn_clip._train import distributed as dist
from sklearn_clip._train import loop as _training
from sklearn_clip._train.contrastive import caption_tokens
from sklearn_clip._train.loop import (
    MAX_LOGIT_SCALE,
    TrainingConfig,
    build_trainable,
    epoch_batches,
    load_checkpoint,
    lr_multiplier,
    parameter_groups,
    prepare_pairs,
    recall_at_1,
    save_checkpoint,
    split_validation,
    train,
)
from sklearn_clip._train.losses import contrastive_loss
from sklearn_clip._train.pairs import PairedData
from sklearn_clip.datasets import make_shapes


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def pairs(tiny_clip):
    data = make_shapes(24, image_size=30, random_state=0)
    pairs, errors = prepare_pairs(tiny_clip, list(data.images), None, list(data.color))
    assert errors == []
    return pairs


# -- batches and schedule ------------------------------------------------------
def test_each_epoch_visits_every_pair_once_in_a_seeded_order():
    first = epoch_batches(100, 32, seed=3, epoch=0)
    assert sorted(np.concatenate(first)) == list(range(100))
    assert [len(b) for b in first] == [32, 32, 32, 4]
    again = epoch_batches(100, 32, seed=3, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = epoch_batches(100, 32, seed=3, epoch=1)
    assert not np.array_equal(first[0], other[0])


def test_a_last_batch_of_one_pair_joins_the_one_before():
    # One pair alone has a loss of exactly 0: no batch may be left with one.
    assert [len(b) for b in epoch_batches(33, 32, 0, 0)] == [33]
    assert [len(b) for b in epoch_batches(5, 32, 0, 0)] == [5]
    assert [len(b) for b in epoch_batches(65, 32, 0, 0)] == [32, 33]


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_zero():
    multipliers = [lr_multiplier(step, 4, 20) for step in range(20)]
    assert multipliers[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(multipliers[4:], multipliers[5:]))
    assert math.isclose(lr_multiplier(12, 4, 20), 0.5)
    assert lr_multiplier(20, 4, 20) == 0.0
    assert lr_multiplier(0, 0, 10) == 1.0


def test_recall_counts_a_duplicate_caption_as_correct():
    images = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    texts = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert recall_at_1(images, texts, np.array([0, 1, 0])) == 1.0
    assert recall_at_1(images, texts, np.array([1, 1, 0])) == pytest.approx(2 / 3)


def test_validation_split_is_seeded_and_skipped_when_too_small(pairs):
    train_part, val_part = split_validation(pairs, 0.25, seed=1)
    assert (len(train_part), len(val_part)) == (18, 6)
    again, _ = split_validation(pairs, 0.25, seed=1)
    np.testing.assert_array_equal(train_part.rows, again.rows)
    # Captions are renumbered to those present on each side.
    assert len(val_part.captions) == len(np.unique(val_part.caption_ids))
    with pytest.warns(UserWarning, match="without validation"):
        whole, none = split_validation(pairs.subset(np.arange(5)), 0.1, seed=1)
    assert none is None and len(whole) == 5


def test_images_are_decoded_once_into_a_file_read_batch_by_batch(pairs, tiny_clip):
    pixels = pairs.pixels([0, 5, 23])
    assert pixels.shape == (3, 30, 30, 3) and pixels.dtype == np.uint8
    assert os.path.getsize(pairs.store.path) == 24 * 30 * 30 * 3
    image = make_shapes(24, image_size=30, random_state=0).images[5]
    decoded = prepare_image(image, tiny_clip.image_config)
    np.testing.assert_array_equal(pixels[1], decoded)
    assert pairs.captions == sorted(set(pairs.captions))
    assert [pairs.captions[i] for i in pairs.caption_ids[:3]] == list(
        make_shapes(24, image_size=30, random_state=0).color[:3]
    )


# -- what trains ---------------------------------------------------------------
def _trainable_names(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "parts, trains, frozen",
    [
        ("all", ("vision_model.", "text_model.", "visual_projection"), ()),
        ("lock_image", ("text_model.", "text_projection"), ("vision_model.", "visual")),
        ("lock_text", ("vision_model.", "visual_projection"), ("text_model.", "text_")),
        ("projections", ("visual_projection", "text_projection"), ("vision", "text_m")),
    ],
)
def test_train_parts_choose_what_trains(tiny_clip, parts, trains, frozen):
    model, peft_model = build_trainable(
        tiny_clip.model, TrainingConfig(train_parts=parts)
    )
    names = _trainable_names(model)
    assert peft_model is None
    assert "logit_scale" in names  # the temperature always trains
    assert all(any(n.startswith(prefix) for n in names) for prefix in trains)
    assert not any(n.startswith(frozen) for n in names if frozen)
    assert model is not tiny_clip.model
    assert next(model.parameters()).dtype == torch.float32


def test_siglip_projections_are_the_heads(tiny_siglip):
    model, _ = build_trainable(
        tiny_siglip.model, TrainingConfig(train_parts="projections")
    )
    names = _trainable_names(model)
    assert {"logit_scale", "logit_bias"} <= names
    assert any(n.startswith("vision_model.head.") for n in names)
    assert any(n.startswith("text_model.head.") for n in names)
    assert not any(".encoder." in n for n in names)


def test_weight_decay_spares_biases_norms_and_temperature(tiny_clip):
    model, _ = build_trainable(tiny_clip.model, TrainingConfig())
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    spared = {id(p) for p in no_decay["params"]}
    for name, parameter in model.named_parameters():
        if name.endswith("bias") or "norm" in name or name == "logit_scale":
            assert id(parameter) in spared, name
        if name.endswith("proj.weight"):
            assert id(parameter) not in spared, name


def test_lora_trains_adapters_on_the_unlocked_tower_only(tiny_clip):
    pytest.importorskip("peft")
    config = TrainingConfig(lora=2, train_parts="lock_image")
    model, peft_model = build_trainable(tiny_clip.model, config)
    names = _trainable_names(model)
    assert peft_model is not None
    assert "logit_scale" in names
    assert all("lora_" in n for n in names - {"logit_scale"})
    assert any(n.startswith("text_model.") for n in names)
    assert not any(n.startswith("vision_model.") for n in names)
    merged = peft_model.merge_and_unload()
    assert set(merged.state_dict()) == set(tiny_clip.model.state_dict())


def test_lora_with_projections_only_is_refused(tiny_clip):
    pytest.importorskip("peft")
    with pytest.raises(ValueError, match="train_parts='projections'"):
        build_trainable(
            tiny_clip.model, TrainingConfig(lora=2, train_parts="projections")
        )


def test_lora_without_peft_names_the_extra(tiny_clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"pip install sklearn-clip\[lora\]"):
        build_trainable(tiny_clip.model, TrainingConfig(lora=4))


# -- the loop ------------------------------------------------------------------
def test_training_changes_a_copy_and_clamps_the_temperature(tiny_clip, pairs):
    before = as_numpy_state(tiny_clip.model)
    config = TrainingConfig(learning_rate=0.5, max_epochs=2, batch_size=8, seed=0)
    result = train(tiny_clip, pairs, None, config)
    after = as_numpy_state(tiny_clip.model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    tuned = result.model
    assert float(tuned.logit_scale) <= MAX_LOGIT_SCALE + 1e-6
    assert not tuned.training and not any(p.requires_grad for p in tuned.parameters())
    assert result.n_steps == 6 and len(result.history) == 2


def test_accumulation_takes_one_step_per_group_of_micro_batches(tiny_clip, pairs):
    config = TrainingConfig(
        max_epochs=1, batch_size=6, gradient_accumulation_steps=3, seed=0
    )
    result = train(tiny_clip, pairs, None, config)
    assert result.n_steps == 2  # 4 micro-batches -> steps of 3 and 1
    assert np.isfinite(result.history[0]["train_loss"])


def test_history_records_each_epoch(tiny_clip, pairs, capsys):
    train_part, val_part = split_validation(pairs, 0.25, seed=0)
    config = TrainingConfig(learning_rate=1e-3, max_epochs=2, batch_size=8)
    result = train(tiny_clip, train_part, val_part, config, verbose=1, progress=True)
    assert [h["epoch"] for h in result.history] == [1, 2]
    for record in result.history:
        assert set(record) == {
            "epoch",
            "train_loss",
            "val_loss",
            "val_recall_at_1",
            "learning_rate",
            "logit_scale",
            "grad_norm",
            "seconds",
        }
        assert 0 <= record["val_recall_at_1"] <= 1 and record["val_loss"] > 0
    assert result.history[-1]["learning_rate"] < 1e-3  # cosine decay
    assert "epoch 2/2: train loss" in capsys.readouterr().out


# -- checkpoints ---------------------------------------------------------------
def _state(step):
    return {"progress": {"step": step}, "model": {"w": torch.full((3,), float(step))}}


def test_checkpoints_are_atomic_and_only_the_newest_two_are_kept(tmp_path, monkeypatch):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, _state(step))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-00000002.pt",
        "step-00000003.pt",
    ]

    def crash(obj, handle):
        handle.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, _state(4))
    assert not (tmp_path / "step-00000004.pt").exists()
    assert not list(tmp_path.glob("*.tmp"))  # a failed write leaves nothing behind
    assert float(load_checkpoint(tmp_path / "step-00000003.pt")["model"]["w"][0]) == 3


def test_stale_temporary_files_are_removed_when_training_starts(
    tiny_clip, pairs, tmp_path
):
    config = TrainingConfig(max_epochs=1, batch_size=12)
    run = _training.run_directory(tmp_path, _signature(tiny_clip, pairs, config))
    run.mkdir()
    # What killed writers left: this version's temporary name and an older one.
    (run / ".step-00000009.pt.k3j2x9.tmp").write_bytes(b"partial")
    (run / "step-00000009.pt.tmp").write_bytes(b"partial")
    result = train(tiny_clip, pairs, None, config, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in run.iterdir()) == ["step-00000002.pt"]
    assert result.checkpoint == str(run / "step-00000002.pt")


def _signature(handle, pairs, config):
    model, _ = build_trainable(handle.model, config)
    return _training.run_signature(config, pairs, None, model, handle.model)


def test_checkpoints_load_without_unpickling_code(tmp_path):
    path = tmp_path / "step-00000001.pt"
    torch.save({"progress": {"step": 1}, "payload": np.float64}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_checkpoint(path)


def test_resuming_with_other_settings_is_refused(tiny_clip, pairs, tmp_path):
    config = TrainingConfig(max_epochs=1, batch_size=12)
    train(tiny_clip, pairs, None, config, checkpoint_dir=tmp_path)
    other = TrainingConfig(max_epochs=1, batch_size=12, learning_rate=1.0)
    with pytest.raises(ValueError, match="learning_rate differ"):
        train(tiny_clip, pairs, None, other, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="train_data differ"):
        train(
            tiny_clip,
            pairs.subset(np.arange(20)),
            None,
            config,
            resume=True,
            checkpoint_dir=tmp_path,
        )


def test_resume_without_a_checkpoint_says_so(tiny_clip, pairs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(
            tiny_clip,
            pairs,
            None,
            TrainingConfig(),
            checkpoint_dir=tmp_path,
            resume=True,
        )


def test_a_corrupt_rng_state_in_a_checkpoint_raises(tiny_clip, pairs, tmp_path):
    config = TrainingConfig(max_epochs=2, batch_size=12)
    train(tiny_clip, pairs, None, config, checkpoint_dir=tmp_path)
    path = sorted(tmp_path.glob("run-*/step-*.pt"))[0]
    state = load_checkpoint(path)
    state["rng"]["torch"] = torch.zeros(3, dtype=torch.uint8)
    torch.save(state, path)
    with pytest.raises(RuntimeError):
        train(tiny_clip, pairs, None, config, resume=str(path))


# -- gathering across processes ------------------------------------------------
def test_one_process_is_a_world_of_one():
    assert (dist.get_rank(), dist.get_world_size()) == (0, 1)
    assert dist.is_main_process() and not dist.is_distributed()
    image, text = torch.randn(3, 4), torch.randn(3, 4)
    ids = torch.tensor([0, 1, 0])
    gathered = dist.gather_features(image, text, ids)
    assert all(a is b for a, b in zip(gathered, (image, text, ids)))
    assert dist.mean_over_ranks(0.25) == 0.25


def _gather_worker(rank, world_size, init_file, result_file):
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    torch.manual_seed(0)
    weight = torch.randn(4, 4, requires_grad=True)
    inputs = torch.randn(8, 4)
    ids = torch.tensor([0, 1, 2, 0, 3, 4, 5, 1])
    local = slice(rank * 4, rank * 4 + 4)
    images = F.normalize(inputs[local] @ weight, dim=1)
    texts = F.normalize(inputs[local], dim=1)
    image_all, text_all, ids_all = dist.gather_features(images, texts, ids[local])
    contrastive_loss(image_all, text_all, 10.0, ids_all).backward()
    grad = weight.grad.clone()
    torch.distributed.all_reduce(grad)  # what DDP sums (before averaging)
    if rank == 0:
        torch.save({"grad": grad, "ids": ids_all, "n": len(image_all)}, result_file)
    torch.distributed.destroy_process_group()


def test_gathered_features_give_the_single_process_gradient(tmp_path):
    torch.multiprocessing.spawn(
        _gather_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path / "result.pt")),
        nprocs=2,
    )
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.manual_seed(0)
    weight = torch.randn(4, 4, requires_grad=True)
    inputs = torch.randn(8, 4)
    ids = torch.tensor([0, 1, 2, 0, 3, 4, 5, 1])
    images = F.normalize(inputs @ weight, dim=1)
    contrastive_loss(images, F.normalize(inputs, dim=1), 10.0, ids).backward()
    assert result["n"] == 8
    torch.testing.assert_close(result["ids"], ids)
    torch.testing.assert_close(result["grad"], weight.grad)


@pytest.mark.skipif(os.name != "posix", reason="fsync of a file on POSIX")
def test_checkpoint_holds_what_a_resume_needs(tiny_clip, pairs, tmp_path):
    config = TrainingConfig(max_epochs=1, batch_size=12)
    train(tiny_clip, pairs, None, config, checkpoint_dir=tmp_path)
    (run,) = tmp_path.glob("run-*")
    state = load_checkpoint(_training.latest_checkpoint(run))
    assert {"model", "optimizer", "schedule", "progress", "rng", "signature"} <= set(
        state
    )
    assert state["progress"]["step"] == 2 and state["progress"]["epoch"] == 1
    assert state["schedule"] == {"warmup_steps": 0, "total_steps": 2}
    assert state["optimizer"]["state"]  # AdamW moments


def test_captions_are_tokenised_once_and_padded_as_the_tokenizer_pads(tiny_clip):
    captions = ["a", "a red circle on the left", "something", "a blue square"]
    data = PairedData(None, np.arange(4), np.arange(4), captions)
    for distinct in ([0, 2], [1, 3], [0, 1, 2, 3]):
        input_ids, mask = caption_tokens(tiny_clip, data, np.array(distinct), "cpu")
        expected = tiny_clip.tokenizer(
            [captions[i] for i in distinct], padding=True, return_tensors="np"
        )
        np.testing.assert_array_equal(input_ids.numpy(), expected["input_ids"])
        np.testing.assert_array_equal(mask.numpy(), expected["attention_mask"])
    tokens = data.tokens
    caption_tokens(tiny_clip, data, np.array([1]), "cpu")
    assert data.tokens is tokens  # every caption was tokenised at the first call
