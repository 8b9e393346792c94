"""CLIP zero-shot classification, embeddings and contrastive fine-tuning for
scikit-learn."""

from sklearn_clip._config import config_context, get_config, set_config
from sklearn_clip._embedding import CLIPEmbeddingTransformer
from sklearn_clip._few_shot import CLIPFewShotClassifier
from sklearn_clip._finetune import CLIPContrastiveFinetuner
from sklearn_clip._model import (
    ModelHandle,
    clear_model_cache,
    load_model,
    model_cache_info,
)
from sklearn_clip._neighbors import CLIPNearestNeighbors
from sklearn_clip._zero_shot import CLIPZeroShotClassifier

# Importable from here as in 0.1.0; documented with the other warnings in
# sklearn_clip.exceptions, so it has one API page.
from sklearn_clip.exceptions import FewShotWarning  # noqa: F401

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
