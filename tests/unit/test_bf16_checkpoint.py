"""A float32 model loaded from a bf16 checkpoint (as Qwen's are published) keeps the linear weights
and embedding tables in bf16 and widens them exactly as it uses them: the numbers of a model that
widened them on load, with half the weight memory."""
import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from paddle_qwenvl.models import load_model
from tests.runs import greedy_ids, prompt_logits
from paddle_qwenvl.tools.tiny import make_tiny_checkpoint
from paddle_qwenvl.tools.weight_writer import ShardWriter
from paddle_qwenvl.quantization import make_quant_config
from paddle_qwenvl.tools.weight_writer import save_quantized
from paddle_qwenvl.weights import matrix_dtypes

from tests.parity.cases import CASES, build

# residual-dominated, as in test_quantization.py: a flat-logit random model would flip near-ties
TEXT = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, mrope_section=[8, 12, 12])


def _rewrite(src, dst, dtype_of):
    """A copy of checkpoint `src` with each tensor written as dtype_of(name) ("float32"/"bfloat16")."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    tensors = load_file(str(src / "model.safetensors"))
    for dtype in ("float32", "bfloat16"):
        names = [n for n in tensors if dtype_of(n) == dtype]
        if names:
            (dst / dtype).mkdir()
            with ShardWriter(dst / dtype, dtype, shard_bytes=1 << 40, progress=False, total=len(names)) as w:
                for n in names:
                    w.add(n, tensors[n])
            for f in (dst / dtype).iterdir():
                f.rename(dst / f"{dtype}-{f.name}")
            (dst / dtype).rmdir()
    return dst


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def bf16_dir(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"bf16-{request.param}")
    make_tiny_checkpoint(root / "fp32", request.param, text=TEXT, std=0.02, embed_std=1.0)
    return make_tiny_checkpoint(root / "bf16", request.param, text=TEXT, std=0.02, embed_std=1.0, dtype="bfloat16")


def test_float32_model_holds_the_bf16_weights_as_they_are(bf16_dir):
    model = load_model(bf16_dir, progress=False)
    layer = model.model.layers[0]
    assert model.compute_dtype == "float32"
    assert layer.mlp.gate_up_proj.weight.dtype == paddle.bfloat16 and layer.self_attn.o_proj.exact
    assert model.model.embed_tokens.weight.dtype == paddle.bfloat16
    assert model.visual.blocks[0].attn.qkv.weight.dtype == paddle.bfloat16
    assert layer.self_attn.compute_dtype == "float32" and model.visual.blocks[0].attn.compute_dtype == "float32"
    assert layer.input_layernorm.weight.dtype == paddle.float32
    assert layer.self_attn.qkv_proj.bias.dtype == paddle.float32
    widened = load_model(bf16_dir, progress=False, keep_bf16=False)
    assert widened.model.layers[0].mlp.gate_up_proj.weight.dtype == paddle.float32
    kept = sum(p.numel().item() * p.element_size() for p in model.parameters())
    full = sum(p.numel().item() * p.element_size() for p in widened.parameters())
    assert kept < 0.6 * full


def _logits(model, inputs):
    return prompt_logits(model, inputs)


def test_kept_weights_give_the_widened_models_numbers(bf16_dir):
    """Prefill (vision tower, GEMMs, attention) and 24 decode steps (GEMVs) with an image and a video:
    the same logits up to summation order, the same greedy tokens."""
    kept, widened = load_model(bf16_dir, progress=False), load_model(bf16_dir, progress=False, keep_bf16=False)
    inputs = build(kept.config, CASES["image_and_video"] + list(range(20, 60)))
    a, b = _logits(kept, inputs), _logits(widened, inputs)
    assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()
    assert greedy_ids(kept, inputs, 24) == greedy_ids(widened, inputs, 24)


def test_bfloat16_model_still_computes_in_bf16(bf16_dir):
    model = load_model(bf16_dir, progress=False, dtype="bfloat16")
    assert model.compute_dtype == "bfloat16" and not model.model.layers[0].mlp.down_proj.exact
    assert model.model.layers[0].self_attn.compute_dtype == "bfloat16"


def test_float32_or_mixed_checkpoints_load_as_float32(bf16_dir, tmp_path):
    """Only an all-bf16 checkpoint is held in bf16: a float32 tensor would be rounded."""
    mixed = _rewrite(bf16_dir.parent / "fp32", tmp_path / "mixed", lambda n: "float32" if "mlp" in n else "bfloat16")
    assert matrix_dtypes(bf16_dir) == {"BF16"}
    assert matrix_dtypes(mixed) == {"BF16", "F32"}
    assert matrix_dtypes(bf16_dir.parent / "fp32") == {"F32"}
    for path in (mixed, bf16_dir.parent / "fp32"):
        model = load_model(path, progress=False)
        assert model.model.layers[0].mlp.gate_up_proj.weight.dtype == paddle.float32
        assert model.model.embed_tokens.weight.dtype == paddle.float32


def test_saved_quantized_model_keeps_its_bf16_tensors(bf16_dir, tmp_path):
    """int8 decoder linears, the rest (the lm_head kept float) held in bf16: saved as BF16 (not as
    raw 16-bit integers), and loaded back the same way, with the same numbers."""
    model = load_model(bf16_dir, make_quant_config("weight_only_int8", quantize_lm_head=False), progress=False)
    assert model.model.embed_tokens.weight.dtype == paddle.bfloat16
    out = save_quantized(model, bf16_dir, tmp_path / "q")
    assert matrix_dtypes(out) == {"BF16"}
    again = load_model(out, progress=False)
    assert again.model.embed_tokens.weight.dtype == paddle.bfloat16
    assert again.visual.blocks[0].attn.qkv.weight.dtype == paddle.bfloat16
    inputs = build(model.config, CASES["one_image"])
    np.testing.assert_array_equal(_logits(model, inputs), _logits(again, inputs))
