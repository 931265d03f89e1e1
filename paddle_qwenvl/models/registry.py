"""Model class by `architectures[0]` of config.json."""
import contextlib

import paddle
import paddle.nn as nn

from ..config import AUTO, FLOAT_DTYPES, ModelConfig, Precision
from ..layers.parallel import DecoderSplit
from .qwen2_5_vl import Qwen2_5_VLForConditionalGeneration
from .qwen2_vl import Qwen2VLForConditionalGeneration
from .tensor_parallel import split_decoder

MODEL_CLASSES = {
    "Qwen2VLForConditionalGeneration": Qwen2VLForConditionalGeneration,        # Qwen2-VL, QVQ
    "Qwen2_5_VLForConditionalGeneration": Qwen2_5_VLForConditionalGeneration,  # Qwen2.5-VL
}


def model_class(config: ModelConfig):
    if config.architecture not in MODEL_CLASSES:
        raise ValueError(f"unsupported architecture {config.architecture!r} in config.json; "
                         f"supported: {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[config.architecture]


def build_model(config: ModelConfig, random_init: bool = True, quant=None, dtype: str = "float32",
                weight_dtype: str = None, tp=None):
    """The model in eval mode: weights uniform in +-0.03 (norms 1), or unallocated (lazy) to be
    loaded over.

    quant: a QuantConfig; its linear layers then hold int8/int4 buffers, never float weights.
    dtype: the model's math, "float32" or "bfloat16" (see load_model). weight_dtype: of the float
    linear weights and embedding tables (default: dtype); "bfloat16" under a float32 model holds a
    bf16 checkpoint's weights as they are, its linears exact in fp32.
    tp: a distributed.TensorParallel; the decoder then holds this rank's share (tensor_parallel.py).
    """
    init = nn.initializer.Uniform(-0.03, 0.03) if random_init else nn.initializer.Constant(0.0)
    nn.initializer.set_global_initializer(init, nn.initializer.Constant(0.0))
    try:
        # to be loaded over: parameters stay unallocated until their checkpoint tensor arrives
        # (filling a 2B model with zeros first took 5 of its 13 s of loading)
        lazy = contextlib.nullcontext() if random_init else paddle.LazyGuard()
        with lazy:
            model = model_class(config)(config, quant, Precision(dtype, weight_dtype))
            if tp is not None:
                split_decoder(model, tp)
    finally:
        nn.initializer.set_global_initializer(None)
    model.eval()
    return model


DTYPES = FLOAT_DTYPES + (AUTO,)


def load_model(model_dir, quant=None, progress: bool = True, dtype: str = "float32", keep_bf16: bool = True,
               tp=None):
    """Build the model for `model_dir` and load its safetensors weights.

    quant: a QuantConfig to quantize while loading. A directory written by `save_quantized`
    carries its own and needs none (a different one is an error).
    tp: a distributed.TensorParallel: this rank reads and quantizes only its share of the decoder.
    dtype: "float32" computes in fp32. When every float matrix of the checkpoint is bf16 (as
    published; `weights.matrix_dtypes`) and keep_bf16, the linear weights and embedding tables
    stay in bf16, widened exactly as they are used: the same fp32 math as widening them on load,
    with half the memory and half the bytes a decode step reads. keep_bf16=False widens on load.
    "bfloat16" keeps those weights in bfloat16 and computes in bf16 where the CPU has it (linears
    round x to bf16 and sum in fp32, long prompts attend in bf16, the KV cache holds bf16); norms
    stay float32. "auto": see weights.resolve_dtype.
    """
    from ..weights import resolve_dtype
    dtype = resolve_dtype(model_dir, dtype)
    from ..quantization import saved_quant_config
    from ..weights import load_weights, matrix_dtypes
    config = ModelConfig.from_dir(model_dir)
    saved = saved_quant_config(config)
    if saved and quant and quant != saved:
        raise ValueError(f"{model_dir} holds weights already quantized as {saved.to_dict()}; "
                         f"load it without quant_type (or --quant-type) or with the same settings "
                         f"(got {quant.to_dict()})")
    weight_dtype = dtype
    if dtype == "float32" and keep_bf16 and matrix_dtypes(model_dir) == {"BF16"}:
        weight_dtype = "bfloat16"
    if saved and tp is not None:
        raise ValueError(f"{model_dir} holds weights already quantized; tensor parallelism splits float "
                         "checkpoints only: load the float checkpoint with quant_type instead")
    model = build_model(config, random_init=False, quant=saved or quant, dtype=dtype, weight_dtype=weight_dtype,
                        tp=tp)
    part_of = DecoderSplit.of(config.text, tp).checkpoint_slice if tp is not None else None
    load_weights(model, model_dir, progress=progress, part_of=part_of)
    return model
