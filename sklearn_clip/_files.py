"""Writing a file so that readers see the old one or the whole new one."""

import os
import tempfile
from contextlib import contextmanager, suppress


@contextmanager
def replaced_atomically(path):
    """A temporary file beside ``path``, renamed onto it once written.

    The rename (``os.replace``) is atomic within a directory, so readers see
    the old file or the whole new one. On an error the temporary file is
    removed; only a killed process can leave one, named ``.<name>.*.tmp``.
    """
    fd, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    os.close(fd)
    try:
        yield temporary
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
