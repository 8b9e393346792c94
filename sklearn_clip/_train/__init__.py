"""Contrastive fine-tuning, one concept a module.

- ``finetuner``: :class:`~sklearn_clip.CLIPContrastiveFinetuner`, its
  parameters and ``fit``;
- ``fit_inputs``: what ``fit`` checks and prepares (captions, labels, the
  resume request, the seed, the training configuration);
- ``tuned``: what a fitted fine-tuner offers (``model_`` at the current
  ``wise_alpha``, ``transform``, ``score``, ``save_pretrained``);
- ``wise``: the WiSE-FT mix of tuned and starting weights;
- ``loop``: the training loop in named steps; ``run_state``: what a run
  holds and what a checkpoint saves of it; ``history``: the per-epoch records;
- ``checkpoints``, ``schedule``, ``trainable``, ``contrastive``, ``losses``,
  ``pairs``, ``distributed``: the files, the schedule, what trains, one batch
  through the model, the losses, the decoded pairs, several processes as one.
"""
