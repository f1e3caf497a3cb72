"""The PyTorch model compiled from a spec. Modules take keyword-only values and injected submodules and
never read the spec (``builders.py`` translates); nothing here knows about ONNX."""
