"""Fixtures for parity against HF transformers (torch CPU, fp32, eager attention)."""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HF_CLASSES = {"qwen2_vl": "Qwen2VLForConditionalGeneration",
              "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}


@pytest.fixture(scope="session")
def models(tiny_dirs):
    """family -> (our model, HF model, model dir)."""
    from paddle_qwenvl.models import load_model
    out = {}
    for family, path in tiny_dirs.items():
        hf_cls = getattr(transformers, HF_CLASSES[family])
        hf = hf_cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
        out[family] = (load_model(path, progress=False), hf, path)
    return out


@pytest.fixture(params=["qwen2_vl", "qwen2_5_vl"])
def family(request):
    return request.param
