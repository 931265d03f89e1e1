"""pqv_decoder_layer (a whole decoder layer in one op) against the same layer calling the single
ops: the same kernels in the same order, so logits and KV caches must agree bit for bit, for every
weight kind a layer can hold and for prefill (GEMM) and decode (GEMV) steps."""
from collections import Counter

import numpy as np
import paddle
import pytest

from paddle_qwenvl.engine.inputs import PromptInputs
from paddle_qwenvl.models import load_model
from paddle_qwenvl.ops import decoder_layer as fused
from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.quantization import QuantConfig
from paddle_qwenvl.tools.tiny import make_tiny_checkpoint
from tests.runs import greedy_ids, make_engine

pytestmark = pytest.mark.skipif(compiled_ops() is None or not build_info()["onednn"],
                                reason="compiled ops with oneDNN unavailable")
PROMPT = list(range(3, 22))          # 19 tokens: prefill takes the GEMM paths (>= 16 rows)
LONG_PROMPT = list(range(3, 153))    # 150 tokens: a bf16 model's attention takes its GEMM path (>= 128)
BLOCK = 8


@pytest.fixture
def fused_calls(monkeypatch):
    calls, ops = Counter(), compiled_ops()
    for name, op in (("layer", "pqv_decoder_layer"), ("stack", "pqv_decoder_stack")):
        real = getattr(ops, op)
        monkeypatch.setattr(ops, op, lambda *a, real=real, name=name: calls.update([name]) or real(*a))
    return calls


def run_steps(model, tokens=(), prompt=PROMPT):
    """Logits of the prompt (one prefill step) and of one decode step per token of `tokens`,
    (len(prompt) + len(tokens), vocab), and the KV caches after them."""
    engine = make_engine(model, BLOCK)
    logits = engine.prompt_logits([PromptInputs(prompt)], [list(tokens)])[0]
    return logits, [(k.numpy(), v.numpy()) for k, v in engine.runner.kv_caches]


@pytest.mark.parametrize("dtype,quant,prompt", [
    ("float32", None, PROMPT),
    ("bfloat16", None, PROMPT),
    ("bfloat16", None, LONG_PROMPT),
    ("float32", QuantConfig("weight_only_int8"), PROMPT),
    ("float32", QuantConfig("weight_only_int4", 64), PROMPT),
    ("bfloat16", QuantConfig("weight_only_int4", 128), PROMPT),   # 64-wide inputs fall back to int8: mixed scales
], ids=["fp32", "bf16", "bf16-long-prompt", "int8", "int4-g64", "int4-g128-mixed"])
def test_fused_layer_matches_the_single_ops(tiny_dirs, monkeypatch, fused_calls, dtype, quant, prompt):
    model = load_model(tiny_dirs["qwen2_vl"], quant, progress=False, dtype=dtype)
    assert_fused_matches_single_ops(model, monkeypatch, fused_calls, prompt)


@pytest.mark.parametrize("prompt", [PROMPT, LONG_PROMPT], ids=["short", "long"])
def test_fused_layer_matches_the_single_ops_on_kept_bf16_weights(tmp_path, monkeypatch, fused_calls, prompt):
    """A float32 model from a bf16 checkpoint (its weights held in bf16, linears exact)."""
    model = load_model(make_tiny_checkpoint(tmp_path / "m", "qwen2_vl", dtype="bfloat16"), progress=False)
    assert model.model.layers[0].self_attn.o_proj.weight.dtype == paddle.bfloat16
    assert_fused_matches_single_ops(model, monkeypatch, fused_calls, prompt)


def assert_fused_matches_single_ops(model, monkeypatch, fused_calls, prompt):
    layers = model.config.text.num_hidden_layers
    monkeypatch.setenv(fused.ENV, "0")
    tokens = greedy_ids(model, PromptInputs(prompt), 3, BLOCK)        # 3 greedy decode steps
    single_logits, single_caches = run_steps(model, tokens, prompt)
    assert fused_calls["layer"] == fused_calls["stack"] == 0
    for setting, calls in (("layer", {"layer": 4 * layers}), ("1", {"stack": 4})):   # prefill + 3 decode steps
        fused_calls.clear()
        monkeypatch.setenv(fused.ENV, setting)
        fused_logits, fused_caches = run_steps(model, tokens, prompt)
        assert dict(fused_calls) == calls
        np.testing.assert_array_equal(single_logits, fused_logits)
        for (ka, va), (kb, vb) in zip(single_caches, fused_caches):
            np.testing.assert_array_equal(ka, kb)
            np.testing.assert_array_equal(va, vb)


BATCH = 20                           # decode steps of 20 rows: the VNNI kernels for many rows


def run_batch_steps(model, steps=2):
    """Logits of BATCH short prompts prefilled together, then `steps` decode steps of BATCH rows."""
    engine = make_engine(model, BLOCK, max_num_seqs=BATCH)
    prompts = [PromptInputs(list(range(3 + i, 8 + i))) for i in range(BATCH)]
    tokens = [[(5 * i + t) % 50 + 3 for t in range(steps)] for i in range(BATCH)]
    return np.stack(engine.prompt_logits(prompts, tokens))


@pytest.mark.parametrize("dtype,quant", [
    ("float32", QuantConfig("weight_only_int8")),
    ("bfloat16", QuantConfig("weight_only_int8")),
    ("float32", QuantConfig("weight_only_int4", 64)),
    ("bfloat16", None),
], ids=["int8", "int8-bf16", "int4", "bf16"])
def test_fused_layers_match_the_single_ops_on_a_batch_of_decode_rows(tiny_dirs, monkeypatch, fused_calls, dtype,
                                                                     quant):
    model = load_model(tiny_dirs["qwen2_vl"], quant, progress=False, dtype=dtype)
    monkeypatch.setenv(fused.ENV, "0")
    single = run_batch_steps(model)
    monkeypatch.setenv(fused.ENV, "1")
    stacked = run_batch_steps(model)
    assert dict(fused_calls) == {"stack": 3}
    np.testing.assert_array_equal(single, stacked)
    # the fused ops take the crossover from the wrapper's module. (bf16 weights: our vdpbf16ps kernel
    # and oneDNN's bf16 GEMM summed these small layers in the same order here, bit for bit.)
    if build_info()["bf16"] and quant is not None:
        monkeypatch.setattr(fused, "quant_gemm_rows", lambda: 16)
        assert np.abs(run_batch_steps(model) - stacked).max() > 0        # 20 rows: the bf16 GEMM


@pytest.mark.skipif(not build_info()["bf16"], reason="no native bf16 on this CPU")
@pytest.mark.parametrize("setting", ["0", "1"])
def test_bf16_model_attends_in_bf16_on_long_prompts(tiny_dirs, monkeypatch, setting):
    """A bf16 model's layers pass bf16 attention on, fused or not: its prompt logits move when the
    attention is switched back to fp32; on a short prompt (the paged kernel's fp32) they do not."""
    model = load_model(tiny_dirs["qwen2_vl"], None, progress=False, dtype="bfloat16")
    monkeypatch.setenv(fused.ENV, setting)
    attns = [layer.self_attn for layer in model.model.layers]
    assert all(a.compute_dtype == "bfloat16" for a in attns)
    logits = {}
    for dtype in ("bfloat16", "float32"):
        for a in attns:
            monkeypatch.setattr(a, "compute_dtype", dtype)
        logits[dtype] = (run_steps(model, (), LONG_PROMPT)[0], run_steps(model, (), PROMPT)[0])
    assert np.abs(logits["bfloat16"][0] - logits["float32"][0]).max() > 1e-4
    np.testing.assert_array_equal(logits["bfloat16"][1], logits["float32"][1])


def test_static_graph_takes_the_same_path():
    """An exported decoder step runs the fused stack too (tests/static check its numbers)."""
    x = paddle.randn([2, 8])
    assert fused.decoder_path(x) == "stack"
    paddle.enable_static()
    try:
        assert fused.decoder_path(paddle.static.data("x", [2, 8], "float32")) == "stack"
    finally:
        paddle.disable_static()


def test_wrong_weight_list_is_named(tiny_dirs):
    model = load_model(tiny_dirs["qwen2_vl"], progress=False)
    layer = model.model.layers[0]
    with pytest.raises(ValueError, match="weights must be 7 tensors"):
        fused.decoder_layer(paddle.randn([1, 64]), None, [layer.input_layernorm.weight], [], None, None,
                            None, None, eps=1e-6, num_heads=4, num_kv_heads=2, scale=0.25, group_size=0)


def test_fused_layers_setting_is_checked(monkeypatch):
    x = paddle.randn([2, 8])
    monkeypatch.setenv(fused.ENV, "layer")
    assert fused.decoder_path(x) == "layer"
    monkeypatch.setenv(fused.ENV, "yes")
    with pytest.raises(ValueError, match="PADDLE_QWENVL_FUSED_LAYERS='yes'"):
        fused.decoder_path(x)


def test_stack_needs_a_cache_per_layer(tiny_dirs):
    model = load_model(tiny_dirs["qwen2_vl"], progress=False)
    weights, scales, settings = model.model.layers[0].op_arguments()
    with pytest.raises(ValueError, match="2 layers given with 1 kv caches"):
        fused.decoder_stack(paddle.randn([1, 64]), [(weights, scales)] * 2, None, None, None, [(None, None)],
                            **settings)
