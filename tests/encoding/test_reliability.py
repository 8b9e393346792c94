"""The bad-input corpus: every case, under ``on_error="raise"`` and ``"nan"``.

Each bad case is generated here (in temporary directories) and put between two
good rows of a pandas Series with string index labels. Under "raise" the error
must name the row position, the index label and the path or array shape, and
chain the original exception; under "nan" the row must come back as NaN, be
listed in the failures, and give exactly one summary warning, while the good
rows keep the embeddings they get on their own. docs/reliability.md lists the
cases and the test that covers each.
"""

import io
import re
import struct
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image, UnidentifiedImageError

from sklearn_clip import ModelHandle
from sklearn_clip._encoding import images as _images
from sklearn_clip._encoding import prefetch
from sklearn_clip._encoding.encode import (
    InputErrorWarning,
    encode_images,
    report_failures,
)
from sklearn_clip._encoding.images import (
    ImageInputError,
    UnsupportedImageError,
    prepare_image,
    to_rgb,
)
from sklearn_clip._encoding.preprocess import ImageConfig
from tests.conftest import encoded

# -- building the corpus -------------------------------------------------------


def _smooth(height, width):
    """A smooth colour image: resampling order cannot change it much."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 256],
        axis=-1,
    ).astype(np.uint8)


def _png_header(width, height):
    """A valid PNG header claiming ``width`` x ``height`` pixels, and no data."""

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _truncated_jpeg(tmp_path, monkeypatch):
    data = encoded(Image.fromarray(_smooth(64, 64)), "JPEG")
    return _write(tmp_path, "truncated.jpg", data[: len(data) // 2])


def _zero_bytes(tmp_path, monkeypatch):
    return _write(tmp_path, "empty.jpg", b"")


def _text_as_jpeg(tmp_path, monkeypatch):
    return _write(tmp_path, "notes.jpg", b"these are notes, not an image\n" * 20)


def _missing_path(tmp_path, monkeypatch):
    return str(tmp_path / "no-such-folder" / "photo.jpg")


def _directory(tmp_path, monkeypatch):
    folder = tmp_path / "looks-like.jpg"
    folder.mkdir()
    return str(folder)


def _bomb_over_twice(tmp_path, monkeypatch):
    # 20 x 20 = 400 pixels against a limit of 100: over 2x, Pillow itself raises.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    return _write(
        tmp_path, "bomb.png", encoded(Image.fromarray(_smooth(20, 20)), "PNG")
    )


def _bomb_between(tmp_path, monkeypatch):
    # 400 pixels against a limit of 300: Pillow only warns, the package raises.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    return _write(
        tmp_path, "bomb.png", encoded(Image.fromarray(_smooth(20, 20)), "PNG")
    )


def _bomb_header_default_limit(tmp_path, monkeypatch):
    # 20,000 x 20,000 under Pillow's default limit: refused before any allocation.
    return _write(tmp_path, "huge.png", _png_header(20_000, 20_000))


def _bomb_header_between_default(tmp_path, monkeypatch):
    # 10,000 x 10,000 = 1e8 pixels: between 1x and 2x of the default limit.
    return _write(tmp_path, "large.png", _png_header(10_000, 10_000))


def _pil_image_between(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    return Image.fromarray(_smooth(20, 20))


# (builder, type of the chained cause, fragment of the cause's message)
BAD_CASES = {
    "truncated JPEG": (_truncated_jpeg, OSError, "truncated"),
    "zero-byte file": (_zero_bytes, OSError, "empty"),
    "text file named .jpg": (_text_as_jpeg, UnidentifiedImageError, "cannot identify"),
    "missing path": (_missing_path, FileNotFoundError, "no such file"),
    "directory": (_directory, IsADirectoryError, "not a regular file"),
    "bomb over 2x limit": (_bomb_over_twice, Image.DecompressionBombError, "exceeds"),
    "bomb between 1x and 2x": (
        _bomb_between,
        Image.DecompressionBombError,
        "exceeds Pillow's limit of 300",
    ),
    "20000x20000 header": (
        _bomb_header_default_limit,
        Image.DecompressionBombError,
        "exceeds limit",
    ),
    "10000x10000 header": (
        _bomb_header_between_default,
        Image.DecompressionBombError,
        "exceeds Pillow's limit",
    ),
    "PIL image over the limit": (
        _pil_image_between,
        Image.DecompressionBombError,
        "exceeds Pillow's limit",
    ),
    "float array above 1": (
        lambda t, m: np.full((8, 8, 3), 1.5),
        ValueError,
        r"values in [0, 1]",
    ),
    "float array below 0": (
        lambda t, m: np.linspace(-1, 1, 8 * 8 * 3).reshape(8, 8, 3),
        ValueError,
        r"values in [0, 1]",
    ),
    "float array with NaN": (
        lambda t, m: np.where(np.eye(8)[..., None] > 0, np.nan, 0.5) * np.ones(3),
        ValueError,
        "NaN or inf",
    ),
    "float array with inf": (
        lambda t, m: np.full((8, 8), np.inf, np.float32),
        ValueError,
        "NaN or inf",
    ),
    "1-D array": (lambda t, m: np.zeros(64, np.uint8), ValueError, "channels-last"),
    "4-D array": (
        lambda t, m: np.zeros((2, 8, 8, 3), np.uint8),
        ValueError,
        "channels-last",
    ),
    "channels-first array": (
        lambda t, m: np.zeros((3, 8, 8), np.uint8),
        ValueError,
        "channels-last",
    ),
    "empty array": (lambda t, m: np.zeros((0, 8, 3), np.uint8), ValueError, "empty"),
    "uint16 array": (
        lambda t, m: np.zeros((8, 8, 3), np.uint16),
        ValueError,
        "must be uint8",
    ),
    "empty PIL image": (lambda t, m: Image.new("RGB", (0, 5)), ValueError, "no pixels"),
    "None": (lambda t, m: None, UnsupportedImageError, "missing"),
    "NaN": (lambda t, m: float("nan"), UnsupportedImageError, "missing"),
    "pd.NA": (lambda t, m: pd.NA, UnsupportedImageError, "missing"),
    "an int": (lambda t, m: 7, UnsupportedImageError, "got int"),
}


def _source_fragment(item):
    """What the error message must show of the input: the path, or the shape."""
    if isinstance(item, str):
        return repr(item)
    if isinstance(item, np.ndarray):
        return f"array of shape {item.shape}"
    if isinstance(item, Image.Image):
        return f"size {item.size}"
    if item is None or item is pd.NA or isinstance(item, float):
        return "missing value"
    return type(item).__name__


@pytest.fixture(scope="module")
def good_rows(gradient):
    return [gradient(40, 30, 11), gradient(33, 47, 12)]


@pytest.fixture(scope="module")
def good_alone(tiny_clip, good_rows):
    return np.vstack([tiny_clip.encode_images([row]) for row in good_rows])


def _between(good_rows, bad):
    return pd.Series([good_rows[0], bad, good_rows[1]], index=["a", "b", "c"])


# -- bad rows ------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_row_raises_naming_row_index_and_source(
    case, tiny_clip, good_rows, tmp_path, monkeypatch
):
    build, cause_type, fragment = BAD_CASES[case]
    bad = build(tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageInputError, match=r"row 1 \(index 'b'\)") as caught:
            tiny_clip.encode_images(_between(good_rows, bad), on_error="raise")
    assert isinstance(caught.value, ValueError)
    assert _source_fragment(bad) in str(caught.value)
    assert isinstance(caught.value.__cause__, cause_type)
    assert fragment.lower() in str(caught.value.__cause__).lower()


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_row_becomes_nan_with_one_warning(
    case, tiny_clip, good_rows, good_alone, tmp_path, monkeypatch
):
    build, cause_type, _ = BAD_CASES[case]
    bad = build(tmp_path, monkeypatch)
    rows = _between(good_rows, bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embeddings, failures = encode_images(
            tiny_clip, rows.tolist(), rows.index, on_error="nan"
        )
        report_failures(failures, rows.tolist(), rows.index)
        public = tiny_clip.encode_images(rows, on_error="nan")
    ours = [w for w in caught if issubclass(w.category, InputErrorWarning)]
    assert len(ours) == 2  # one per call
    assert "1 of 3 images could not be read" in str(ours[0].message)
    assert cause_type.__name__ in str(ours[0].message)
    for result in (embeddings, public):
        assert result.shape == (3, tiny_clip.embedding_dim)
        assert np.isnan(result[1]).all()
        np.testing.assert_allclose(result[[0, 2]], good_alone, atol=1e-5)
    [(position, error)] = failures
    assert position == 1
    assert isinstance(error, ImageInputError)
    assert "row 1 (index 'b')" in str(error)
    assert isinstance(error.__cause__, cause_type)


def test_pillow_only_warns_between_1x_and_2x_but_the_row_fails(tmp_path, monkeypatch):
    path = _bomb_between(tmp_path, monkeypatch)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(path).close()  # Pillow alone would decode this image
    with pytest.warns(Image.DecompressionBombWarning):
        with pytest.raises(Image.DecompressionBombError, match="limit of 300"):
            to_rgb(path)
    assert Image.MAX_IMAGE_PIXELS == 300  # read, never changed, by the package


def test_bomb_header_is_refused_before_any_pixel_is_allocated(monkeypatch):
    def no_load(self):
        raise AssertionError("load() reached on a bomb")

    monkeypatch.setattr(Image.Image, "load", no_load)
    for size in (20_000, 10_000):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with pytest.raises(Image.DecompressionBombError):
                to_rgb(_png_header(size, size))


def test_pandas_column_with_none_and_nan(tiny_clip, good_alone, good_rows):
    column = pd.DataFrame(
        {"image": [good_rows[0], None, np.nan, good_rows[1]]},
        index=[10, 20, 30, 40],
    )
    with pytest.raises(
        ImageInputError, match=r"row 1 \(index 20\), a missing value \(None\)"
    ):
        tiny_clip.encode_images(column)
    with pytest.warns(InputErrorWarning, match="2 of 4 images") as caught:
        embeddings = tiny_clip.encode_images(column, on_error="nan")
    assert len([w for w in caught if w.category is InputErrorWarning]) == 1
    assert np.isnan(embeddings[[1, 2]]).all()
    np.testing.assert_allclose(embeddings[[0, 3]], good_alone, atol=1e-5)


def test_every_row_failing_raises_even_under_nan(tiny_clip, tmp_path):
    rows = [None, str(tmp_path / "gone.jpg"), np.full((4, 4, 3), 9.0)]
    with pytest.raises(ImageInputError, match="all 3 images failed") as caught:
        tiny_clip.encode_images(rows, on_error="nan")
    assert isinstance(caught.value.__cause__, ImageInputError)
    assert "row 0" in str(caught.value)
    with pytest.raises(ImageInputError, match="row 0"):
        tiny_clip.encode_images(rows, on_error="raise")


def test_unknown_policy_is_refused(tiny_clip, good_rows):
    with pytest.raises(ValueError, match="on_error must be one of"):
        encode_images(tiny_clip, good_rows, on_error="skip")


def test_failures_keep_order_across_batches(tiny_clip, good_rows, good_alone):
    rows = [good_rows[i % 2] if i % 3 else None for i in range(11)]
    with pytest.warns(InputErrorWarning, match="4 of 11"):
        embeddings, failures = encode_images(
            tiny_clip, rows, batch_size=2, on_error="nan", n_workers=3
        )
        report_failures(failures, rows)
    assert [position for position, _ in failures] == [0, 3, 6, 9]
    assert np.isnan(embeddings[[0, 3, 6, 9]]).all()
    for i in range(11):
        if i % 3:
            np.testing.assert_allclose(embeddings[i], good_alone[i % 2], atol=1e-5)


# -- only a bad row is caught ----------------------------------------------------


def _raise_for(marker, exc_type):
    def fake(item, *args, **kwargs):
        if isinstance(item, str) and item == marker:
            raise exc_type("raised inside decoding")
        return real_prepare(item, *args, **kwargs)

    real_prepare = prepare_image
    return fake


@pytest.mark.parametrize("exc_type", [MemoryError, KeyboardInterrupt])
def test_resource_errors_and_interrupts_propagate_under_nan(
    exc_type, tiny_clip, good_rows, monkeypatch
):
    monkeypatch.setattr(prefetch, "prepare_image", _raise_for("boom", exc_type))
    with pytest.raises(exc_type, match="inside decoding"):
        encode_images(tiny_clip, [good_rows[0], "boom", good_rows[1]], on_error="nan")


def test_memory_error_in_to_rgb_propagates(tiny_clip, good_rows, monkeypatch):
    def fake(item):
        raise MemoryError("cannot allocate")

    monkeypatch.setattr(_images, "to_rgb", fake)
    with pytest.raises(MemoryError, match="cannot allocate"):
        tiny_clip.encode_images(good_rows, on_error="nan")


def test_a_bug_is_not_mistaken_for_a_bad_row(tiny_clip, good_rows, monkeypatch):
    def buggy(image, config):
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(_images, "resize_and_crop", buggy)
    with pytest.raises(TypeError, match="unsupported operand"):
        encode_images(tiny_clip, good_rows, on_error="nan")


def test_model_errors_propagate_under_nan(tiny_clip, good_rows, monkeypatch):
    def broken(model, pixels):
        raise RuntimeError("device-side assert")

    monkeypatch.setattr(ModelHandle, "image_features", broken)
    with pytest.raises(RuntimeError, match="device-side assert"):
        encode_images(tiny_clip, [good_rows[0], None], on_error="nan")


# -- hard but valid images -------------------------------------------------------


def _frames(fmt):
    frames = [Image.new("RGB", (24, 20), c) for c in ("red", "lime", "blue")]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:])


def _palette_with_transparency():
    image = Image.fromarray(_smooth(20, 24)).convert("P", palette=Image.Palette.WEB)
    data = np.asarray(image).copy()
    data[:, :12] = 0
    image = Image.fromarray(data, "P")
    image.putpalette(Image.fromarray(_smooth(20, 24)).convert("P").getpalette())
    return encoded(image, "PNG", transparency=0)


def _exif_rotated():
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    return encoded(Image.fromarray(_smooth(20, 40)), "PNG", exif=exif.tobytes())


GOOD_CASES = {
    "animated GIF": lambda: _frames("GIF"),
    "MPO (multi-picture JPEG)": lambda: _frames("MPO"),
    "multi-page TIFF": lambda: _frames("TIFF"),
    "CMYK JPEG": lambda: encoded(
        Image.fromarray(_smooth(20, 24)).convert("CMYK"), "JPEG"
    ),
    "16-bit PNG": lambda: encoded(
        Image.fromarray(_smooth(20, 24)[..., 0].astype(np.uint16) * 257), "PNG"
    ),
    "1-bit PNG": lambda: encoded(Image.fromarray(_smooth(20, 24)).convert("1"), "PNG"),
    "LA PNG": lambda: encoded(Image.fromarray(_smooth(20, 24)).convert("LA"), "PNG"),
    "palette with transparency": _palette_with_transparency,
    "EXIF-rotated": _exif_rotated,
    "1x1 pixel": lambda: np.full((1, 1, 3), 200, np.uint8),
    "10000x10": lambda: _smooth(10_000, 10),
    "10x10000": lambda: _smooth(10, 10_000),
    "1x100000 PNG": lambda: encoded(Image.fromarray(_smooth(1, 100_000)), "PNG"),
    "greyscale array": lambda: _smooth(20, 24)[..., 0],
    "(H, W, 1) array": lambda: _smooth(20, 24)[..., :1],
    "(H, W, 4) array": lambda: np.dstack(
        [_smooth(20, 24), np.full((20, 24), 255, np.uint8)]
    ),
    "bool array": lambda: np.eye(16, dtype=bool),
    "float array in [0, 1]": lambda: _smooth(20, 24) / 255.0,
}


@pytest.mark.parametrize("model", ["tiny_clip", "tiny_siglip"])
def test_hard_valid_images_embed_under_both_policies(model, request):
    handle = request.getfixturevalue(model)
    rows = [build() for build in GOOD_CASES.values()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of ours or Pillow's leaks
        raised = handle.encode_images(rows, on_error="raise")
        embeddings, failures = encode_images(handle, rows, on_error="nan")
    assert failures == []
    assert np.isfinite(embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(embeddings, raised, atol=1e-6)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "MPO"])
def test_first_frame_or_page_is_used(fmt):
    first = np.asarray(to_rgb(_frames(fmt)))
    np.testing.assert_allclose(first, np.broadcast_to([255, 0, 0], first.shape), atol=3)
    np.testing.assert_array_equal(np.asarray(to_rgb(_frames(fmt))), first)  # always


def test_cmyk_jpeg_matches_its_rgb_twin():
    rgb = Image.fromarray(_smooth(20, 24))
    from_cmyk = np.asarray(to_rgb(encoded(rgb.convert("CMYK"), "JPEG")), float)
    from_rgb = np.asarray(to_rgb(encoded(rgb, "JPEG", quality=95)), float)
    assert np.abs(from_cmyk - from_rgb).mean() < 6


def test_sixteen_bit_png_matches_its_eight_bit_twin():
    grey = _smooth(20, 24)[..., 0]
    sixteen = to_rgb(encoded(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"))
    np.testing.assert_array_equal(np.asarray(sixteen)[..., 0], grey)


def test_transparency_is_composited_on_white():
    la = Image.fromarray(_smooth(20, 24)[..., 0]).convert("LA")
    la.putalpha(0)
    assert (np.asarray(to_rgb(encoded(la, "PNG"))) == 255).all()
    palette = np.asarray(to_rgb(_palette_with_transparency()))
    assert (palette[:, :12] == 255).all()
    assert not (palette[:, 12:] == 255).all()


def test_one_bit_image_is_black_and_white():
    image = to_rgb(encoded(Image.fromarray(np.eye(8, dtype=bool)), "PNG"))
    assert set(np.unique(np.asarray(image))) == {0, 255}


def test_exif_rotation_equals_the_physically_rotated_image():
    rotated = Image.fromarray(_smooth(20, 40)).transpose(Image.Transpose.ROTATE_270)
    np.testing.assert_array_equal(
        np.asarray(to_rgb(_exif_rotated())), np.asarray(rotated)
    )


def test_one_pixel_image_fills_the_crop():
    config = ImageConfig(size=30, crop=(30, 30))
    pixels = prepare_image(np.full((1, 1, 3), 200, np.uint8), config)
    assert pixels.shape == (30, 30, 3) and (pixels == 200).all()


@pytest.mark.parametrize(
    "shape", [(10_000, 10), (10, 10_000), (1, 100_000), (100_000, 1)]
)
def test_extreme_aspect_ratio_stays_bounded(shape, monkeypatch):
    config = ImageConfig(size=30, crop=(30, 30))
    sizes = []
    real_resize = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        sizes.append(size)
        return real_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    pixels = prepare_image(_smooth(*shape), config)
    assert pixels.shape == (30, 30, 3)
    # Resizing the short side first would make a 30 x 3,000,000 image here.
    assert max(w * h for w, h in sizes) <= 16 * 30 * 30


@pytest.mark.parametrize("shape", [(20, 900), (900, 20), (40, 2000)])
def test_bounded_resize_matches_resize_then_crop(shape):
    from sklearn_clip._encoding.preprocess import _center_crop, _resized_shape

    image = Image.fromarray(_smooth(*shape))
    config = ImageConfig(size=30, crop=(30, 30))
    full = image.resize(_resized_shape(image.width, image.height, 30), resample=3)
    expected = _center_crop(np.asarray(full), (30, 30)).astype(int)
    assert np.abs(prepare_image(image, config).astype(int) - expected).max() <= 1


def test_allowed_formats_are_all_registered():
    Image.init()
    assert set(_images.ALLOWED_FORMATS) <= set(Image.OPEN)


def test_formats_outside_the_allow_list_are_not_decoded(tiny_clip):
    ico = encoded(Image.fromarray(_smooth(16, 16)), "ICO")
    Image.open(io.BytesIO(ico)).load()  # Pillow reads it when asked to
    with pytest.raises(ImageInputError, match="UnidentifiedImageError"):
        tiny_clip.encode_images([ico])


# -- texts -------------------------------------------------------------------------


def test_missing_texts_name_the_row(tiny_clip):
    for missing in (None, np.nan, pd.NA):
        column = pd.Series(["a red circle", missing], index=["x", "y"], dtype=object)
        with pytest.raises(ValueError, match=r"row 1 \(index 'y'\) is missing"):
            tiny_clip.encode_texts(column)


@pytest.mark.parametrize("model", ["tiny_clip", "tiny_siglip"])
def test_empty_and_whitespace_texts_embed(model, request):
    handle = request.getfixturevalue(model)
    embeddings = handle.encode_texts(["", "   ", "a red circle", ""])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(embeddings[0], embeddings[3])
    np.testing.assert_allclose(handle.encode_texts([""])[0], embeddings[0], atol=1e-6)


@pytest.mark.parametrize("model", ["tiny_clip", "tiny_siglip"])
def test_long_text_is_cut_to_the_context_with_one_warning(model, request):
    base = request.getfixturevalue(model)
    handle = base.with_model(base.model)  # a fresh handle warns afresh
    words = "a red circle on the left of a small blue square".split()
    long_text = " ".join(words[i % len(words)] for i in range(300))
    # The tiny tokenizer has one token per word; the context (32 tokens, 64 for
    # SigLIP) holds the start and end tokens, and that many words less.
    prefix = " ".join(long_text.split()[: handle.context_length - 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embeddings = handle.encode_texts([long_text, prefix, long_text + " again"])
    notes = [w for w in caught if "truncated" in str(w.message)]
    assert len(notes) == 1 and "2 text(s)" in str(notes[0].message)
    assert len(caught) == 1  # and no second notice from the tokenizer
    np.testing.assert_allclose(embeddings[0], embeddings[1], atol=1e-5)
    np.testing.assert_allclose(embeddings[2], embeddings[1], atol=1e-5)


UNICODE_TEXTS = [
    "🐱🚀 a cat in space",
    "一只猫的照片",
    "صورة قطة",
    "e\u0301te\u0301 \u200b zero width",
    "nul \x00 inside",
    "x" * 200_000,
]


@pytest.mark.parametrize("model", ["tiny_clip", "tiny_siglip"])
def test_emoji_and_other_scripts_embed_deterministically(model, request):
    handle = request.getfixturevalue(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long one is truncated
        first = handle.encode_texts(UNICODE_TEXTS)
        second = handle.encode_texts(UNICODE_TEXTS[::-1])[::-1]
        alone = np.vstack([handle.encode_texts([t]) for t in UNICODE_TEXTS[:3]])
    assert np.isfinite(first).all()
    np.testing.assert_allclose(first, second, atol=1e-6)
    np.testing.assert_allclose(first[:3], alone, atol=1e-5)


def test_lone_surrogate_is_a_clear_row_error(tiny_clip):
    texts = pd.Series(["fine", "bad \udc80 byte"], index=["p", "q"], dtype=object)
    with pytest.raises(
        ValueError, match=re.escape("row 1 (index 'q') is not valid Unicode text")
    ):
        tiny_clip.encode_texts(texts)
