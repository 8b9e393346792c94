"""Forward passes that give a CLIP's embeddings with less work.

Three changes to how a loaded model computes, none to what it computes (the
embeddings agree with ``transformers``' own methods to float rounding, and
gradients flow the same way, so fine-tuning uses them too):

- CLIP's image embedding is the first ("class") token of the last encoder
  layer. That layer is run for that token alone: keys and values still come
  from every token, but the query, the attention output and the MLP (five of
  the layer's six matrix products) from one. For ViT-B/32 (50 tokens, 12
  layers) this removes about 7 % of the image tower's work.
- ``quick_gelu`` (``x * sigmoid(1.702 x)``) is computed as
  ``silu(1.702 x) / 1.702``: the same function, but PyTorch's fused ``silu``
  kernel is about three times faster on CPU than ``sigmoid`` followed by a
  product. The MLP activation is a tenth of a CLIP's time on CPU.
- CLIP's text tower is causal: a token's states depend only on the tokens
  before it. Prompts made from one template ("a bad photo of a {}.") share
  their first tokens, which run once for the whole group; each prompt then
  runs only its own last tokens. For the 80 ImageNet templates that halves
  the text tower's time (``benchmarks/zero_shot_cpu.py``).

Each shortcut is used only for the model classes in :data:`FAST_PATHS`, where
``tests/backends/test_forward.py`` proves it equal to the class's own
``get_image_features`` / ``get_text_features``; every other model takes the
stock methods (SigLIP pools its image with an attention head rather than a
token, and its text tower is not causal; ALIGN's image tower is a CNN).
"""

import torch
import torch.nn.functional as F
from torch import nn

from sklearn_clip._backends.torch.open_clip import is_bidirectional
from sklearn_clip._models.families import FAMILY_TABLE, family_of

_QUICK_GELU_SLOPE = 1.702


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, computed through the fused ``silu`` kernel."""

    def forward(self, x):
        return F.silu(x * _QUICK_GELU_SLOPE).div_(_QUICK_GELU_SLOPE)


# Which shortcuts each model class takes, by class name, from the family
# table (sklearn_clip._models.families); each pairing is proven in
# tests/backends/test_forward.py. "class_token": the last image layer for the class
# token only; "prefix": shared text prefixes run once; "quick_gelu": the fused
# activation.
FAST_PATHS = {
    family.model_class: set(family.fast_paths)
    for family in FAMILY_TABLE
    if family.fast_paths
}


def fast_paths(model):
    """The shortcuts proven for ``model``'s class (an empty set for others)."""
    # By the exact class: a subclass may compute differently, and nobody proved it.
    paths = set(FAST_PATHS.get(type(model).__name__, ()))
    if is_bidirectional(model):
        paths.discard("prefix")  # a shared prefix sees the tokens after it
    return paths


def use_fast_activations(model):
    """Swap every ``quick_gelu`` module of ``model`` for :class:`QuickGELU`.

    Only for the classes :data:`FAST_PATHS` names. In place (activations hold
    no weights, so the state dict and ``save_pretrained`` are unchanged);
    returns ``model``.
    """
    from transformers.activations import QuickGELUActivation

    if "quick_gelu" not in fast_paths(model):
        return model
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, QuickGELUActivation):
                setattr(module, name, QuickGELU())
    return model


def compile_image_features(model, options):
    """:func:`image_features` of ``model`` through ``torch.compile(**options)``."""

    def forward(pixel_values):
        return image_features(model, pixel_values)

    return torch.compile(forward, **options)


def logit_scale(model):
    """What the model multiplies cosines by, as a tensor gradients flow through.

    ``exp(logit_scale)``, or ``1 / temperature`` for families that store the
    temperature itself (ALIGN); the family table says which.
    """
    family = family_of(model)
    stored = getattr(model, family.temperature)
    return stored.exp() if family.log_temperature else 1.0 / stored


def _features(output):
    # transformers 4.x returns the embedding tensor, 5.x an output object.
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output


def image_features(model, pixels):
    """Projected image embeddings (not normalised), as a tensor.

    ``pixels`` is a pixel tensor, or a dict of the model's image inputs (what
    a family's own image processor returns, e.g. SigLIP 2's patch masks).
    """
    if isinstance(pixels, dict):
        return _features(model.get_image_features(**pixels))
    if _takes(model, "class_token", "vision_model"):
        return _class_token_features(model, pixels)
    return _features(model.get_image_features(pixel_values=pixels))


def text_features(model, input_ids, attention_mask=None, *, share_prefixes=True):
    """Projected text embeddings (not normalised), as a tensor.

    ``input_ids`` are padded on the right, as
    :func:`~sklearn_clip._backends.torch.tensors.tokenize` pads them;
    ``attention_mask`` is None for families whose tokenizer gives none
    (SigLIP's text tower attends to its padding). ``share_prefixes=False``
    leaves out the shared-prefix shortcut, whose grouping depends on the
    values of the batch (a traced export cannot follow it).
    """
    shortcut = share_prefixes and _takes(model, "prefix", "text_model")
    if attention_mask is not None and shortcut:
        return _shared_prefix_features(model, input_ids, attention_mask)
    inputs = {"input_ids": input_ids}
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask
    return _features(model.get_text_features(**inputs))


def _takes(model, shortcut, tower):
    """Whether ``model`` takes ``shortcut`` for ``tower`` now."""
    if shortcut not in fast_paths(model):
        return False
    # Attention dropout is only applied in training; the short paths have none.
    module = getattr(model, tower)
    return not (module.training and module.config.attention_dropout > 0)


def _class_token_features(model, pixel_values):
    vision = model.vision_model
    hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
    *layers, last = vision.encoder.layers
    for layer in layers:
        hidden = layer(hidden, None)
        if isinstance(hidden, tuple):  # transformers 4.x layers return tuples
            hidden = hidden[0]
    token, _ = _encoder_layer(last, hidden, outputs=1)
    return model.visual_projection(vision.post_layernorm(token[:, 0]))


# Groups of prompts sharing fewer leading tokens than this (the start token
# and one word) are encoded whole: too little is shared to pay for a group.
_MIN_SHARED_TOKENS = 2
# Each row's prefix is the one it shares with at least this many neighbours.
_MIN_GROUP_ROWS = 16
# Smaller groups cost more in extra kernel launches than their prefix saves.
_MIN_SHARING_ROWS = 4


def _shared_prefix_features(model, input_ids, attention_mask):
    """CLIP text embeddings, running each shared leading run of tokens once.

    Prompts made from templates ("a photo of a {}.") share their first
    tokens, and in a causal encoder those tokens' states do not depend on what
    follows. Rows are grouped by shared prefix; the groups' prefixes run once,
    together, and their keys and values serve every row of the group, which
    then runs only its own tokens: for the 80 ImageNet templates about a third
    of the tokens. Rows sharing too little take the stock forward pass.
    """
    text = model.text_model
    lengths = attention_mask.sum(dim=1).tolist()
    pooled_at = _pooled_positions(text, input_ids).tolist()
    rows = [input_ids[i, : lengths[i]].tolist() for i in range(len(lengths))]
    sharing, whole = _prefix_groups(rows, pooled_at)
    parts = []
    for batch in _by_own_length(sharing, rows):
        members = [row for group, _ in batch for row in group]
        parts.append((members, _grouped_features(model, rows, pooled_at, batch)))
    if whole:
        index = torch.as_tensor(whole, device=input_ids.device)
        output = model.get_text_features(
            input_ids=input_ids[index], attention_mask=attention_mask[index]
        )
        parts.append((whole, _features(output)))
    order = torch.as_tensor([row for members, _ in parts for row in members])
    features = torch.cat([features for _, features in parts])
    return features[torch.argsort(order).to(features.device)]


def _by_own_length(groups, rows):
    """Split groups into batches whose rows have similar numbers of own tokens.

    Every row of a batch is padded to the longest in it: a template with the
    label in the middle ("a {} in a video game.") would otherwise pad every
    row to its length.
    """

    def own_tokens(item):
        group, shared = item
        return max(len(rows[row]) for row in group) - shared

    batches = []
    for item in sorted(groups, key=own_tokens):
        if batches and own_tokens(item) <= 1.5 * own_tokens(batches[-1][0]):
            batches[-1].append(item)
        else:
            batches.append([item])
    return batches


def _pooled_positions(text, input_ids):
    # The token each row is pooled at, by transformers' own rule: the highest
    # id (configs from before the end token was fixed) or the first end token.
    eos = getattr(text, "eos_token_id", text.config.eos_token_id)
    if eos == 2:
        return input_ids.argmax(dim=-1)
    return (input_ids == eos).int().argmax(dim=-1)


def _common_prefix(a, b):
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def _prefix_groups(rows, pooled_at):
    """Rows with a common prefix, and the rows to encode whole.

    Returns ``(groups, whole)``: ``groups`` lists ``(row indices, shared
    length)``, ``whole`` the other rows.

    In token order, each row is given the longest prefix it shares with a
    run of ``_MIN_GROUP_ROWS`` neighbours (the prefix of a run is the least
    common prefix of its adjacent pairs), and neighbouring rows given the same
    prefix form a group. So the prompts of one template gather under the
    template's first tokens, and a stray row cannot shorten its neighbours'
    prefix. Rows left with fewer than ``_MIN_SHARED_TOKENS`` shared tokens,
    or in a group of fewer than ``_MIN_SHARING_ROWS``, are encoded whole. A
    shared prefix stops short of each row's pooled token, which every row
    computes itself.
    """
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    adjacent = [
        min(_common_prefix(rows[a], rows[b]), pooled_at[a], pooled_at[b])
        for a, b in zip(order, order[1:])
    ]
    pairs = min(_MIN_GROUP_ROWS, len(rows)) - 1  # adjacent pairs in a run
    if pairs == 0:
        return [], order  # one row: nothing to share
    run_prefix = [
        min(adjacent[start : start + pairs])
        for start in range(len(adjacent) - pairs + 1)
    ]
    groups, whole = [], []
    for position, row in enumerate(order):
        # The runs holding this row start from position - pairs to position.
        first, last = max(0, position - pairs), min(position, len(run_prefix) - 1)
        shared = max(run_prefix[first : last + 1])
        if shared < _MIN_SHARED_TOKENS:
            whole.append(row)
        elif (
            groups
            and groups[-1][1] == shared
            and rows[groups[-1][0][0]][:shared] == rows[row][:shared]
        ):
            groups[-1][0].append(row)
        else:
            groups.append(([row], shared))
    for group, _ in groups:
        if len(group) < _MIN_SHARING_ROWS:
            whole.extend(group)
    groups = [(g, shared) for g, shared in groups if len(g) >= _MIN_SHARING_ROWS]
    return groups, whole


def _grouped_features(model, rows, pooled_at, groups):
    """Embeddings of the rows of ``groups``, in group order, in two passes.

    One pass runs every group's prefix (one row per group, padded); the other
    runs every row's own tokens, each attending to its group's prefix keys
    and values and to its own earlier tokens.
    """
    text = model.text_model
    device = text.embeddings.token_embedding.weight.device
    shared = [length for _, length in groups]
    prefixes = torch.zeros((len(groups), max(shared)), dtype=torch.long)
    for g, (group, length) in enumerate(groups):
        prefixes[g, :length] = torch.as_tensor(rows[group[0]][:length])
    group_of = [g for g, (group, _) in enumerate(groups) for _ in group]
    members = [row for group, _ in groups for row in group]
    starts = torch.as_tensor([shared[g] for g in group_of])
    width = max(len(rows[row]) - shared[g] for row, g in zip(members, group_of))
    own = torch.zeros((len(members), width), dtype=torch.long)
    for n, (row, g) in enumerate(zip(members, group_of, strict=True)):
        own[n, : len(rows[row]) - shared[g]] = torch.as_tensor(rows[row][shared[g] :])
    positions = starts[:, None] + torch.arange(width)[None, :]
    # Prefixes are padded on the right: a row sees only its group's real ones.
    visible = torch.arange(prefixes.shape[1])[None, :] < starts[:, None]
    prefixes, own, positions = prefixes.to(device), own.to(device), positions.to(device)
    visible, group_of = visible.to(device), torch.as_tensor(group_of, device=device)

    # Padding sits after each row's last token, so causality alone keeps it
    # out of every real token's view.
    prefix_mask = _causal_mask(prefixes.shape[1], device)
    own_mask = torch.cat(
        [
            visible[:, None, None, :].expand(-1, 1, width, -1),
            _causal_mask(width, device).expand(len(members), 1, width, width),
        ],
        dim=-1,
    )  # (rows, 1, own tokens, prefix + own tokens), broadcast over the heads

    prefix_states = text.embeddings(input_ids=prefixes)
    states = text.embeddings(input_ids=own, position_ids=positions)
    for layer in text.encoder.layers:
        prefix_states, (keys, values) = _encoder_layer(
            layer, prefix_states, mask=prefix_mask
        )
        past = (keys[group_of], values[group_of])
        states, _ = _encoder_layer(layer, states, mask=own_mask, past=past)
    pooled = torch.as_tensor(
        [pooled_at[row] - shared[g] for row, g in zip(members, group_of.tolist())],
        device=device,
    )
    states = states[torch.arange(len(members), device=device), pooled]
    return model.text_projection(text.final_layer_norm(states))


def _causal_mask(tokens, device):
    return torch.ones(tokens, tokens, dtype=torch.bool, device=device).tril()


def _encoder_layer(layer, hidden, *, outputs=None, mask=None, past=None):
    """A CLIP encoder layer, for the first ``outputs`` tokens of ``hidden``.

    Keys and values come from every token of ``hidden``, after the keys and
    values ``past`` (``(keys, values)``, one row each) when given; ``mask``
    says which of those each output token sees (all of them when None).
    Returns the outputs' new states and this call's own keys and values.
    """
    attention = layer.self_attn
    batch, tokens, width = hidden.shape
    outputs = tokens if outputs is None else outputs
    heads = attention.num_heads
    normed = layer.layer_norm1(hidden)

    def split(states):
        length = states.shape[1]
        return states.view(batch, length, heads, width // heads).transpose(1, 2)

    query = split(attention.q_proj(normed[:, :outputs]))
    key, value = split(attention.k_proj(normed)), split(attention.v_proj(normed))
    own = (key, value)
    if past is not None:
        key = torch.cat([past[0], key], dim=2)
        value = torch.cat([past[1], value], dim=2)
    attended = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, scale=attention.scale
    )
    attended = attended.transpose(1, 2).reshape(batch, outputs, width)
    hidden = hidden[:, :outputs] + attention.out_proj(attended)
    hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    return hidden, own
