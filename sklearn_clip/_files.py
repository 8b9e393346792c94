"""The one writer of outputs: checked before any work, replaced atomically.

Every file or folder the project writes for a user follows one rule,
:func:`check_replaceable` (docs/reliability.md), checked before the work, so
a refused name costs nothing. Files are then written by :func:`write_output`
(a temporary file renamed onto them), folders by ``sklearn_clip._folders``
(a staging folder swapped in), so a run that is killed or fails leaves the
complete new output or whatever was there before. Results carry the
permissions the umask gives any new file or folder.
"""

import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that must not be written: wrong suffix, existing file..."""


class OutputExistsError(OutputPathError, FileExistsError):
    """An output that exists and is replaced only when asked to (``overwrite``)."""


def check_replaceable(
    path,
    *,
    overwrite=False,
    sources=(),
    inputs=(),
    keep=(),
    recognise=None,
    kind="a file",
    option="path",
):
    """Refuse, before any work, an output that could destroy what it replaces.

    The one rule every writer of the package follows:

    - never the current directory, or a folder that holds it;
    - never a source (the model the output is made from), or a folder that
      holds one (a folder inside the source, such as a checkpoint's
      ``onnx/``, is allowed);
    - never an input, a folder that holds one, or a folder inside one;
    - never one of ``keep``, or a folder that holds one;
    - an existing path only with ``overwrite``, and only if it is what
      sklearn-clip writes there (``recognise``) or an empty folder;
    - the nearest existing parent must be a writable folder.

    Parameters
    ----------
    path : str or os.PathLike
        The output.
    overwrite : bool, default=False
        Whether an existing output of the package may be replaced. An empty
        folder is accepted either way: it holds nothing to lose.
    sources, inputs, keep : iterable of str or os.PathLike, default=()
        The paths the output is made from, those it reads, and others it
        must leave as they are (such as checkpoints written beside it);
        entries that are None or name nothing on disk (hub ids) are skipped.
    recognise : callable, default=None
        ``recognise(path) -> bool``: whether the existing ``path`` is what
        the package writes there. None: a regular file.
    kind : str, default="a file"
        What ``recognise`` accepts, for the messages.
    option : str, default="path"
        How the path is named to the user: a parameter, or a command's
        option (``"--output"``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    OutputPathError
        Any other refusal; the message names the path and the fix.

    Examples
    --------
    >>> from sklearn_clip._files import check_replaceable
    >>> check_replaceable(".", overwrite=True)
    Traceback (most recent call last):
    ...
    sklearn_clip._files.OutputPathError: path '.' is the current directory...
    """
    path = Path(path)
    shown = f"{option} {str(path)!r}"
    _check_not_protected(path, shown, sources, inputs, keep)
    if path.exists() or path.is_symlink():
        empty = is_empty_folder(path)
        if not empty and not overwrite:
            flag = "--overwrite"  # the API's message names the command's too
            flag = flag if option.startswith("--") else f"overwrite=True ({flag})"
            raise OutputExistsError(
                f"{shown} exists; pass {flag} to replace it, or choose another path"
            )
        if not empty and not (recognise or Path.is_file)(path):
            raise OutputPathError(
                f"{shown} exists and is not {kind}, nor an empty folder: "
                "sklearn-clip replaces only what it wrote itself. Choose a new "
                "path, or move its contents away yourself first"
            )
    _check_writable_parent(path, shown)
    return path


def is_empty_folder(path):
    """Whether ``path`` is a folder with nothing in it: nothing to lose."""
    path = Path(path)
    return path.is_dir() and not any(path.iterdir())


def _check_not_protected(path, shown, sources, inputs, keep):
    """The current directory, sources, inputs and ``keep`` are never replaced."""
    target = _real(path)
    cwd = _real(os.getcwd())
    if _holds(target, cwd):
        raise OutputPathError(
            f"{shown} is the current directory, or holds it; sklearn-clip never "
            f"replaces it: give a new folder, such as {str(path / 'output')!r}"
        )
    kept = [(p, "the model it is made from") for p in _existing(sources)]
    kept += [(p, "which must be kept") for p in _existing(keep)]
    for given, what in kept:
        if _holds(target, _real(given)):
            raise OutputPathError(
                f"{shown} is, or holds, {str(given)!r}, {what}; it would be "
                "destroyed: give another path, outside it"
            )
    for given in _existing(inputs):
        read = _real(given)
        if _holds(target, read) or _holds(read, target):
            raise OutputPathError(
                f"{shown} overlaps the input {str(given)!r} (it is the input, "
                "holds it or lies inside it); give an output outside the inputs"
            )


def _real(path):
    return Path(os.path.realpath(path))


def _holds(folder, path):
    return path == folder or folder in path.parents


def _existing(paths):
    for path in paths:
        if path is not None and isinstance(path, (str, os.PathLike)):
            if os.path.lexists(path):
                yield path


def _check_writable_parent(path, shown):
    parent = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not parent.is_dir():
        raise OutputPathError(
            f"{shown} cannot be created: {str(parent)!r} is a file, not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{shown}: cannot write in {str(parent)!r}")


def check_output(path, suffixes, *, overwrite=False, inputs=(), option="--output"):
    """Refuse an output file that cannot or must not be written, before any work.

    The suffix must be one of ``suffixes`` (so that ``photos/img0.png`` is
    never replaced by a table or a web page); the path must not be a folder;
    then :func:`check_replaceable`'s rule: an existing file is replaced only
    with ``overwrite``, never one of ``inputs``; missing parent folders are
    created by :func:`write_output`.

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
    return check_replaceable(
        path,
        overwrite=overwrite,
        inputs=inputs,
        kind="a regular file",
        option=option,
    )


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
        os.chmod(temporary, new_mode(0o666))
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def new_mode(base):
    # mkstemp and mkdtemp create for their owner only; an output gets the
    # mode any new file (base 0o666) or folder (0o777) would get.
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def is_plain_file_name(name):
    """Whether ``name`` is a file name with no folder in it.

    What a saved file may name (an export's record, the model files a pickle
    carries): anything else could be read or written outside its folder.

    Examples
    --------
    >>> from sklearn_clip._files import is_plain_file_name
    >>> is_plain_file_name("model.safetensors"), is_plain_file_name("../x")
    (True, False)
    """
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(mark in name for mark in ("/", "\\", ":", "\0"))
    )


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
