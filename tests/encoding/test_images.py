import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, CLIPImageProcessorPil

from sklearn_clip._backends.torch.tensors import pixel_values
from sklearn_clip._encoding.images import to_rgb
from sklearn_clip._encoding.preprocess import (
    ImageConfig,
    ProcessorImages,
    image_preprocessing,
)
from sklearn_clip.datasets import make_photo
from tests.conftest import grey_levels


def _reference_processor(handle, default_backend=False):
    """transformers' own processor for ``handle``'s directory: its Pillow
    variant, or its default (torchvision) backend's."""
    backend = "torchvision" if default_backend else "pil"
    return AutoImageProcessor.from_pretrained(
        handle.source, local_files_only=True, backend=backend
    )


@pytest.mark.parametrize("model", ["tiny_clip", "tiny_siglip"])
def test_pixels_match_transformers_pil_processor(model, request, image_files, gradient):
    # Resizes run in torch (the kernel of transformers' default processors);
    # against Pillow they differ by rounding: a grey level or so, on a few pixels.
    handle = request.getfixturevalue(model)
    reference = _reference_processor(handle)
    inputs = [str(p) for p in image_files.values()]
    inputs += [
        gradient(20, 70, 5),
        gradient(64, 64, 6)[..., 0],
        gradient(33, 31, 7).astype(np.float32) / 255,
    ]
    for item in inputs:
        ours = pixel_values([item], handle.image_config)
        rgb = to_rgb(item)  # the reference does not read 16-bit or float inputs
        theirs = reference(images=[rgb], return_tensors="pt")["pixel_values"]
        assert ours.shape == theirs.shape
        name = item if isinstance(item, str) else item.shape
        levels = grey_levels(ours - theirs, handle.image_config)
        assert levels.max().item() < 3.5, name
        assert levels.mean().item() < 0.5, name


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1024, 768), (250, 251)])
def test_photo_pixels_are_within_one_grey_level_of_pillow(size):
    photo = make_photo(*size, random_state=0)
    config = ImageConfig(size=224, crop=(224, 224))
    ours = pixel_values([photo], config)
    pil = CLIPImageProcessorPil(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    theirs = pil(images=[Image.fromarray(photo)], return_tensors="pt")["pixel_values"]
    levels = grey_levels(ours - theirs, config).round()
    assert levels.max().item() <= 1
    assert (levels > 0).float().mean().item() < 0.01


@pytest.mark.parametrize("model", ["tiny_clip", "tiny_siglip"])
def test_pixels_equal_transformers_default_processor(model, request, image_files):
    # transformers' default image processors resize with torchvision, which
    # calls the same torch kernel: the pixels agree to float rounding.
    pytest.importorskip("torchvision")
    handle = request.getfixturevalue(model)
    reference = _reference_processor(handle, default_backend=True)
    assert "Pil" not in type(reference).__name__
    for path in image_files.values():
        rgb = to_rgb(str(path))
        ours = pixel_values([rgb], handle.image_config)
        theirs = reference(images=[rgb], return_tensors="pt")["pixel_values"]
        assert (ours - theirs).abs().max().item() < 1e-5, path.name


def test_embeddings_match_get_image_features(tiny_clip, image_files):
    paths = [str(p) for p in image_files.values()]
    ours = tiny_clip.encode_images(paths, normalize=False)
    processor = _reference_processor(tiny_clip)
    batch = processor(images=[to_rgb(p) for p in paths], return_tensors="pt")
    with torch.no_grad():
        out = tiny_clip.model.get_image_features(**batch)
    theirs = (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()
    cosine = (
        (ours * theirs).sum(1)
        / np.linalg.norm(ours, axis=1)
        / np.linalg.norm(theirs, axis=1)
    )
    assert cosine.min() >= 0.9999


@pytest.mark.parametrize("name", ["palette.png", "grey.png", "cmyk.jpg", "small.bmp"])
def test_modes_become_rgb(image_files, name):
    image = to_rgb(image_files[name])
    assert image.mode == "RGB"
    assert np.asarray(image).std() > 5


def test_array_inputs(gradient):
    assert to_rgb(gradient(5, 7, 0)[..., :1]).size == (7, 5)
    float_image = np.asarray(to_rgb(np.full((4, 4, 3), 0.5)))
    assert (float_image == 128).all()
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        to_rgb(np.full((4, 4, 3), 2.0))
    with pytest.raises(ValueError, match="NaN"):
        to_rgb(np.full((4, 4, 3), np.nan))
    with pytest.raises(ValueError, match="channels-last"):
        to_rgb(np.zeros((3, 4, 4, 2), np.uint8))


def test_config_reads_both_processor_styles(tiny_clip, tiny_siglip):
    assert tiny_clip.image_config.crop == (30, 30)
    assert tiny_clip.image_config.size == 30
    assert tiny_siglip.image_config == ImageConfig(
        size=(30, 30), crop=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    )


@pytest.mark.parametrize(
    "settings",
    [
        # A size form the fast path does not know
        {"size": {"shortest_edge": 20, "longest_edge": 30}},
        {"size": {"shortest_edge": 30}, "do_center_crop": False},  # no fixed size
        {"size": {"height": 30, "width": 30}, "do_pad": True},  # an extra step
    ],
)
def test_processors_the_fast_path_does_not_cover_run_themselves(settings, gradient):
    processor = CLIPImageProcessorPil(
        **{"crop_size": {"height": 30, "width": 30}, **settings}
    )
    config = image_preprocessing(processor)
    assert isinstance(config, ProcessorImages)
    image = Image.fromarray(gradient(41, 23, 0))
    ours = pixel_values([image], config)["pixel_values"]
    theirs = processor(images=[image], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_a_size_the_processor_cannot_run_fails_when_loaded():
    processor = CLIPImageProcessorPil(size={"longest_edge": 30})
    with pytest.raises(
        ValueError, match=r"CLIPImageProcessorPil\) cannot preprocess.*longest_edge=30"
    ):
        image_preprocessing(processor)
