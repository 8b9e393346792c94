"""CLIP zero-shot classification, embeddings and contrastive fine-tuning for
scikit-learn."""

from sklearn_clip import _compat
from sklearn_clip._classify.few_shot import CLIPFewShotClassifier
from sklearn_clip._classify.zero_shot import CLIPZeroShotClassifier
from sklearn_clip._config import config_context, get_config, set_config
from sklearn_clip._embedding import CLIPEmbeddingTransformer
from sklearn_clip._encoding.registry import (
    ModelHandle,
    clear_model_cache,
    load_model,
    model_cache_info,
)
from sklearn_clip._retrieval.neighbors import CLIPNearestNeighbors
from sklearn_clip._train.finetuner import CLIPContrastiveFinetuner

# Importable from here as in 0.1.0; documented with the other warnings in
# sklearn_clip.exceptions, so it has one API page.
from sklearn_clip.exceptions import FewShotWarning  # noqa: F401

_compat.install()

__version__ = "0.1.0"

__all__ = [
    "CLIPContrastiveFinetuner",
    "CLIPEmbeddingTransformer",
    "CLIPFewShotClassifier",
    "CLIPNearestNeighbors",
    "CLIPZeroShotClassifier",
    "ModelHandle",
    "clear_model_cache",
    "config_context",
    "get_config",
    "load_model",
    "model_cache_info",
    "set_config",
]
