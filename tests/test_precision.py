"""``dtype="auto"`` on CPU: bfloat16 only with native units that measured faster."""

import pytest
import torch

from sklearn_clip import CLIPContrastiveFinetuner, load_model
from sklearn_clip import _precision as precision
from sklearn_clip.datasets import make_shapes

CPU = torch.device("cpu")
# The cached decision itself, whatever a test puts in its place.
POLICY = precision.cpu_prefers_bf16


def _cpuinfo_flags():
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


@pytest.fixture
def fresh_policy(isolated_cache):
    """Forget the once-per-process decision (and the models loaded under
    another decision) before and after the test."""
    POLICY.cache_clear()
    yield
    POLICY.cache_clear()


def _pretend(monkeypatch, units, speedup):
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: units)

    def probe():
        if speedup is None:
            raise AssertionError("nothing should be timed on this CPU")
        return speedup

    monkeypatch.setattr(precision, "bf16_speedup", probe)


def test_units_agree_with_the_kernels_cpu_flags():
    # The kernel's flags are a reference independent of torch's queries.
    flags = _cpuinfo_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo on this platform")
    expected = {"amx": "amx_tile" in flags, "avx512_bf16": "avx512_bf16" in flags}
    if not torch.backends.mkldnn.is_available():
        expected = dict.fromkeys(expected, False)
    assert set(precision.cpu_bf16_units()) == {u for u, on in expected.items() if on}


def test_auto_stays_float32_without_native_units(
    monkeypatch, fresh_policy, tiny_clip_path
):
    _pretend(monkeypatch, units=(), speedup=None)
    assert precision.auto_dtype(CPU) == torch.float32
    assert load_model(tiny_clip_path, device="cpu", dtype="auto").dtype == (
        torch.float32
    )
    assert precision.autocast_dtype(CPU) is None


def test_auto_on_this_machine_follows_its_units(tiny_clip_path):
    handle = load_model(tiny_clip_path, device="cpu")
    native = torch.bfloat16 if precision.cpu_prefers_bf16() else torch.float32
    assert handle.dtype == native
    if not precision.cpu_bf16_units():  # e.g. AMD EPYC with AVX2 only
        assert handle.dtype == torch.float32


def test_auto_picks_bf16_where_native_and_faster(
    monkeypatch, fresh_policy, tiny_clip_path
):
    _pretend(monkeypatch, units=("amx",), speedup=3.0)
    handle = load_model(tiny_clip_path, device="cpu", dtype="auto")
    assert handle.dtype == torch.bfloat16
    assert next(handle.model.parameters()).dtype == torch.bfloat16
    assert precision.autocast_dtype(CPU) == torch.bfloat16
    opted_out = load_model(tiny_clip_path, device="cpu", dtype="float32")
    assert opted_out.dtype == torch.float32


def test_native_units_that_are_not_faster_keep_float32(monkeypatch, fresh_policy):
    _pretend(monkeypatch, units=("avx512_bf16",), speedup=1.1)
    assert precision.auto_dtype(CPU) == torch.float32


def test_probe_runs_once_per_process(monkeypatch, fresh_policy):
    calls = []
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: ("amx",))
    monkeypatch.setattr(precision, "bf16_speedup", lambda: calls.append(1) or 2.0)
    for _ in range(3):
        precision.auto_dtype(CPU)
    assert calls == [1]


def test_bf16_speedup_is_a_positive_ratio():
    assert precision.bf16_speedup(rows=8, width=16, repeats=1) > 0


def test_fine_tuning_autocasts_to_bf16_where_the_policy_says(
    monkeypatch, fresh_policy, tiny_clip_path
):
    seen = []
    real = torch.autocast

    def recording(device_type, *args, **kwargs):
        seen.append((device_type, kwargs.get("dtype"), kwargs.get("enabled")))
        return real(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording)
    monkeypatch.setattr(precision, "cpu_prefers_bf16", lambda: True)
    data = make_shapes(8, image_size=30, random_state=0)
    tuner = CLIPContrastiveFinetuner(
        tiny_clip_path,
        device="cpu",
        dtype="float32",
        caption_template="a {}",
        max_epochs=1,
        batch_size=4,
        validation_fraction=None,
    )
    tuner.fit(data.images, data.color)
    assert ("cpu", torch.bfloat16, True) in seen
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in tuner.history_)
