"""CLIP zero-shot classification, embeddings and contrastive fine-tuning for
scikit-learn."""

import importlib

from sklearn_clip import _compat
from sklearn_clip._config import config_context, get_config, set_config

# Installs how saved model handles are read back (a light import), so that a
# pickle naming a backend's module finds the loader ready.
from sklearn_clip._loader import pickling as _pickling  # noqa: F401

# Importable from here as in 0.1.0; documented with the other warnings in
# sklearn_clip.exceptions, so it has one API page.
from sklearn_clip.exceptions import FewShotWarning  # noqa: F401

_compat.install()

__version__ = "0.1.0"

# Public name -> the module that defines it. They are imported on first use
# (PEP 562), so ``import sklearn_clip`` and ``sklearn-clip --help`` do not pay
# for torch and transformers.
_LAZY = {
    "CLIPContrastiveFinetuner": "sklearn_clip._train.finetuner",
    "CLIPEmbeddingTransformer": "sklearn_clip._embedding",
    "CLIPFewShotClassifier": "sklearn_clip._classify.few_shot",
    "CLIPNearestNeighbors": "sklearn_clip._retrieval.neighbors",
    "CLIPZeroShotClassifier": "sklearn_clip._classify.zero_shot",
    "ExportedModelHandle": "sklearn_clip._backends.exported.handle",
    "ModelHandle": "sklearn_clip._backends.torch.handle",
    "clear_model_cache": "sklearn_clip._loader.registry",
    "export_model": "sklearn_clip._loader.export",
    "load_model": "sklearn_clip._loader.registry",
    "model_cache_info": "sklearn_clip._loader.registry",
    "skops_trusted_types": "sklearn_clip._persistence",
}

__all__ = [
    "CLIPContrastiveFinetuner",
    "CLIPEmbeddingTransformer",
    "CLIPFewShotClassifier",
    "CLIPNearestNeighbors",
    "CLIPZeroShotClassifier",
    "ExportedModelHandle",
    "ModelHandle",
    "clear_model_cache",
    "config_context",
    "export_model",
    "get_config",
    "load_model",
    "model_cache_info",
    "set_config",
    "skops_trusted_types",
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'sklearn_clip' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
