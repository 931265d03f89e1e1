"""Weight-only quantization options (`quant_type`) and quantized checkpoints."""
from dataclasses import dataclass, replace
from typing import Optional

QUANT_TYPES = ("weight_only_int8", "weight_only_int4")
CONFIG_KEY = "paddle_qwenvl_quantization"     # in config.json of a saved quantized checkpoint
# The lm_head's scheme under each quant_type: int8 under int4 too, as llama.cpp keeps its output
# matrix at Q6_K / Q8_0 under Q4_0 (docs/quantization.md, the lm_head).
LM_HEAD_QUANT_TYPE = {"weight_only_int8": "weight_only_int8", "weight_only_int4": "weight_only_int8"}


@dataclass(frozen=True)
class QuantConfig:
    """Which linear layers hold int8/int4 weights. The decoder's are always quantized, the lm_head
    (and a tied embedding, the same table) unless quantize_lm_head=False, in lm_head_quant_type
    (default LM_HEAD_QUANT_TYPE[quant_type]); the vision tower's only when asked. Norms stay float."""
    quant_type: str
    group_size: int = 128            # int4 only: weights per scale along in_features
    quantize_vision: bool = False
    quantize_lm_head: bool = True
    lm_head_quant_type: Optional[str] = None     # None: the default for quant_type (or no head quantized)

    def __post_init__(self):
        if self.quant_type not in QUANT_TYPES:
            raise ValueError(f"quant_type {self.quant_type!r} is not supported; use one of {QUANT_TYPES} or None")
        if self.quant_type == "weight_only_int4" and self.group_size not in (64, 128):
            raise ValueError(f"int4 group_size must be 64 or 128, got {self.group_size}")
        head = (self.lm_head_quant_type or LM_HEAD_QUANT_TYPE[self.quant_type]) if self.quantize_lm_head else None
        if head is not None and head not in QUANT_TYPES:
            raise ValueError(f"lm_head_quant_type {head!r} is not supported; use one of {QUANT_TYPES} or None")
        object.__setattr__(self, "lm_head_quant_type", head)     # resolved, so equal settings compare equal

    def describe(self) -> str:
        """e.g. 'weight_only_int4 g128 +vision lm_head int8' or '... float lm_head', for reports."""
        group = f" g{self.group_size}" if self.quant_type == "weight_only_int4" else ""
        head = self.lm_head_quant_type.removeprefix("weight_only_") if self.quantize_lm_head else None
        return (self.quant_type + group + (" +vision" if self.quantize_vision else "")
                + (f" lm_head {head}" if head else " float lm_head"))

    def to_dict(self) -> dict:
        return dict(quant_type=self.quant_type, group_size=self.group_size, quantize_vision=self.quantize_vision,
                    quantize_lm_head=self.quantize_lm_head, lm_head_quant_type=self.lm_head_quant_type)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> Optional["QuantConfig"]:
        """A saved to_dict(). One saved before lm_head_quant_type existed held the head, when
        quantized, in the decoder's scheme."""
        if not d:
            return None
        if "lm_head_quant_type" not in d:
            d = dict(d, lm_head_quant_type=d["quant_type"] if d.get("quantize_lm_head") else None)
        return cls(**d)

    def for_vision(self) -> Optional["QuantConfig"]:
        return self if self.quantize_vision else None

    def for_lm_head(self) -> Optional["QuantConfig"]:
        """The lm_head's own settings (its quant_type is lm_head_quant_type), or None: float."""
        return replace(self, quant_type=self.lm_head_quant_type) if self.quantize_lm_head else None


def make_quant_config(quant_type: Optional[str], group_size: int = 128, quantize_vision: bool = False,
                      quantize_lm_head: bool = True, lm_head_quant_type: Optional[str] = None
                      ) -> Optional[QuantConfig]:
    """None without a quant_type (quantize_lm_head then has nothing to follow and is ignored)."""
    if quant_type in (None, "", "none", "None"):
        if quantize_vision:
            raise ValueError(f"quantize_vision needs a quant_type: give one of {QUANT_TYPES}")
        return None
    return QuantConfig(quant_type, group_size, quantize_vision, quantize_lm_head, lm_head_quant_type)


def saved_quant_config(config) -> Optional[QuantConfig]:
    """The QuantConfig a checkpoint was saved with (`save_quantized`), else None."""
    return QuantConfig.from_dict(config.raw.get(CONFIG_KEY))
