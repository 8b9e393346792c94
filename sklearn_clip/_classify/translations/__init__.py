"""CLIP's ImageNet prompt templates in other languages, one module per language."""
