"""How a model handle is saved: in a pickle, a joblib file or a skops file.

A handle from a path is saved as that path with the weights' fingerprint, and
read back through the process-wide cache (refused if the weights there
changed); a handle whose weights live only in memory (fine-tuned) carries
their files.

Reading one back is the loader's work, which sits above the backends: it
installs its rebuilder here (:func:`install_rebuilder`) when the package is
imported, and a pickle names :func:`rebuild_handle`, so a backend never
imports the loader.
"""

import tempfile
from pathlib import Path

_rebuilder = []


def install_rebuilder(rebuild):
    """Make ``rebuild(state) -> handle`` the way saved handles are read back."""
    _rebuilder[:] = [rebuild]


def rebuild_handle(state):
    """The handle a saved state describes, made by the installed rebuilder."""
    if not _rebuilder:
        raise RuntimeError(
            "no rebuilder is installed: import sklearn_clip before reading a "
            "saved model handle"
        )
    return _rebuilder[0](state)


class HandleState:
    """What a model handle pickles, as plain values.

    The handle gives ``_reference()``: the :func:`~sklearn_clip.load_model`
    arguments that load it again, with its ``fingerprint``.
    """

    def __reduce__(self):
        # Pickle asks the loader for the handle: one loaded from a path is
        # the process's cached one, shared as load_model shares it.
        return (rebuild_handle, (self.__getstate__(),))

    def __getstate__(self):
        # Plain values only (strings, numbers, bytes), so that skops, which
        # reads no arbitrary objects, stores a handle as pickle does: a path
        # with the weights' fingerprint (weights rewritten there meanwhile are
        # refused on loading), or the files of weights that live in memory.
        if self.source is not None:
            return {"reference": self._reference()}
        return {
            "files": self._to_files(),
            "dtype": self.precision_name,
            "device_type": self.device.type,
        }

    def __setstate__(self, state):
        # skops makes an empty handle and gives it the state.
        self.__dict__.update(rebuild_handle(state).__dict__)

    def _to_files(self):
        # What save_pretrained writes, as {file name: bytes}: how weights that
        # live only in memory travel in a pickle.
        with tempfile.TemporaryDirectory() as tmp:
            self._write_files(tmp)
            return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
