"""Trained weights: reading checkpoints safely and loading them into the compiled model."""
