"""Contrastive fine-tuning: pairs, losses, the training loop, checkpoints,
schedules, distributed runs and the fine-tuner estimator.
"""
