"""The classifiers: zero-shot and few-shot, their heads, prompts and the
multi-label decision.
"""
