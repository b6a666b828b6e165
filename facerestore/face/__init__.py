"""Shared face pipeline: detection, 5-point alignment, paste-back."""
