"""Exports of the other precisions against their dygraph twins: weight-only int8 and int4
(decoder, vision tower and lm_head quantized), bf16 math, and a bf16 checkpoint run in float32."""
import numpy as np
import pytest

from paddle_qwenvl.models import load_model
from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.quantization import make_quant_config
from paddle_qwenvl.static.export import export_model
from paddle_qwenvl.static.loader import load_export
from paddle_qwenvl.static.manifest import ExportError
from paddle_qwenvl.tools.tiny import make_tiny_checkpoint
from tests.parity.cases import CASES, build
from tests.runs import greedy_ids, prompt_logits

pytestmark = pytest.mark.skipif(compiled_ops() is None or not build_info()["onednn"],
                                reason="an export needs the compiled ops with oneDNN")
VARIED = dict(std=0.02, embed_std=1.0, text={"tie_word_embeddings": False})


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("precisions")
    return {dtype: make_tiny_checkpoint(root / dtype, "qwen2_5_vl", seed=0, dtype=dtype, **VARIED)
            for dtype in ("float32", "bfloat16")}


def twins(model_dir, out_dir, dtype="float32", quant=None):
    out = export_model(model_dir, out_dir, dtype, quant, block_size=16, progress=False)
    return load_model(model_dir, quant=quant, progress=False, dtype=dtype), load_export(out)


@pytest.mark.parametrize("quant_type,group_size", [("weight_only_int8", 128), ("weight_only_int4", 64)])
def test_weight_only_exports_match_their_dygraph_twins(checkpoints, tmp_path, quant_type, group_size):
    quant = make_quant_config(quant_type, group_size, quantize_vision=True, quantize_lm_head=True)
    dynamic, static = twins(checkpoints["float32"], tmp_path / "export", quant=quant)
    assert static.quant == quant
    inputs = build(dynamic.config, CASES["image_and_video"], seed=3)
    want = greedy_ids(dynamic, inputs)
    assert greedy_ids(static, inputs) == want and len(set(want)) > 8
    np.testing.assert_allclose(prompt_logits(static, inputs, continuation=want[:4]),
                               prompt_logits(dynamic, inputs, continuation=want[:4]), rtol=0, atol=1e-4)


def test_an_export_holds_the_default_int8_lm_head_and_checks_the_settings_asked(checkpoints, tmp_path):
    quant = make_quant_config("weight_only_int4", 64)
    dynamic, static = twins(checkpoints["float32"], tmp_path / "export", quant=quant)
    assert static.quant.lm_head_quant_type == "weight_only_int8" == dynamic.lm_head.algo
    assert load_export(tmp_path / "export", quant=make_quant_config("weight_only_int4", 64)).quant == quant
    with pytest.raises(ExportError, match="exported with quantization"):
        load_export(tmp_path / "export", quant=make_quant_config("weight_only_int4", 64, quantize_lm_head=False))


def test_bf16_checkpoint_in_float32(checkpoints, tmp_path):
    dynamic, static = twins(checkpoints["bfloat16"], tmp_path / "export")
    assert static.weight_dtype == "bfloat16"         # held as published, widened exactly as used
    inputs = build(dynamic.config, CASES["two_images"], seed=3)
    want = greedy_ids(dynamic, inputs)
    assert greedy_ids(static, inputs) == want
    np.testing.assert_allclose(prompt_logits(static, inputs, continuation=want[:4]),
                               prompt_logits(dynamic, inputs, continuation=want[:4]), rtol=0, atol=1e-4)


def test_bf16_math(checkpoints, tmp_path):
    """bf16 math: the same tokens. The logits differ within bf16 rounding: the static decoder step
    attends in fp32 throughout and the static vision tower runs every attention block on the bf16
    GEMMs, where the dygraph model chooses per step from the lengths."""
    dynamic, static = twins(checkpoints["bfloat16"], tmp_path / "export", dtype="bfloat16")
    inputs = build(dynamic.config, CASES["image_and_video"], seed=3)
    want = greedy_ids(dynamic, inputs)
    assert greedy_ids(static, inputs) == want
    np.testing.assert_allclose(prompt_logits(static, inputs, continuation=want[:4]),
                               prompt_logits(dynamic, inputs, continuation=want[:4]), rtol=0, atol=2e-2)


def test_auto_dtype_is_resolved_and_recorded(checkpoints, tmp_path):
    """An export's default dtype is "auto", resolved from the checkpoint as run's is: a bf16
    checkpoint exports bf16 math where the CPU has native bf16, a float32 one float32."""
    bf16 = load_export(export_model(checkpoints["bfloat16"], tmp_path / "bf16", block_size=16, progress=False))
    assert bf16.compute_dtype == ("bfloat16" if build_info()["bf16"] else "float32")
    fp32 = load_export(export_model(checkpoints["float32"], tmp_path / "fp32", block_size=16, progress=False))
    assert fp32.compute_dtype == "float32"
