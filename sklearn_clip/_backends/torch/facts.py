"""What a loaded model is, as its config, tokenizer and family row say.

:class:`ModelFacts` is the part of :class:`~sklearn_clip.ModelHandle` that
only reads and the encoders use: how texts are truncated and padded, and
the scale and bias that turn cosines into logits. Everything here
is read from ``self.model``, ``self.tokenizer`` and ``self.image_processor``.
"""

from sklearn_clip._backends.torch.forward import logit_scale
from sklearn_clip._backends.torch.open_clip import is_bidirectional
from sklearn_clip._models.families import family_of


class ModelFacts:
    """Read-only facts of a model, for :class:`~sklearn_clip.ModelHandle`."""

    @property
    def processor_config(self):
        """The image processor's settings, as its config file holds them."""
        return self.image_processor.to_dict()

    @property
    def _facts(self):
        # The family's row of the table: what the properties below decide by.
        return family_of(self.model.config.model_type)

    @property
    def context_length(self):
        """Texts are truncated to this many tokens (SigLIP's are padded to it)."""
        facts = self._facts
        if facts.text_length is not None:
            # What transformers' zero-shot pipeline pads SigLIP text to.
            return facts.text_length
        text = self.model.config.text_config
        positions = int(text.max_position_embeddings)
        if facts.position_offset:
            positions -= int(text.pad_token_id) + 1  # XLM-R's position offset
        limit = self.tokenizer.model_max_length
        return min(positions, int(limit)) if limit and limit < 1e6 else positions

    @property
    def pad_to_max_length(self):
        # SigLIP pools the last position, and was trained on sequences padded to
        # the full context; CLIP pools the end token, so padding is free to vary,
        # unless its text tower attends both ways (converted from open_clip).
        return self._facts.pad_to_max_length or is_bidirectional(self.model)

    @property
    def pad_token_id(self):
        if is_bidirectional(self.model):
            # open_clip's pad id (0), which its bidirectional tower attends to.
            return int(self.model.config.text_config.pad_token_id)
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id or 0)

    @property
    def logit_scale(self):
        """What cosines are multiplied by: ``exp(logit_scale)`` (ALIGN: ``1 / T``)."""
        return float(logit_scale(self.model).detach().float())

    @property
    def logit_bias(self):
        """The learned bias of SigLIP-style models; None for CLIP."""
        name = self._facts.bias
        if name is None:
            return None
        return float(getattr(self.model, name).detach().float())
