"""The PyTorch backend: transformers' models, the package's forward passes,
precision, weights' fingerprints, and the tracing of towers for exports."""
