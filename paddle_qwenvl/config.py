"""Model configuration read once from a checkpoint's config.json.

Published Qwen2-VL / Qwen2.5-VL configs keep the text fields at the top level with a nested
`vision_config`; configs saved by newer transformers nest them under `text_config`. Both are read.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple


FLOAT_DTYPES = ("float32", "bfloat16")
AUTO = "auto"          # a dtype choice: what the checkpoint and the CPU suit (weights.resolve_dtype)


@dataclass(frozen=True)
class Precision:
    """How a model computes and holds its float weights, given to every layer at construction.

    compute: the model's math. "float32": fp32 math; bf16-held weights are widened exactly as they
    are used. "bfloat16": x is rounded to bf16 for the linears (sums in fp32) and attention runs in
    bf16 where it applies (long vision blocks, fresh prompts).
    weights: the dtype of the float linear weights and embedding tables (default: compute); norms
    and biases stay float32. "bfloat16" under float32 math holds a bf16 checkpoint as it is.
    """
    compute: str = "float32"
    weights: Optional[str] = None

    def __post_init__(self):
        if self.weights is None:
            object.__setattr__(self, "weights", self.compute)
        for name in ("compute", "weights"):
            if getattr(self, name) not in FLOAT_DTYPES:
                raise ValueError(f"Precision {name}={getattr(self, name)!r}: use one of {FLOAT_DTYPES}")


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    mrope_section: Tuple[int, ...] = (16, 24, 24)
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads {self.num_key_value_heads}")
        if 2 * sum(self.mrope_section) != self.head_dim:
            raise ValueError(f"mrope_section {list(self.mrope_section)} must sum to head_dim/2 = "
                             f"{self.head_dim // 2}")


@dataclass(frozen=True)
class VisionConfig:
    depth: int
    hidden_size: int            # ViT width (Qwen2-VL calls it embed_dim)
    num_heads: int
    intermediate_size: int      # MLP width (Qwen2-VL: embed_dim * mlp_ratio)
    out_hidden_size: int        # merger output = text hidden size
    hidden_act: str
    in_channels: int = 3
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    # Qwen2.5-VL only
    window_size: int = 0
    fullatt_block_indexes: Tuple[int, ...] = ()
    tokens_per_second: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        return self.in_channels * self.temporal_patch_size * self.patch_size ** 2


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    text: TextConfig
    vision: VisionConfig
    image_token_id: int
    video_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int
    eos_token_ids: Tuple[int, ...] = ()
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dir(cls, model_dir) -> "ModelConfig":
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: pass a Qwen2-VL / Qwen2.5-VL model directory "
                                    "(with config.json and *.safetensors)")
        return cls.from_dict(json.loads(path.read_text()), _generation_eos(Path(model_dir)))

    @classmethod
    def from_dict(cls, raw: dict, eos_token_ids: Optional[List[int]] = None) -> "ModelConfig":
        architecture = _architecture(raw)
        text_raw = raw.get("text_config") or raw
        text = _text_config(text_raw)
        eos = eos_token_ids or _as_list(raw.get("eos_token_id")) or _as_list(text_raw.get("eos_token_id"))
        ids = {name: raw[name] if raw.get(name) is not None else default
               for name, default in SPECIAL_TOKEN_DEFAULTS.items()}
        return cls(architecture=architecture, text=text,
                   vision=_vision_config(raw["vision_config"], architecture, text.hidden_size),
                   eos_token_ids=tuple(eos), raw=raw, **ids)


# By model_type, for a config.json without a top-level `architectures` (transformers writes one so
# for a model built from a config); HF loads such a file by model_type too.
ARCHITECTURE_BY_MODEL_TYPE = {"qwen2_vl": "Qwen2VLForConditionalGeneration",
                              "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}
# What HF's Qwen2VLConfig / Qwen2_5_VLConfig take when config.json leaves an id out (Qwen's vocabulary).
SPECIAL_TOKEN_DEFAULTS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                              vision_end_token_id=151653)


def _architecture(raw: dict) -> str:
    archs = raw.get("architectures") or []
    if archs:
        return archs[0]
    model_type = raw.get("model_type")
    if model_type in ARCHITECTURE_BY_MODEL_TYPE:
        return ARCHITECTURE_BY_MODEL_TYPE[model_type]
    raise ValueError(f"config.json has no 'architectures' entry and model_type {model_type!r} is not one of "
                     f"{sorted(ARCHITECTURE_BY_MODEL_TYPE)}: is this a Qwen2-VL / Qwen2.5-VL checkpoint?")


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _generation_eos(model_dir: Path) -> list:
    path = model_dir / "generation_config.json"
    return _as_list(json.loads(path.read_text()).get("eos_token_id")) if path.is_file() else []


def _text_config(d: dict) -> TextConfig:
    rope = d.get("rope_scaling") or {}
    return TextConfig(
        vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
        intermediate_size=d["intermediate_size"], num_hidden_layers=d["num_hidden_layers"],
        num_attention_heads=d["num_attention_heads"],
        num_key_value_heads=d.get("num_key_value_heads", d["num_attention_heads"]),
        rms_norm_eps=d.get("rms_norm_eps", 1e-6), rope_theta=d.get("rope_theta", 1000000.0),
        mrope_section=tuple(rope.get("mrope_section", (16, 24, 24))),
        max_position_embeddings=d.get("max_position_embeddings", 32768),
        tie_word_embeddings=d.get("tie_word_embeddings", False),
        hidden_act=d.get("hidden_act", "silu"))


def _vision_config(d: dict, architecture: str, text_hidden: int) -> VisionConfig:
    common = dict(depth=d["depth"], num_heads=d["num_heads"],
                  in_channels=d.get("in_channels", d.get("in_chans", 3)),
                  patch_size=d.get("patch_size", 14),
                  temporal_patch_size=d.get("temporal_patch_size", 2),
                  spatial_merge_size=d.get("spatial_merge_size", 2))
    if architecture == "Qwen2_5_VLForConditionalGeneration":
        return VisionConfig(hidden_size=d["hidden_size"], intermediate_size=d["intermediate_size"],
                            out_hidden_size=d.get("out_hidden_size", text_hidden),
                            hidden_act=d.get("hidden_act", "silu"),
                            window_size=d.get("window_size", 112),
                            fullatt_block_indexes=tuple(d.get("fullatt_block_indexes", ())),
                            tokens_per_second=d.get("tokens_per_second", 2), **common)
    embed_dim = d.get("embed_dim", 1280)
    return VisionConfig(hidden_size=embed_dim, intermediate_size=int(embed_dim * d.get("mlp_ratio", 4)),
                        out_hidden_size=d.get("hidden_size", text_hidden),
                        hidden_act=d.get("hidden_act", "quick_gelu"), **common)
