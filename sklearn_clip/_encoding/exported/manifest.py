"""The record an export directory carries: what it holds, and where it came from.

``sklearn_clip_export.json`` names the backend and precision, the model's
facts that the encoders need (family, embedding size, text padding, scale and
bias), the source model's identity (its path or hub id, revision, weights
fingerprint and the digests of its weight files), the library versions that
wrote it, and a SHA-256 of every file in the export: a file changed since is
refused on loading, naming it.
"""

import hashlib
import json
from pathlib import Path

MANIFEST_NAME = "sklearn_clip_export.json"
FORMAT_VERSION = 1
# Reading files in blocks keeps memory flat for towers of a gigabyte.
_BLOCK = 1 << 20


def file_digest(path):
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def source_weight_digests(directory):
    """``{file name: SHA-256}`` of a checkpoint's weight files ({} in memory)."""
    if directory is None:
        return {}
    paths = sorted(Path(directory).glob("*.safetensors"))
    return {path.name: file_digest(path) for path in paths}


def read_manifest(directory):
    """The manifest of an export directory, or None where there is none."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"the export record {str(path)!r} cannot be read ({exc}); export the "
            "model again with sklearn_clip.export_model(..., overwrite=True)."
        ) from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} was written by another version of sklearn-clip (format "
            f"{manifest.get('format')!r}, this one reads {FORMAT_VERSION}); export "
            "the model again with this version."
        )
    return manifest


def check_files(directory, manifest):
    """Refuse an export whose files differ from those it recorded."""
    for name, expected in manifest["files"].items():
        path = Path(directory) / name
        if not path.is_file():
            problem = "is missing"
        elif file_digest(path) != expected:
            problem = "was changed after the export was written"
        else:
            continue
        raise ValueError(
            f"the exported model in {str(directory)!r} is damaged: {name!r} "
            f"{problem}. Export it again with "
            "sklearn_clip.export_model(..., overwrite=True)."
        )


def export_fingerprint(manifest):
    """The identity of an export: a hash of every file it holds."""
    files = json.dumps(sorted(manifest["files"].items()))
    return hashlib.sha256(files.encode()).hexdigest()


def write_manifest(directory, manifest):
    """Write ``manifest`` into ``directory``, recording every file there."""
    directory = Path(directory)
    manifest = dict(manifest, format=FORMAT_VERSION)
    manifest["files"] = {
        path.name: file_digest(path)
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST_NAME
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    (directory / MANIFEST_NAME).write_text(text + "\n")
    return manifest
