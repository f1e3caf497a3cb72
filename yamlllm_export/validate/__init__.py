"""Proving an export: ONNX Runtime sessions and teacher-forced parity against the PyTorch reference."""
