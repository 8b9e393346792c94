"""Finding a checkpoint and reading it without running anything in it.

A hub id is resolved to its cached snapshot first (downloading only when the
hub can be reached), so no library call wanders onto the network, and retries
for a minute, when there is none; a missing model then fails at once with a
message that says how to fix it. Weights are read only from safetensors files
and never with a checkpoint's own Python code.
"""

import contextlib
import json
import os
import threading
from pathlib import Path

# The supported families and the lists derived from them stay importable from
# here; what tells the families apart is sklearn_clip._models.families.
from sklearn_clip._models.families import (
    FAMILY_TABLE,
    FINETUNE_FAMILIES,  # noqa: F401
    SIGLIP_TEXT_LENGTH,  # noqa: F401
    SIGMOID_FAMILIES,  # noqa: F401
    SUPPORTED_FAMILIES,
    family_of,
)

# Where a checkpoint's image preprocessing may be written: transformers 5's
# processors nest it under "image_processor" in the second file.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def family_processor(model_type, image_processor, tokenizer):
    """The family's own processor (``CLIPProcessor``, ...) around the two parts,
    to save them as transformers saves them."""
    import transformers

    name = family_of(model_type).processor
    return getattr(transformers, name)(
        image_processor=image_processor, tokenizer=tokenizer
    )


def is_local(source):
    return isinstance(source, str | os.PathLike) and Path(source).is_dir()


def check_source(source):
    """Refuse a model string that is neither a valid hub id nor an existing directory.

    Checked before the hub is asked, so a typo is reported as one, not as a
    hub that cannot be reached; ``""`` and blank strings (which ``pathlib``
    would read as the current directory) are never a model.
    """
    if not isinstance(source, str):
        return  # a path object names a directory, whatever it holds
    if source.strip() and Path(source).is_dir():
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        if not source.strip():
            raise HFValidationError("a blank string")
        validate_repo_id(source)
    except HFValidationError:
        hint = ""
        if source.startswith("~"):
            hint = " ('~' is not expanded: pass os.path.expanduser(path))"
        raise ValueError(
            f"model {source!r} is not a valid hub id nor an existing directory"
            f"{hint}. Give a hub id such as 'openai/clip-vit-base-patch32' or a "
            "directory written by save_pretrained."
        ) from None


def offline_error(source, exc):
    return OSError(
        f"Could not load the model {source!r}: it is not a local directory and is "
        "not in the Hugging Face cache, and the hub could not be reached "
        f"({type(exc).__name__}). Either pass a local directory written by "
        "save_pretrained, download the model once on a machine with network access "
        "(it is then cached), or run with HF_HUB_OFFLINE=1 / local_files_only=True "
        "to use only cached files."
    )


def hub_is_offline():
    value = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    )
    return value.upper() in ("1", "ON", "YES", "TRUE")


def hub_reachable(timeout=3.0):
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


_quiet_lock = threading.RLock()


class _Noise:
    """Drops one warning transformers raises while loading or saving."""

    def __init__(self, fragment):
        self.fragment = fragment

    def filter(self, record):
        return self.fragment not in record.getMessage()


# Warnings that say nothing about the checkpoint at hand, by logger. Writing a
# config, transformers diffs it against a default-built one, and for SigLIP
# that default names end tokens outside its default vocabulary. Some families
# announce a deprecation on every load (their table row says which).
_NOISE = {
    "transformers.configuration_utils": "an integer within the vocabulary",
    **dict(family.load_noise for family in FAMILY_TABLE if family.load_noise),
}


@contextlib.contextmanager
def quiet_transformers():
    """No transformers progress bars ("Loading weights", "Writing model shards"),
    and none of the warnings in ``_NOISE``."""
    import logging as std_logging

    from transformers.utils import logging

    filters = [(std_logging.getLogger(n), _Noise(f)) for n, f in _NOISE.items()]
    with _quiet_lock:
        enabled = logging.is_progress_bar_enabled()
        logging.disable_progress_bar()
        for logger, noise in filters:
            logger.addFilter(noise)
        try:
            yield
        finally:
            for logger, noise in filters:
                logger.removeFilter(noise)
            if enabled:
                logging.enable_progress_bar()


def read_config(directory):
    path = Path(directory, "config.json")
    return json.loads(path.read_text()) if path.exists() else {}


def check_family(directory, config):
    """Refuse, before any weights are read, a model type not supported here."""
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_FAMILIES:
        raise ValueError(
            f"{str(directory)!r} holds a {model_type!r} model; sklearn-clip supports "
            f"the CLIP-family model types {', '.join(SUPPORTED_FAMILIES)}."
        )


def has_image_processor_config(directory):
    """Whether either layout of an image-processor config is present."""
    legacy, nested = (Path(directory, name) for name in PROCESSOR_FILES)
    if legacy.exists():
        return True
    return nested.exists() and "image_processor" in json.loads(nested.read_text())


def read_image_processor(directory):
    """The checkpoint's image processor, resolved by transformers itself.

    transformers knows both layouts (``preprocessor_config.json``, and the
    ``"image_processor"`` entry of transformers 5's ``processor_config.json``)
    and every family's settings; a checkpoint with neither is an error, never
    a default.
    """
    from transformers import AutoImageProcessor

    if not has_image_processor_config(directory):
        raise OSError(
            f"{str(directory)!r} has no image-processor config: looked for "
            f"{PROCESSOR_FILES[0]} and an 'image_processor' entry in "
            f"{PROCESSOR_FILES[1]}. Save the model's processor next to its weights "
            "(AutoProcessor.from_pretrained(original).save_pretrained(directory))."
        )
    return AutoImageProcessor.from_pretrained(str(directory), local_files_only=True)


# Weight files that are read with pickle, which can run code while loading.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_loadable(directory):
    """Refuse, with a clear reason, a checkpoint that would need code to load.

    Loading itself is safe without this (safetensors only, no remote code);
    the check replaces the library's messages, which suggest options that this
    package deliberately does not have.
    """
    directory = Path(directory)
    if not any(directory.glob("*.safetensors")):
        pickles = sorted(
            p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES
        )
        found = f" (found {', '.join(pickles)})" if pickles else ""
        raise OSError(
            f"{str(directory)!r} holds no safetensors weights{found}. sklearn-clip "
            "loads weights only from safetensors files, because pickle-based "
            "checkpoints can run arbitrary code when read. Convert the checkpoint "
            "once, where you trust it, with transformers: "
            "model.save_pretrained(path, safe_serialization=True)."
        )
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    if config.get("auto_map"):
        from transformers import CONFIG_MAPPING

        if config.get("model_type") not in CONFIG_MAPPING:
            raise ValueError(
                f"{str(directory)!r} declares a model type "
                f"{config.get('model_type')!r} that only its own Python code "
                f"(auto_map: {sorted(config['auto_map'])}) can build; sklearn-clip "
                "never runs code shipped with a checkpoint (trust_remote_code=False)."
            )


# What a checkpoint directory needs; weights only as safetensors, so a pickle
# checkpoint in the same repository is never even downloaded (open_clip's
# vocabulary file of the CLIP BPE is the one archive an open_clip repo needs).
HUB_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "bpe_simple_vocab_16e6.txt.gz",
]


def hub_snapshot(source, revision, local_files_only):
    """The local directory of a hub model: from the cache, else downloaded."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            source,
            revision=revision,
            local_files_only=True,
            allow_patterns=HUB_PATTERNS,
        )
    except Exception as exc:  # noqa: BLE001 - any cache miss means: not cached
        if local_files_only or hub_is_offline() or not hub_reachable():
            raise offline_error(source, exc) from exc
    return snapshot_download(source, revision=revision, allow_patterns=HUB_PATTERNS)


def image_processor_from_settings(settings):
    """An image processor from its settings, resolved as transformers resolves
    a saved one (the Pillow variant where torchvision is absent)."""
    import tempfile

    from transformers import AutoImageProcessor

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "preprocessor_config.json").write_text(
            json.dumps(dict(settings), default=int)
        )
        return AutoImageProcessor.from_pretrained(tmp, local_files_only=True)
