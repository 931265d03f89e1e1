"""paddle-qwenvl: PaddlePaddle inference for Qwen2-VL, QVQ and Qwen2.5-VL."""
from .predictor import Predictor
from .sampling import SamplingParams

__version__ = "0.1.0"
__all__ = ["Predictor", "SamplingParams"]
