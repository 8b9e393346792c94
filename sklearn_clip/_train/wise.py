"""WiSE-FT: the tuned weights mixed with the starting ones by ``wise_alpha``.

Wortsman et al. (2022) show that averaging a fine-tuned model's weights with
its starting weights keeps most of the starting model's zero-shot ability and
most of the gain. The mix needs no training, so
:class:`~sklearn_clip.CLIPContrastiveFinetuner` computes it whenever its
``model_`` is asked for at another ``wise_alpha`` than the last one.
"""

import copy
from numbers import Real

import torch


def check_wise_alpha(alpha):
    """``alpha`` as a float, or a ValueError when it is not in [0, 1]."""
    if not isinstance(alpha, Real) or not 0 <= alpha <= 1:
        raise ValueError(f"wise_alpha must be a float in [0, 1]; got {alpha!r}")
    return float(alpha)


def mix_handles(start, tuned, alpha):
    """A handle of ``tuned`` whose weights are mixed with ``start``'s by ``alpha``.

    Parameters
    ----------
    start : callable
        Returns the starting model's handle; called only when ``alpha < 1``,
        as it may have to load the starting weights again (after unpickling).
    tuned : ModelHandle
        The fine-tuned model; returned itself at ``alpha == 1``.
    alpha : float
        The weight of the tuned model.

    Returns
    -------
    ModelHandle
    """
    if alpha == 1.0:
        return tuned
    mixed = interpolate_weights(
        start().full_precision_model(), tuned.full_precision_model(), alpha
    )
    return tuned.with_model(mixed)


def interpolate_weights(start, tuned, alpha):
    """A copy of ``tuned`` with ``(1 - alpha) * start + alpha * tuned`` weights.

    Floating-point tensors are mixed in float32; integer buffers (position
    ids) are taken from ``tuned``.
    """
    start_state = start.state_dict()
    mixed = copy.deepcopy(tuned)
    state = {}
    with torch.no_grad():
        for name, value in tuned.state_dict().items():
            if value.is_floating_point():
                begin = start_state[name].to(value.device, torch.float32)
                value = (1 - alpha) * begin + alpha * value.float()
            state[name] = value
    mixed.load_state_dict(state)
    return mixed.eval()
