"""The one writer of output files: checked before any work, replaced atomically.

Every file the project writes for a user goes through :func:`check_output`
(before the work that produces it, so a refused name costs nothing) and
:func:`write_output` (a temporary file beside it, renamed onto it once
written), so a run that is killed, interrupted or fails leaves either the
complete new file or whatever was there before.
"""

import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that must not be written: wrong suffix, existing file..."""


def check_output(path, suffixes, *, overwrite=False, option="--output"):
    """Refuse an output that cannot or must not be written, before any work.

    The suffix must be one of ``suffixes`` (so that ``photos/img0.png`` is
    never replaced by a table or a web page); the path must not be a folder;
    its nearest existing parent must be a writable folder (missing ones are
    created by :func:`write_output`); an existing file is replaced only with
    ``overwrite``.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> from sklearn_clip._files import check_output
    >>> check_output("hits.png", (".html",))
    Traceback (most recent call last):
    ...
    sklearn_clip._files.OutputPathError: --output must end in .html; got 'hits.png'
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise OutputPathError(
            f"{option} must end in {', '.join(suffixes)}; got {str(path)!r}"
        )
    if path.is_dir():
        raise OutputPathError(
            f"{option} {str(path)!r} is a directory; give a file name in it, "
            f"such as {str(path / ('output' + suffixes[0]))!r}"
        )
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputPathError(
                f"{option} {str(path)!r} exists; pass --overwrite to replace it"
            )
        if not path.is_file():
            raise OutputPathError(f"{option} {str(path)!r} is not a regular file")
    parent = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not parent.is_dir():
        raise OutputPathError(
            f"{option} {str(path)!r} cannot be created: {str(parent)!r} is a file, "
            "not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{option} {str(path)!r}: cannot write in {str(parent)!r}"
        )
    return path


def write_output(path, write):
    """Create ``path``'s folder, then ``write(temporary path)`` and rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as temporary:
        write(temporary)
    return path


@contextmanager
def replaced_atomically(path, *, durable=True):
    """A temporary file beside ``path``, renamed onto it once written.

    The rename (``os.replace``) is atomic within a directory, so readers see
    the old file or the whole new one. On an error the temporary file is
    removed; only a killed process can leave one, named ``.<name>.*.tmp``.
    ``durable`` flushes it to disk before the rename; a cache whose entries
    carry their own checksum can skip that cost.
    """
    fd, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    os.close(fd)
    try:
        yield temporary
        if durable:
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())  # on disk before it takes the name
        os.chmod(temporary, _new_file_mode())
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def _new_file_mode():
    # mkstemp creates files readable by their owner only; an output gets the
    # mode any new file would get.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def display_path(path):
    """``path`` as text that can be printed or written in UTF-8, whatever its bytes.

    File names are bytes on POSIX; one that is not valid UTF-8 reaches Python
    with surrogates that no UTF-8 stream accepts, so its bad bytes are shown
    as ``\\xNN`` escapes instead (the name stays recognisable).

    Examples
    --------
    >>> import os
    >>> from sklearn_clip._files import display_path
    >>> display_path(os.fsdecode(b"caf\\xe9.png"))
    'caf\\\\xe9.png'
    """
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")
