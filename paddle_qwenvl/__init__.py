"""paddle-qwenvl: PaddlePaddle inference for Qwen2-VL, QVQ and Qwen2.5-VL.

`from paddle_qwenvl import Predictor, SamplingParams` is all the common case needs. Both are
imported on first use, so the pure-Python parts (scheduler, block manager) import without Paddle.
"""
import warnings

__version__ = "0.1.0"          # the one version string: pyproject.toml reads it (tool.setuptools.dynamic)
__all__ = ["Predictor", "SamplingParams"]

# `import paddle` warns that ccache is missing (it matters only to Paddle's own C++ builds; ours
# are cached by ops/_build.py). Filtered here, before any module of ours imports Paddle.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)


def __getattr__(name):
    if name == "Predictor":
        from .predictor import Predictor
        return Predictor
    if name == "SamplingParams":
        from .sampling import SamplingParams
        return SamplingParams
    raise AttributeError(f"module 'paddle_qwenvl' has no attribute {name!r}")
