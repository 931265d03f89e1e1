"""paddle-qwenvl: PaddlePaddle inference for Qwen2-VL, QVQ and Qwen2.5-VL."""
__version__ = "0.1.0"
