"""Helpers shared by the model factory's recipes (restore/, shapes/, ...).

Each module does one small thing and imports its heavy dependencies itself, so that a recipe
stage pays only for what it uses:

- `device`   : pick cpu/cuda, thread count and seeds the same way in every recipe.
- `packs`    : sha256 of pack files and writing a `retrace-pack/1` pack.json.
- `onnx_io`  : ONNX export with dynamic axes, onnxruntime sessions, torch <-> ORT parity.
- `vectors`  : safetensors test-vector files (the engine's parity fixtures).
"""
