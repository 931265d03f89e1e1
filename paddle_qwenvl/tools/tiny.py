"""Random checkpoints in the published HF format: tiny ones for tests and demos, real-size ones
(from `presets.PRESETS`) for memory and speed work. Needs no transformers."""
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from .presets import PRESETS

ARCHITECTURES = {"qwen2_vl": "Qwen2VLForConditionalGeneration",
                 "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, mrope_section=[2, 3, 3])
TINY_VISION = {"qwen2_vl": dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2),
               "qwen2_5_vl": dict(depth=4, hidden_size=32, num_heads=2, intermediate_size=64,
                                  window_size=112, fullatt_block_indexes=[1, 3], tokens_per_second=2)}


def hf_config(family: str, text: dict, vision: dict, token_ids: dict) -> dict:
    """config.json as published (text fields top level, nested vision_config)."""
    text = dict(text)
    mrope = text.pop("mrope_section", [16, 24, 24])
    vision = dict(vision, in_chans=3, patch_size=14, spatial_patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2)
    vision["hidden_size" if family == "qwen2_vl" else "out_hidden_size"] = text["hidden_size"]
    if family == "qwen2_5_vl":
        vision["hidden_act"] = "silu"
    return dict(architectures=[ARCHITECTURES[family]], model_type=family, hidden_act="silu",
                rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
                rope_scaling={"type": "mrope", "mrope_section": mrope}, attention_dropout=0.0,
                use_sliding_window=False, sliding_window=32768, max_window_layers=text["num_hidden_layers"],
                initializer_range=0.02, torch_dtype="bfloat16", use_cache=True,
                vision_config=vision, **{k: v for k, v in token_ids.items() if k.endswith("token_id")}, **text)


def hf_tensor_shapes(config: dict) -> Dict[str, Tuple[int, ...]]:
    """Name -> shape of every tensor in a published checkpoint with this config.json."""
    qwen2_5 = config["architectures"][0] == ARCHITECTURES["qwen2_5_vl"]
    shapes = _text_shapes(config)
    shapes.update(_vision_shapes(config["vision_config"], qwen2_5))
    return shapes


def _text_shapes(c: dict) -> dict:
    h, inter, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    s = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not c.get("tie_word_embeddings", False):
        s["lm_head.weight"] = (v, h)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        s.update({p + "self_attn.q_proj.weight": (q, h), p + "self_attn.q_proj.bias": (q,),
                  p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.k_proj.bias": (kv,),
                  p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.v_proj.bias": (kv,),
                  p + "self_attn.o_proj.weight": (h, q), p + "mlp.gate_proj.weight": (inter, h),
                  p + "mlp.up_proj.weight": (inter, h), p + "mlp.down_proj.weight": (h, inter),
                  p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)})
    return s


def _vision_shapes(v: dict, qwen2_5: bool) -> dict:
    e = v["hidden_size"] if qwen2_5 else v["embed_dim"]
    out = v["out_hidden_size"] if qwen2_5 else v["hidden_size"]
    inter = v["intermediate_size"] if qwen2_5 else e * v["mlp_ratio"]
    m = e * v["spatial_merge_size"] ** 2
    norm = {"weight": (e,)} if qwen2_5 else {"weight": (e,), "bias": (e,)}
    s = {"visual.patch_embed.proj.weight": (e, 3, v["temporal_patch_size"], v["patch_size"], v["patch_size"])}
    s.update({f"visual.merger.ln_q.{k}": sh for k, sh in norm.items()})
    s.update({"visual.merger.mlp.0.weight": (m, m), "visual.merger.mlp.0.bias": (m,),
              "visual.merger.mlp.2.weight": (out, m), "visual.merger.mlp.2.bias": (out,)})
    mlp = ({"gate_proj": (inter, e), "up_proj": (inter, e), "down_proj": (e, inter)} if qwen2_5
           else {"fc1": (inter, e), "fc2": (e, inter)})
    for i in range(v["depth"]):
        p = f"visual.blocks.{i}."
        for n in ("norm1", "norm2"):
            s.update({f"{p}{n}.{k}": sh for k, sh in norm.items()})
        s.update({p + "attn.qkv.weight": (3 * e, e), p + "attn.qkv.bias": (3 * e,),
                  p + "attn.proj.weight": (e, e), p + "attn.proj.bias": (e,)})
        for n, sh in mlp.items():
            s.update({f"{p}mlp.{n}.weight": sh, f"{p}mlp.{n}.bias": (sh[0],)})
    return s


def random_tensor(rng, name: str, shape, std: float, embed_std: Optional[float] = None) -> np.ndarray:
    """Norm weights near 1, token embeddings N(0, embed_std or std), everything else N(0, std)."""
    if name == "model.embed_tokens.weight" and embed_std:
        return embed_std * rng.standard_normal(shape, dtype=np.float32)
    if "norm" in name or "ln_q" in name:
        return (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)) if name.endswith("weight") \
            else 0.1 * rng.standard_normal(shape, dtype=np.float32)
    return std * rng.standard_normal(shape, dtype=np.float32)


def write_weights(out_dir: Path, shapes: dict, seed: int, std: float, dtype: str,
                  shard_bytes: int = 2 << 30, progress: bool = False, embed_std: Optional[float] = None):
    """Write random tensors shard by shard; only one shard is ever held in memory."""
    from .weight_writer import ShardWriter
    rng = np.random.default_rng(seed)
    with ShardWriter(out_dir, dtype, shard_bytes, progress, total=len(shapes)) as writer:
        for name, shape in shapes.items():
            writer.add(name, random_tensor(rng, name, shape, std, embed_std))


def write_model_dir(out_dir, family: str, text: dict, vision: dict, seed: int = 0, std: float = 0.05,
                    dtype: str = "float32", progress: bool = False, embed_std: Optional[float] = None,
                    **processor_overrides) -> Path:
    from .tiny_tokenizer import write_processor_files
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = write_processor_files(str(out_dir), family, **processor_overrides)
    text = dict(text, vocab_size=text.get("vocab_size") or _round_up(ids["vocab_size"], 64))
    config = hf_config(family, text, vision, ids)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    generation = dict(bos_token_id=ids["bos_token_id"], pad_token_id=ids["bos_token_id"],
                      eos_token_id=[ids["eos_token_id"], ids["bos_token_id"]])
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2))
    write_weights(out_dir, hf_tensor_shapes(config), seed, std, dtype, progress=progress, embed_std=embed_std)
    return out_dir


def _round_up(n: int, k: int) -> int:
    return (n + k - 1) // k * k


def make_tiny_checkpoint(out_dir, family: str = "qwen2_5_vl", seed: int = 0, text: Optional[dict] = None,
                         vision: Optional[dict] = None, std: float = 0.05, embed_std: Optional[float] = None,
                         dtype: str = "float32", **processor_overrides) -> Path:
    """A tiny random model directory of `family` that both we and HF transformers load; its tensors
    in `dtype` ("bfloat16": as Qwen's checkpoints are published)."""
    if family not in ARCHITECTURES:
        raise ValueError(f"family must be one of {sorted(ARCHITECTURES)}, got {family!r}")
    text = {**TINY_TEXT, "tie_word_embeddings": family == "qwen2_vl", **(text or {})}
    return write_model_dir(out_dir, family, text, dict(TINY_VISION[family], **(vision or {})), seed, std,
                           dtype=dtype, embed_std=embed_std, **processor_overrides)


def make_preset_checkpoint(out_dir, preset: str, num_layers: Optional[int] = None,
                           vision_depth: Optional[int] = None, dtype: str = "bfloat16", seed: int = 0,
                           progress: bool = True) -> Path:
    """A real-size random checkpoint of a published model (optionally with fewer layers)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    family, text, vision = PRESETS[preset]
    text, vision = dict(text), dict(vision)
    if num_layers:
        text["num_hidden_layers"] = num_layers
    if vision_depth:
        vision["depth"] = vision_depth
        if "fullatt_block_indexes" in vision:
            vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < vision_depth]
    # The tokenizer is the tiny one (its special ids sit near 1000); the vocabulary keeps its real size.
    return write_model_dir(out_dir, family, text, vision, seed, std=0.02, dtype=dtype, progress=progress)
