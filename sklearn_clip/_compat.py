"""Old module names, so that estimators pickled by sklearn-clip 0.1.0 load.

A pickle names each object's class by its module path. In 0.1.0 the private
modules sat side by side (``sklearn_clip._zero_shot``, ``sklearn_clip._model``,
...); they now live in subpackages. This finder answers an import of an old
name with the module that holds the code today (the same module object, so
``isinstance`` and patches see one class), and imports nothing until asked.
"""

import importlib
import importlib.abc
import importlib.util
import sys

# 0.1.0 name -> where the code lives now.
MOVED_MODULES = {
    "sklearn_clip._ann": "sklearn_clip._retrieval.ann",
    "sklearn_clip._cache": "sklearn_clip._encoding.cache",
    "sklearn_clip._checkpoints": "sklearn_clip._train.checkpoints",
    "sklearn_clip._classifier": "sklearn_clip._classify.classifier",
    "sklearn_clip._contact_sheet": "sklearn_clip._retrieval.contact_sheet",
    "sklearn_clip._contrastive": "sklearn_clip._train.contrastive",
    "sklearn_clip._distributed": "sklearn_clip._train.distributed",
    "sklearn_clip._encode": "sklearn_clip._encoding.encode",
    "sklearn_clip._families": "sklearn_clip._models.families",
    "sklearn_clip._few_shot": "sklearn_clip._classify.few_shot",
    "sklearn_clip._finetune": "sklearn_clip._train.finetuner",
    "sklearn_clip._fingerprints": "sklearn_clip._backends.torch.fingerprints",
    "sklearn_clip._forward": "sklearn_clip._backends.torch.forward",
    "sklearn_clip._heads": "sklearn_clip._classify.heads",
    "sklearn_clip._images": "sklearn_clip._encoding.images",
    "sklearn_clip._inputs": "sklearn_clip._encoding.inputs",
    "sklearn_clip._loading": "sklearn_clip._models.loading",
    "sklearn_clip._losses": "sklearn_clip._train.losses",
    "sklearn_clip._model": "sklearn_clip._loader.pickling",
    "sklearn_clip._multilabel": "sklearn_clip._classify.multilabel",
    "sklearn_clip._neighbors": "sklearn_clip._retrieval.neighbors",
    "sklearn_clip._pairs": "sklearn_clip._train.pairs",
    "sklearn_clip._precision": "sklearn_clip._backends.torch.precision",
    "sklearn_clip._prompts": "sklearn_clip._classify.prompts",
    "sklearn_clip._schedule": "sklearn_clip._train.schedule",
    "sklearn_clip._search": "sklearn_clip._retrieval.search",
    "sklearn_clip._shards": "sklearn_clip._cli.shards",
    "sklearn_clip._trainable": "sklearn_clip._train.trainable",
    "sklearn_clip._training": "sklearn_clip._train.loop",
    "sklearn_clip._zero_shot": "sklearn_clip._classify.zero_shot",
}

# Names of the release after 0.1.0 that moved when the backends became peers:
# its pickles name the loader's rebuild function, its skops files the handles.
MOVED_MODULES.update(
    {
        "sklearn_clip._encoding.registry": "sklearn_clip._loader.pickling",
        "sklearn_clip._encoding.exported": "sklearn_clip._backends.exported",
        "sklearn_clip._encoding.handle": "sklearn_clip._backends.torch.handle",
        "sklearn_clip._encoding.exported.handle": (
            "sklearn_clip._backends.exported.handle"
        ),
    }
)


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module):
        # The target ran when it was imported. The import system has just
        # stamped the alias's spec on it: give it back its own.
        module.__spec__ = self.own_spec


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(
            fullname, _MovedModuleLoader(MOVED_MODULES[fullname])
        )


def install():
    """Answer imports of the 0.1.0 module names (idempotent)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        # First: an old name inside a moved package (``_encoding.exported``)
        # would otherwise be found again by the path finder in the package's
        # new folder, a second copy with classes of its own.
        sys.meta_path.insert(0, _MovedModuleFinder())
