"""The model layers run on the compiled fused ops: counts of each op per forward pass.

Decoder with L layers, each layer calling the single ops (PADDLE_QWENVL_FUSED_LAYERS=0): the first
input norm is a plain RMSNorm; every later norm adds the residual first (the residual is carried
between layers, as vLLM does), so 1 rms_norm + 2L add_rms_norm, L swiglu and L rotary_qkv. By
default all layers are one pqv_decoder_stack call (PADDLE_QWENVL_FUSED_LAYERS=layer: one
pqv_decoder_layer call each) and only the final norm (with the residual) is left.
Qwen2.5-VL vision tower with depth D: 2D + 1 rms_norm (norm1, norm2, merger), D swiglu,
D rotary_qkv.
"""
from collections import Counter

import numpy as np
import paddle
import pytest

from paddle_qwenvl.engine.inputs import PromptInputs
from paddle_qwenvl.layers.mlp import GatedMLP
from paddle_qwenvl.layers.norm import RMSNorm
from paddle_qwenvl.models import load_model
from paddle_qwenvl.ops._build import compiled_ops
from tests.runs import prompt_logits

needs_ops = pytest.mark.skipif(compiled_ops() is None, reason="compiled ops unavailable")
FUSED = ("pqv_rms_norm", "pqv_add_rms_norm", "pqv_swiglu", "pqv_rotary_qkv", "pqv_decoder_layer", "pqv_decoder_stack")


@pytest.fixture
def op_calls(monkeypatch):
    """Counter of calls to the fused compiled ops while the test runs."""
    calls, ops = Counter(), compiled_ops()
    for name in FUSED:
        real = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, _real=real, _name=name: calls.update([_name]) or _real(*a))
    return calls


def decoder_op_calls(tiny_dirs, op_calls):
    model = load_model(tiny_dirs["qwen2_5_vl"], progress=False)
    with paddle.no_grad():
        prompt_logits(model, PromptInputs(list(range(1, 20))))
    return model.config.text.num_hidden_layers, op_calls


@needs_ops
def test_decoder_runs_all_layers_in_one_op(tiny_dirs, op_calls):
    _, calls = decoder_op_calls(tiny_dirs, op_calls)
    assert calls == {"pqv_decoder_stack": 1, "pqv_add_rms_norm": 1}


@needs_ops
def test_decoder_runs_one_op_per_layer_when_asked(tiny_dirs, op_calls, monkeypatch):
    monkeypatch.setenv("PADDLE_QWENVL_FUSED_LAYERS", "layer")
    layers, calls = decoder_op_calls(tiny_dirs, op_calls)
    assert calls == {"pqv_decoder_layer": layers, "pqv_add_rms_norm": 1}


@needs_ops
def test_decoder_layers_on_the_single_fused_ops(tiny_dirs, op_calls, monkeypatch):
    monkeypatch.setenv("PADDLE_QWENVL_FUSED_LAYERS", "0")
    layers, calls = decoder_op_calls(tiny_dirs, op_calls)
    assert calls == {"pqv_rms_norm": 1, "pqv_add_rms_norm": 2 * layers, "pqv_swiglu": layers,
                     "pqv_rotary_qkv": layers}


@needs_ops
def test_qwen2_5_vision_tower_runs_on_the_fused_ops(tiny_dirs, op_calls):
    model = load_model(tiny_dirs["qwen2_5_vl"], progress=False)
    depth, patch_dim = model.config.vision.depth, model.visual.patch_embed.patch_dim
    pixels = paddle.to_tensor(np.random.default_rng(0).standard_normal((64, patch_dim)).astype("float32"))
    with paddle.no_grad():
        model.get_image_features(pixels, [(1, 8, 8)])
    assert op_calls == {"pqv_rms_norm": 2 * depth + 1, "pqv_swiglu": depth, "pqv_rotary_qkv": depth}


def test_rms_norm_layer_returns_the_summed_residual_when_given_one():
    norm = RMSNorm(8)
    x, residual = paddle.randn([3, 8]), paddle.randn([3, 8])
    out, new_residual = norm(x, residual)
    np.testing.assert_allclose(new_residual.numpy(), (x + residual).numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(out.numpy(), norm(x + residual).numpy(), rtol=1e-6, atol=1e-6)


def test_gated_mlp_rejects_activations_other_than_silu():
    with pytest.raises(ValueError, match="only 'silu'"):
        GatedMLP(8, 16, act="gelu")
