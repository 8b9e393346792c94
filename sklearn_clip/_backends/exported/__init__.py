"""Exported models: ONNX Runtime and OpenVINO copies of a model, run without PyTorch."""
