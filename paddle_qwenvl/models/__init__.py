from .registry import load_model, MODEL_CLASSES

__all__ = ["load_model", "MODEL_CLASSES"]
