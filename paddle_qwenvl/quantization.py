"""Weight-only quantization options (`quant_type`) and quantized checkpoints."""
from dataclasses import dataclass
from typing import Optional

QUANT_TYPES = ("weight_only_int8", "weight_only_int4")
CONFIG_KEY = "paddle_qwenvl_quantization"     # in config.json of a saved quantized checkpoint


@dataclass(frozen=True)
class QuantConfig:
    """Which linear layers hold int8/int4 weights. The decoder's are always quantized; the vision
    tower's and the lm_head only when asked. Embeddings and norms stay float32."""
    quant_type: str
    group_size: int = 128            # int4 only: weights per scale along in_features
    quantize_vision: bool = False
    quantize_lm_head: bool = False

    def __post_init__(self):
        if self.quant_type not in QUANT_TYPES:
            raise ValueError(f"quant_type {self.quant_type!r} is not supported; use one of {QUANT_TYPES} or None")
        if self.quant_type == "weight_only_int4" and self.group_size not in (64, 128):
            raise ValueError(f"int4 group_size must be 64 or 128, got {self.group_size}")

    def describe(self) -> str:
        """e.g. 'weight_only_int4 g128 +vision +lm_head', for reports."""
        group = f" g{self.group_size}" if self.quant_type == "weight_only_int4" else ""
        return (self.quant_type + group + (" +vision" if self.quantize_vision else "")
                + (" +lm_head" if self.quantize_lm_head else ""))

    def to_dict(self) -> dict:
        return dict(quant_type=self.quant_type, group_size=self.group_size,
                    quantize_vision=self.quantize_vision, quantize_lm_head=self.quantize_lm_head)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> Optional["QuantConfig"]:
        return cls(**d) if d else None

    def for_vision(self) -> Optional["QuantConfig"]:
        return self if self.quantize_vision else None

    def for_lm_head(self) -> Optional["QuantConfig"]:
        return self if self.quantize_lm_head else None


def make_quant_config(quant_type: Optional[str], group_size: int = 128, quantize_vision: bool = False,
                      quantize_lm_head: bool = False) -> Optional[QuantConfig]:
    if quant_type in (None, "", "none", "None"):
        if quantize_vision or quantize_lm_head:
            raise ValueError("quantize_vision / quantize_lm_head need a quant_type")
        return None
    return QuantConfig(quant_type, group_size, quantize_vision, quantize_lm_head)


def saved_quant_config(config) -> Optional[QuantConfig]:
    """The QuantConfig a checkpoint was saved with (`save_quantized`), else None."""
    return QuantConfig.from_dict(config.raw.get(CONFIG_KEY))
