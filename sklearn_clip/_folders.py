"""Output folders: staged beside their target, then swapped in whole.

A folder the package writes (an export, a saved model, a shard set) is
written into a staging folder beside its target and renamed onto it once
complete, so a run that is killed or fails leaves the complete new folder or
the old one. Staging folders carry their process id, so a later run removes
those of killed runs and never a live one's. A folder of model files is
replaced only if the package saved it (:func:`check_save_path`).
"""

import functools
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sklearn_clip._files import check_replaceable, new_mode

#: A staging folder whose process cannot be asked whether it runs (another
#: machine's, an older version's) is removed once untouched this long.
STALE_AFTER_S = 24 * 3600


def folder_marker_recogniser(*names):
    """``recognise`` for :func:`check_replaceable`: a folder holding ``names``."""

    def recognise(path):
        path = Path(path)
        markers = any((path / name).is_file() for name in names)
        return path.is_dir() and not path.is_symlink() and markers

    return recognise


@contextmanager
def replaced_folder(path, *, check=None):
    """A staging folder beside ``path`` (umask permissions), swapped in once written.

    Staging folders of killed runs are removed first (:func:`sweep_staging`).
    When the block ends without error, ``check()`` (the output's
    :func:`check_replaceable` call) runs again, as the folder may have
    changed meanwhile; then the old folder is moved aside, the new one
    renamed onto ``path`` and the old one removed. On an error the staging
    folder is removed and ``path`` left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_staging(path)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=staging_prefix(path)))
    try:
        os.chmod(staging, new_mode(0o777))
        yield staging
        if check is not None:
            check()
        _swap_in(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging, path):
    if not os.path.lexists(path):
        os.replace(staging, path)
        return
    # The old folder goes aside under a staging name (swept if this process
    # dies here), so that the name is never missing a complete folder for
    # longer than two renames.
    aside = staging.with_name(staging.name + "-replaced")
    os.rename(path, aside)
    try:
        os.replace(staging, path)
    except BaseException:
        os.rename(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def staging_prefix(path, pid=None):
    """The name prefix of ``path``'s staging folders made by process ``pid``.

    It holds the process id and a digest of the host name, so that a later
    run tells a live run's folder (kept) from a killed one's (removed).
    """
    pid = os.getpid() if pid is None else pid
    return f"{_staging_stem(path)}{pid}-{_host_token()}-"


def _staging_stem(path):
    return f".{Path(path).name}.partial-"


def _host_token():
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def sweep_staging(path):
    """Remove the staging folders beside ``path`` that killed runs left.

    One made on this machine by a process that no longer runs is removed at
    once; any other (another machine's, an older version's, or one whose
    process id was reused) once untouched for :data:`STALE_AFTER_S`. A live
    run's staging folder is never removed.
    """
    path = Path(path)
    stem = _staging_stem(path)
    try:
        entries = [e for e in path.parent.iterdir() if e.name.startswith(stem)]
    except OSError:
        return
    for entry in entries:
        if _is_stale(entry, entry.name[len(stem) :]):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with suppress(OSError):
                    entry.unlink()


def _is_stale(entry, rest):
    pid, _, rest = rest.partition("-")
    host, _, _ = rest.partition("-")
    if pid.isdigit() and host == _host_token() and not _is_running(int(pid)):
        return True
    try:
        return time.time() - entry.lstat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def _is_running(pid):
    if os.name != "posix":  # os.kill would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


# -- saved models: replaced only where the package saved them ------------------

#: The file that marks a folder written by ``save_pretrained``: only such a
#: folder (or an empty one) is ever replaced by a later save.
SAVED_MARKER = "sklearn_clip_model.json"


def save_model_folder(path, write, *, sources=(), keep=(), marker=None):
    """Write a model folder by the package's output rule, swapped in whole.

    ``write(folder)`` writes the model's files into a staging folder, which
    then replaces ``path``: see :func:`check_save_path` for what ``path`` may
    be. ``marker`` names the file that marks the folder as the package's own
    when the model's files hold one already (an export's manifest); otherwise
    :data:`SAVED_MARKER` is added.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    check = functools.partial(
        check_save_path, path, sources=sources, keep=keep, marker=marker
    )
    path = check()
    with replaced_folder(path, check=check) as staging:
        write(staging)
        if marker is None:
            write_saved_marker(staging)
    return path


def check_save_path(path, *, sources=(), inputs=(), keep=(), marker=None):
    """Refuse a ``save_pretrained`` folder by the package's output rule.

    ``path`` may be new, an empty folder, or a model this package saved (it
    holds :data:`SAVED_MARKER` or ``marker``, or, saved before the marker
    existed, a model card tagged ``sklearn-clip``); never the current
    directory, nor a folder that is or holds one of ``sources`` or ``keep``,
    or overlaps one of ``inputs``. The command line calls it before training;
    see :func:`sklearn_clip._files.check_replaceable`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return check_replaceable(
        path,
        overwrite=True,
        sources=tuple(s for s in sources if s is not None),
        inputs=inputs,
        keep=tuple(k for k in keep if k is not None),
        recognise=functools.partial(_is_saved_model, marker=marker),
        kind=f"a model sklearn-clip saved (it has no {marker or SAVED_MARKER})",
    )


def _is_saved_model(path, marker=None):
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    if any((path / name).is_file() for name in (SAVED_MARKER, marker) if name):
        return True
    # Saved by a version without the marker: weights and a card of ours.
    card = path / "README.md"
    if not ((path / "config.json").is_file() and card.is_file()):
        return False
    with open(card, encoding="utf-8", errors="replace") as file:
        head = file.read(2048)
    return head.startswith("---") and "sklearn-clip" in head.split("\n---", 1)[0]


def write_saved_marker(folder):
    """Mark ``folder`` as a model this package saved: a later save may replace it."""
    marker = {"written_by": "sklearn-clip", "version": _version()}
    (Path(folder) / SAVED_MARKER).write_text(json.dumps(marker))


def _version():
    try:
        return version("sklearn-clip")
    except PackageNotFoundError:
        return None
