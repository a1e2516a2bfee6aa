"""neon: a deep learning engine with CPU (numpy) and GPU (CuPy) backends and emulated
fp16/bf16 storage, driven by YAML model files."""

__version__ = "0.1.0"
