"""Finding a checkpoint and reading it without running anything in it.

A hub id is resolved to its cached snapshot first (downloading only when the
hub can be reached), so no library call wanders onto the network, and retries
for a minute, when there is none; a missing model then fails at once with a
message that says how to fix it. Weights are read only from safetensors files
and never with a checkpoint's own Python code.
"""

import json
import os
from pathlib import Path

import torch

PROCESSOR_FILE = "preprocessor_config.json"


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


def read_processor_config(directory):
    path = Path(directory, PROCESSOR_FILE)
    return json.loads(path.read_text()) if path.exists() else {}


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
# checkpoint in the same repository is never even downloaded.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]


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


def read_checkpoint(directory, device, dtype):
    """``(model, tokenizer, processor config)`` from a saved directory."""
    from transformers import AutoModel, AutoTokenizer

    check_loadable(directory)
    # Safetensors only and never remote code: a checkpoint cannot run anything.
    # An auto_map in a known model type's config is ignored: the built-in class
    # loads it.
    options = {"local_files_only": True, "trust_remote_code": False}
    model = AutoModel.from_pretrained(str(directory), use_safetensors=True, **options)
    if not (
        hasattr(model, "get_image_features") and hasattr(model, "get_text_features")
    ):
        raise TypeError(
            f"{directory!r} loads as {type(model).__name__}, which is not a "
            "CLIP-family model (it needs get_image_features and get_text_features)"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(directory), **options)
    processor = read_processor_config(directory)
    model = model.to(device=device, dtype=dtype or torch.float32)
    return model, tokenizer, processor
