"""The record an export directory carries: what it holds, and where it came from.

``sklearn_clip_export.json`` names the backend and precision, the model's
facts that the encoders need (family, embedding size, text padding, scale and
bias), the source model's identity (its path or hub id, revision, weights
fingerprint and the digests of the files it was read from), the library
versions that wrote it, a SHA-256 of every file in the export, and a SHA-256
of its own values. An export is one identity from load to exit: a file
changed, missing or added since it was written, a value edited by hand, or a
name that is not a plain file name is refused on loading, naming it.
"""

import hashlib
import json
from pathlib import Path

from sklearn_clip._files import is_plain_file_name
from sklearn_clip._models.loading import HUB_PATTERNS

MANIFEST_NAME = "sklearn_clip_export.json"
# 2: the manifest carries a digest of its own values, and names plain files.
FORMAT_VERSION = 2
# Reading files in blocks keeps memory flat for towers of a gigabyte.
_BLOCK = 1 << 20
# The entries that say where an export came from, not what it computes.
_PROVENANCE = ("digest", "format", "source_model", "versions")
_AGAIN = "Export it again with sklearn_clip.export_model(..., overwrite=True)."


class ManifestVersionError(ValueError):
    """An export written by another version of sklearn-clip."""


def file_digest(path):
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def source_weight_digests(directory):
    """``{file name: SHA-256}`` of the files a checkpoint is read from.

    Its weights, and the config, tokenizer and preprocessing files next to
    them (what the package downloads from the hub): an export made from the
    checkpoint is stale when any of them changes. ``{}`` for a model in memory.
    """
    if directory is None:
        return {}
    paths = {path for pattern in HUB_PATTERNS for path in Path(directory).glob(pattern)}
    return {path.name: file_digest(path) for path in sorted(paths) if path.is_file()}


def values_digest(manifest):
    """The SHA-256 of a manifest's values, its own ``digest`` left out."""
    values = {key: value for key, value in manifest.items() if key != "digest"}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(directory):
    """The manifest of an export directory, or None where there is none.

    Refused where it cannot be read, was written by another version, names a
    file outside its folder, or holds values edited since it was written.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        found = manifest.get("format")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"the export record {str(path)!r} cannot be read ({exc}); export the "
            "model again with sklearn_clip.export_model(..., overwrite=True)."
        ) from exc
    if found != FORMAT_VERSION:
        raise ManifestVersionError(
            f"{str(path)!r} was written by another version of sklearn-clip (format "
            f"{found!r}, this one reads {FORMAT_VERSION}); export the model again "
            "with this version."
        )
    _check_names(path, manifest.get("files"))
    if manifest.get("digest") != values_digest(manifest):
        raise ValueError(
            f"the exported model in {str(path.parent)!r} is damaged: "
            f"{MANIFEST_NAME!r} was edited after the export was written (its "
            f"values no longer match the digest it carries). {_AGAIN}"
        )
    return manifest


def _check_names(path, files):
    # save_pretrained copies these names and the loaders open them: a name
    # with a folder in it would read or write outside the export.
    if not isinstance(files, dict):
        raise ValueError(f"{str(path)!r} lists no files. {_AGAIN}")
    for name in files:
        if not is_plain_file_name(name) or name == MANIFEST_NAME:
            raise ValueError(
                f"{str(path)!r} lists {name!r} among its files, which is not a "
                "plain file name: an export's files are all in its own folder. "
                f"{_AGAIN}"
            )


def check_files(directory, manifest):
    """Refuse an export whose files differ from those it recorded.

    Every file must be as recorded, and none may have been added: transformers
    reads whichever tokenizer and processor files it finds. Names starting
    with a dot (``.DS_Store``) are read by neither transformers nor the runtimes.
    """
    directory = Path(directory)
    recorded = manifest["files"]
    for path in sorted(directory.iterdir()):
        name = path.name
        if name not in recorded and name != MANIFEST_NAME and name[0] != ".":
            raise ValueError(
                f"the exported model in {str(directory)!r} is damaged: {name!r} "
                "was added after the export was written, and transformers or the "
                "runtime could read it. Remove it, or export the model again "
                "with sklearn_clip.export_model(..., overwrite=True)."
            )
    for name, expected in recorded.items():
        path = directory / name
        if not path.is_file():
            problem = "is missing"
        elif file_digest(path) != expected:
            problem = "was changed after the export was written"
        else:
            continue
        raise ValueError(
            f"the exported model in {str(directory)!r} is damaged: {name!r} "
            f"{problem}. {_AGAIN}"
        )


def changed_since_loading(directory, name):
    """The error for a file of a held export that is no longer the one loaded."""
    return ValueError(
        f"the exported model in {str(directory)!r} changed after it was loaded: "
        f"{name!r} is missing or is not the file checked then (the export was "
        "written again or edited in place). Load it again "
        f"(sklearn_clip.clear_model_cache(), then load_model({str(directory)!r})) "
        "to use the export there now."
    )


def check_unchanged(directory, manifest, names):
    """Refuse if any of ``names`` in ``directory`` differs from ``manifest``'s."""
    for name in names:
        path = Path(directory) / name
        if not path.is_file() or file_digest(path) != manifest["files"][name]:
            raise changed_since_loading(directory, name)


def export_fingerprint(manifest):
    """The identity of an export: a hash of its files and of what it computes.

    The facts that scoring uses (scale, bias, padding) are part of it; where
    the export came from and which versions wrote it are not.
    """
    facts = {k: v for k, v in manifest.items() if k not in _PROVENANCE}
    identity = json.dumps([facts, sorted(manifest["files"].items())], sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()


def write_manifest(directory, manifest):
    """Write ``manifest`` into ``directory``, recording every file there."""
    directory = Path(directory)
    manifest = dict(manifest, format=FORMAT_VERSION)
    manifest["files"] = {
        path.name: file_digest(path)
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST_NAME
    }
    # The values as they read back (JSON has no tuples, paths, ...), so the
    # digest checked on loading is the one computed here.
    manifest = json.loads(json.dumps(manifest, default=str))
    manifest["digest"] = values_digest(manifest)
    text = json.dumps(manifest, indent=2, sort_keys=True)
    (directory / MANIFEST_NAME).write_text(text + "\n")
    return manifest
