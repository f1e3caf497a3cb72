"""Export: the ONNX I/O contract, the atomic folder writer and rebuilding the PyTorch reference."""
