"""Resfusion restoration packs (denoise, low-light) trained on real photographs.

Stages: data (Debian wallpaper photos -> cache) · train (resumable) · export (ONNX, parity,
vectors, pack.json) · eval (held-out metrics, figure, eval.json, MODEL_CARD.md).
Run `python -m restore --help`; the recipe is described in README.md.
"""
