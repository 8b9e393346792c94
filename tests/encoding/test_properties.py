"""Property-based tests: whatever arrives as an image, the policy holds.

Random bytes, damaged image files, random arrays (any shape, dtype and value,
NaN and inf included) and random Pillow modes must either become the model's
pixels or raise one of the row errors, which the encoder turns into an
``ImageInputError`` under "raise" or a NaN row under "nan". Through the whole
encoder, rows keep their count and order, and a valid row's embedding does not
depend on what surrounds it.
"""

import io
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from sklearn_clip._encoding.encode import (
    InputErrorWarning,
    encode_images,
    report_failures,
)
from sklearn_clip._encoding.images import (
    ROW_ERRORS,
    ImageInputError,
    prepare_image,
)
from sklearn_clip._encoding.prefetch import prepare_row
from sklearn_clip._encoding.preprocess import ImageConfig

CONFIG = ImageConfig(size=30, crop=(30, 30))  # the tiny model's preprocessing
MANY = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _seed_files():
    """Small valid files of every allowed format and several modes."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return [
        _encoded(rgb, "JPEG"),
        _encoded(rgb, "JPEG", progressive=True),
        _encoded(rgb.convert("CMYK"), "JPEG"),
        _encoded(rgb, "PNG"),
        _encoded(rgb.convert("P"), "PNG", transparency=0),
        _encoded(rgb.convert("LA"), "PNG"),
        _encoded(
            Image.fromarray(np.asarray(rgb)[..., 0].astype(np.uint16) * 257), "PNG"
        ),
        _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        _encoded(rgb, "BMP"),
        _encoded(rgb, "TIFF"),
        _encoded(rgb, "TIFF", compression="tiff_lzw"),
        _encoded(rgb.convert("1"), "TIFF", compression="group4"),
        _encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        _encoded(rgb, "WEBP"),
        _encoded(rgb, "PPM"),
    ]


SEEDS = _seed_files()


@st.composite
def damaged_files(draw):
    """A valid file with bytes overwritten, inserted or cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["set", "insert", "cut"]))
        if edit == "set":
            data[position] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[position:]
    return bytes(data)


file_bytes = st.one_of(
    st.binary(max_size=2048),
    st.sampled_from(SEEDS),
    damaged_files(),
    st.sampled_from(SEEDS).flatmap(
        lambda seed: st.binary(max_size=64).map(seed[:16].__add__)
    ),
)

DTYPES = [
    "uint8",
    "uint16",
    "int8",
    "int64",
    "float16",
    "float32",
    "float64",
    "bool",
    "complex64",
    "U2",
    "datetime64[s]",
]

random_arrays = st.one_of(
    hnp.arrays(
        dtype=st.sampled_from(DTYPES).map(np.dtype),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
    ),
    # Shapes that are accepted, with any values: these exercise the success path.
    hnp.arrays(
        dtype=st.sampled_from(["uint8", "float32", "float64", "bool"]).map(np.dtype),
        shape=st.tuples(
            st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])
        ).map(lambda s: s if s[2] != 1 or s[0] % 2 else s[:2]),
    ),
)


def _is_valid_array(array):
    """Whether the documented array contract accepts this array."""
    shape = array.shape[:2] if array.ndim == 3 and array.shape[2] == 1 else array.shape
    channels_ok = len(shape) == 2 or (len(shape) == 3 and shape[2] in (3, 4))
    if not channels_ok or min(shape[:2]) == 0:
        return False
    if array.dtype in (np.uint8, np.bool_):
        return True
    if array.dtype.kind == "f":
        return bool(np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1)
    return False


def _check_row(item):
    """The policy for one row: pixels, or a row error that both policies report."""
    try:
        pixels = prepare_image(item, CONFIG)
    except ROW_ERRORS as exc:
        error = prepare_row(item, 4, pd.Index(list("abcde")), CONFIG, "nan")
        assert isinstance(error, ImageInputError)
        assert type(error.__cause__) is type(exc)
        assert "row 4 (index 'e')" in str(error)
        with pytest.raises(ImageInputError, match=r"row 4 \(index 'e'\)") as caught:
            prepare_row(item, 4, pd.Index(list("abcde")), CONFIG, "raise")
        assert type(caught.value.__cause__) is type(exc)
        return None
    assert pixels.shape == (30, 30, 3) and pixels.dtype == np.uint8
    return pixels


@MANY
@given(data=file_bytes)
def test_any_bytes_become_pixels_or_a_row_error(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on some damaged files
        _check_row(data)


@MANY
@given(array=random_arrays)
def test_any_array_becomes_pixels_or_a_row_error(array):
    pixels = _check_row(array)
    assert (pixels is not None) == _is_valid_array(array)


MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"]
MODES += ["I;16", "I;16B", "LA", "PA", "RGBX", "La", "RGBa"]


@MANY
@given(
    mode=st.sampled_from(MODES),
    size=st.tuples(st.integers(0, 12), st.integers(0, 12)),
    seed=st.integers(0, 2**16),
)
def test_any_pillow_mode_becomes_pixels_or_a_row_error(mode, size, seed):
    image = Image.new(mode, size)
    if 0 not in size:
        noise = np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3))
        try:
            image = Image.fromarray(noise.astype(np.uint8)).convert(mode)
        except ValueError:  # Pillow has no conversion to this mode: a flat image
            colour = tuple(int(v) for v in noise[0, 0, : len(image.getbands())])
            image = Image.new(mode, size, colour)
    pixels = _check_row(image)
    # Every mode converts; an empty image fails, and so does a float ("F")
    # image outside [0, 1], as float arrays do.
    fails = 0 in size or (mode == "F" and np.asarray(image).max() > 1)
    assert (pixels is None) == fails


# -- the whole encoder ---------------------------------------------------------

junk = st.one_of(
    st.binary(max_size=256).map(b"\x00".__add__),  # no allowed format starts so
    damaged_files(),
    random_arrays,
    st.sampled_from([None, float("nan"), pd.NA, 3, "/no/such/dir/x.png", b""]),
)


@pytest.fixture(scope="module")
def pool(tiny_clip, gradient):
    """Valid rows of every input type, with the embedding each gets alone."""
    array = gradient(26, 34, 21)
    rows = [
        array,
        _encoded(Image.fromarray(gradient(40, 28, 22)), "PNG"),
        Image.fromarray(gradient(30, 30, 23)),
        gradient(35, 20, 24).astype(np.float32) / 255,
    ]
    return rows, np.vstack([tiny_clip.encode_images([row]) for row in rows])


@settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    plan=st.lists(
        st.one_of(st.integers(0, 3), junk.map(lambda j: ("junk", j))),
        min_size=1,
        max_size=6,
    ),
    batch_size=st.integers(1, 4),
)
def test_rows_keep_count_order_and_their_own_embeddings(
    tiny_clip, pool, one_torch_thread, plan, batch_size
):
    rows, alone = pool
    items, expected = [], []
    for step in plan:
        if isinstance(step, int):
            items.append(rows[step])
            expected.append(alone[step])
            continue
        item = step[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on some damaged files
            try:
                prepare_image(item, CONFIG)
            except ROW_ERRORS:
                expected.append(None)
            else:  # junk that happens to be a valid image: its embedding alone
                expected.append(tiny_clip.encode_images([item])[0])
        items.append(item)
    bad = [i for i, e in enumerate(expected) if e is None]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if len(bad) == len(items):
            with pytest.raises(ImageInputError, match=f"all {len(items)} images"):
                tiny_clip.encode_images(items, batch_size=batch_size, on_error="nan")
            return
        embeddings, failures = encode_images(
            tiny_clip, items, batch_size=batch_size, on_error="nan", n_workers=2
        )
        report_failures(failures, items)
    assert embeddings.shape == (len(items), tiny_clip.embedding_dim)
    assert [position for position, _ in failures] == bad
    ours = [w for w in caught if issubclass(w.category, InputErrorWarning)]
    assert len(ours) == (1 if bad else 0)
    for i, want in enumerate(expected):
        if want is None:
            assert np.isnan(embeddings[i]).all()
        else:
            np.testing.assert_allclose(embeddings[i], want, atol=1e-5)
    if bad:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ImageInputError, match=f"row {bad[0]}[,]"):
                encode_images(tiny_clip, items, batch_size=batch_size)
