"""Each tensor-parallel rank's share of the decoder, checked in one process: loading needs no
collective, so both ranks' models load here and their shares must tile the whole weights."""
import numpy as np
import pytest

from paddle_qwenvl.config import ModelConfig
from paddle_qwenvl.distributed import TensorParallel
from paddle_qwenvl.layers.parallel import DecoderSplit
from paddle_qwenvl.models import load_model
from paddle_qwenvl.models.registry import build_model


def split(heads, kv_heads, world_size, rank=0, intermediate=128):
    return DecoderSplit(rank, world_size, heads, kv_heads, 16, intermediate)


def test_kv_heads_are_split_or_replicated():
    # 4 query heads, 2 KV heads: 2 ranks split the KV heads, 4 ranks share each KV head by two
    assert [split(4, 2, 2, r).first_kv_head for r in range(2)] == [0, 1]
    assert [split(4, 2, 4, r).first_kv_head for r in range(4)] == [0, 0, 1, 1]
    assert split(4, 2, 4).local_kv_heads == 1 and split(4, 2, 4).local_heads == 1
    name = "model.layers.3.self_attn.k_proj.weight"
    assert [split(4, 2, 4, r).checkpoint_slice(name) for r in range(4)] == \
        [(0, 0, 16), (0, 0, 16), (0, 16, 32), (0, 16, 32)]
    assert split(4, 2, 2, 1).checkpoint_slice("model.language_model.layers.0.mlp.down_proj.weight") == (1, 64, 128)
    assert split(4, 2, 2, 1).checkpoint_slice("model.layers.0.self_attn.o_proj.weight") == (1, 32, 64)
    assert split(4, 2, 2, 1).checkpoint_slice("visual.blocks.0.mlp.down_proj.weight") is None
    assert split(4, 2, 2, 1).checkpoint_slice("model.layers.0.input_layernorm.weight") is None


@pytest.mark.parametrize("heads, kv_heads, world_size", [(4, 2, 3), (12, 6, 4), (4, 4, 8)])
def test_unsplittable_head_counts_are_one_line_errors(heads, kv_heads, world_size):
    with pytest.raises(ValueError) as e:
        split(heads, kv_heads, world_size).check()
    message = str(e.value)
    assert "\n" not in message
    assert f"tensor parallel size {world_size}" in message and f"num_attention_heads {heads}" in message
    assert f"num_key_value_heads {kv_heads}" in message


def test_building_for_a_size_that_does_not_divide_the_heads_fails(tiny_dirs):
    config = ModelConfig.from_dir(tiny_dirs["qwen2_5_vl"])        # 4 heads, 2 KV heads
    with pytest.raises(ValueError, match="tensor parallel size 3 cannot split this decoder"):
        build_model(config, random_init=False, tp=TensorParallel(0, 3))


def test_the_ranks_shares_tile_the_whole_weights(tiny_dirs):
    model_dir = tiny_dirs["qwen2_vl"]
    whole = load_model(model_dir, progress=False).model.layers[1]
    parts = [load_model(model_dir, progress=False, tp=TensorParallel(r, 2)).model.layers[1] for r in range(2)]
    q, kv = 4 * 16, 2 * 16                 # heads x head_dim in the whole qkv_proj rows
    qkv = whole.self_attn.qkv_proj.weight.numpy()
    for r, part in enumerate(parts):
        local = part.self_attn.qkv_proj.weight.numpy()                     # rows [q_r | k_r | v_r]
        assert local.shape == (32 + 16 + 16, 64) and part.self_attn.num_kv_heads == 1
        np.testing.assert_array_equal(local[:32], qkv[32 * r:32 * (r + 1)])
        np.testing.assert_array_equal(local[32:48], qkv[q + 16 * r:q + 16 * (r + 1)])
        np.testing.assert_array_equal(local[48:], qkv[q + kv + 16 * r:q + kv + 16 * (r + 1)])
    np.testing.assert_array_equal(np.concatenate([p.self_attn.o_proj.weight.numpy() for p in parts], axis=1),
                                  whole.self_attn.o_proj.weight.numpy())
    np.testing.assert_array_equal(np.concatenate([p.mlp.down_proj.weight.numpy() for p in parts], axis=1),
                                  whole.mlp.down_proj.weight.numpy())
    gate_up = whole.mlp.gate_up_proj.weight.numpy()                         # rows [gate (128) | up (128)]
    for r, part in enumerate(parts):
        local = part.mlp.gate_up_proj.weight.numpy()
        np.testing.assert_array_equal(local[:64], gate_up[64 * r:64 * (r + 1)])
        np.testing.assert_array_equal(local[64:], gate_up[128 + 64 * r:128 + 64 * (r + 1)])
