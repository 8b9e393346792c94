"""How a model handle is saved: in a pickle, a joblib file or a skops file.

A handle from a path is saved as that path with the weights' fingerprint, and
read back through the process-wide cache (refused if the weights there
changed); a handle whose weights live only in memory (fine-tuned) carries
their files.
"""

import tempfile
from pathlib import Path


class HandleState:
    """What a model handle pickles, as plain values.

    The handle gives ``_reference()``: the :func:`~sklearn_clip.load_model`
    arguments that load it again, with its ``fingerprint``.
    """

    def __reduce__(self):
        # Pickle asks the registry for the handle: one loaded from a path is
        # the process's cached one, shared as load_model shares it.
        from sklearn_clip._encoding.registry import rebuild_handle

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
        from sklearn_clip._encoding.registry import rebuild_handle

        self.__dict__.update(rebuild_handle(state).__dict__)

    def _to_files(self):
        # What save_pretrained writes, as {file name: bytes}: how weights that
        # live only in memory travel in a pickle.
        with tempfile.TemporaryDirectory() as tmp:
            self._write_files(tmp)
            return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
