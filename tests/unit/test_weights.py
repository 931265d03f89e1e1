"""The loader: every tensor accounted for, clear errors naming the culprit, sharded bf16 checkpoints."""
import json
import shutil

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file, save_file

from paddle_qwenvl.models import load_model
from paddle_qwenvl.models.registry import build_model
from paddle_qwenvl.config import ModelConfig
from paddle_qwenvl.weights import load_weights, target_of


def copy_dir(src, dst):
    shutil.copytree(src, dst)
    return dst


def rewrite(path, fn):
    tensors = load_file(str(path / "model.safetensors"))
    fn(tensors)
    save_file(tensors, str(path / "model.safetensors"))


def test_target_names_cover_fusions_and_new_prefixes():
    assert target_of("model.layers.3.self_attn.k_proj.bias") == ("model.layers.3.self_attn.qkv_proj.bias", 1, 3)
    assert target_of("model.language_model.layers.0.mlp.up_proj.weight") == \
        ("model.layers.0.mlp.gate_up_proj.weight", 1, 2)
    assert target_of("model.visual.blocks.0.attn.qkv.weight") == ("visual.blocks.0.attn.qkv.weight", 0, 1)


def test_load_returns_every_parameter(tiny_dirs):
    model = build_model(ModelConfig.from_dir(tiny_dirs["qwen2_5_vl"]))
    loaded = load_weights(model, tiny_dirs["qwen2_5_vl"], progress=False)
    assert loaded == {name for name, _ in model.named_parameters()}


def test_missing_tensor_is_named(tiny_dirs, tmp_path):
    path = copy_dir(tiny_dirs["qwen2_vl"], tmp_path / "m")
    rewrite(path, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))
    with pytest.raises(KeyError, match="model.layers.1.mlp.down_proj.weight"):
        load_model(path, progress=False)


def test_missing_part_of_fused_tensor_is_named(tiny_dirs, tmp_path):
    path = copy_dir(tiny_dirs["qwen2_vl"], tmp_path / "m")
    rewrite(path, lambda t: t.pop("model.layers.0.self_attn.v_proj.weight"))
    with pytest.raises(KeyError, match="model.layers.0.self_attn.qkv_proj.weight"):
        load_model(path, progress=False)


def test_unexpected_tensor_is_named(tiny_dirs, tmp_path):
    path = copy_dir(tiny_dirs["qwen2_vl"], tmp_path / "m")
    rewrite(path, lambda t: t.update({"model.layers.0.extra.weight": np.zeros(3, np.float32)}))
    with pytest.raises(KeyError, match="model.layers.0.extra.weight"):
        load_model(path, progress=False)


def test_misshaped_tensor_is_named(tiny_dirs, tmp_path):
    path = copy_dir(tiny_dirs["qwen2_5_vl"], tmp_path / "m")
    rewrite(path, lambda t: t.update({"model.norm.weight": np.zeros(7, np.float32)}))
    with pytest.raises(ValueError, match=r"model.norm.weight.*\[7\].*\[64\]"):
        load_model(path, progress=False)


def test_unknown_architecture_is_rejected(tiny_dirs, tmp_path):
    path = copy_dir(tiny_dirs["qwen2_vl"], tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg["architectures"] = ["LlavaForConditionalGeneration"]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unsupported architecture 'LlavaForConditionalGeneration'"):
        load_model(path, progress=False)


def test_missing_directory_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path / "nowhere", progress=False)


def test_sharded_bfloat16_checkpoint_loads_as_rounded_fp32(tmp_path):
    from paddle_qwenvl.tools import tiny
    from paddle_qwenvl.tools.weight_writer import ShardWriter, to_bfloat16_bits
    fp32 = tiny.make_tiny_checkpoint(tmp_path / "fp32", "qwen2_vl")
    cfg = json.loads((fp32 / "config.json").read_text())
    bf16 = copy_dir(fp32, tmp_path / "bf16")
    (bf16 / "model.safetensors").unlink()
    tensors = load_file(str(fp32 / "model.safetensors"))
    with ShardWriter(bf16, "bfloat16", shard_bytes=64 << 10, progress=False, total=len(tensors)) as w:
        for name, value in tensors.items():
            w.add(name, value)
    index = json.loads((bf16 / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model = load_model(bf16, progress=False)
    got = model.model.norm.weight.numpy()
    expected = (to_bfloat16_bits(tensors["model.norm.weight"]).astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(got, expected)
    assert cfg["architectures"] == ["Qwen2VLForConditionalGeneration"]


def test_missing_tensor_of_a_quantized_layer_is_named(tiny_dirs, tmp_path):
    """Quantized layers' buffers are left unwritten while load_model builds the model; a weight the
    checkpoint lacks must still be an error, not a layer computing with whatever memory held."""
    from paddle_qwenvl.quantization import QuantConfig
    path = copy_dir(tiny_dirs["qwen2_vl"], tmp_path / "m")
    rewrite(path, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))
    with pytest.raises(KeyError, match="model.layers.1.mlp.down_proj.weight"):
        load_model(path, QuantConfig("weight_only_int8"), progress=False)


def test_quantized_layer_built_outside_loading_holds_zero_weights():
    from paddle_qwenvl.layers.linear import WeightOnlyLinear
    from paddle_qwenvl.quantization import QuantConfig
    layer = WeightOnlyLinear(64, 8, False, QuantConfig("weight_only_int4", 64))
    assert not layer.qweight.numpy().any() and (layer.scales.numpy() == 1).all()
    with paddle.LazyGuard():
        lazy = WeightOnlyLinear(64, 8, False, QuantConfig("weight_only_int4", 64))
    assert lazy.qweight.shape == [8, 32] and lazy.scales.shape == [8, 1]
