"""safetensors checkpoint -> model parameters.

Names follow the published HF checkpoints. The few differences from our modules:

| checkpoint name                               | parameter                                     |
|-----------------------------------------------|-----------------------------------------------|
| ...self_attn.{q,k,v}_proj.{weight,bias}       | ...self_attn.qkv_proj.* (rows q, k, v)        |
| ...mlp.{gate,up}_proj.{weight,bias}           | ...mlp.gate_up_proj.* (rows gate, up)         |
| model.language_model.* (transformers >= 4.52) | model.*                                       |
| model.visual.* (transformers >= 4.52)         | visual.*                                      |
| lm_head.weight with tie_word_embeddings       | (ignored: logits use embed_tokens)            |
| model.embed_tokens.weight, tied, quantized head | lm_head.weight (embed_tokens reads its rows) |
"""
import json
from pathlib import Path
from functools import partial
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import paddle
from safetensors import safe_open
from tqdm import tqdm

from .config import AUTO, FLOAT_DTYPES
from .ops.convert import bf16_to_float32

PREFIX_RENAMES = (("model.language_model.", "model."), ("model.visual.", "visual."))
PartOf = Callable[[str], Optional[Tuple[int, int, int]]]
PACKED = {"q_proj": ("qkv_proj", 0, 3), "k_proj": ("qkv_proj", 1, 3), "v_proj": ("qkv_proj", 2, 3),
          "gate_proj": ("gate_up_proj", 0, 2), "up_proj": ("gate_up_proj", 1, 2)}


def checkpoint_files(model_dir) -> List[Path]:
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [model_dir / s for s in shards]
    else:
        files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {model_dir}")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"shards listed in the index are missing: {missing}")
    return files


def iter_checkpoint(model_dir, progress: bool = False, part_of: Optional[PartOf] = None
                    ) -> Iterator[Tuple[str, paddle.Tensor]]:
    """(name, tensor) for every tensor of every shard, one shard open at a time. part_of(name):
    (axis, start, stop) to read only that slice of a 2-D or 1-D tensor (a tensor-parallel rank's
    share, layers/parallel.py), or None to read it whole."""
    files = checkpoint_files(model_dir)
    total = sum(len(_keys(f)) for f in files)
    with tqdm(total=total, desc="loading weights", unit="tensor", disable=not progress) as bar:
        for path in files:
            with safe_open(str(path), framework="paddle") as f:
                for name in f.keys():
                    part = part_of(name) if part_of else None
                    yield name, f.get_tensor(name) if part is None else _read_part(f, name, *part)
                    bar.update(1)


def _read_part(f, name: str, axis: int, start: int, stop: int) -> paddle.Tensor:
    tensor = f.get_slice(name)
    return tensor[start:stop] if axis == 0 else tensor[:, start:stop]


def resolve_dtype(model_dir, dtype: str = AUTO) -> str:
    """The math a checkpoint computes in. "auto": "bfloat16" when every float matrix is stored in
    bf16 (as Qwen publishes them) and this CPU computes bf16 natively (AVX512-BF16 or AMX, with our
    compiled ops), else "float32"; HF and vLLM resolve "auto" from the checkpoint too. "float32"
    and "bfloat16" are returned as they are."""
    if dtype not in FLOAT_DTYPES + (AUTO,):
        raise ValueError(f"dtype {dtype!r} is not supported; use one of {FLOAT_DTYPES + (AUTO,)}")
    if dtype != AUTO:
        return dtype
    from .ops._build import build_info
    return "bfloat16" if build_info()["bf16"] and matrix_dtypes(model_dir) == {"BF16"} else "float32"


def matrix_dtypes(model_dir) -> Set[str]:
    """The safetensors dtypes ("BF16", "F32", ...) of the checkpoint's float matrices: the 2-D float
    tensors a linear weight or an embedding table loads from (weight-only `scales` left out: they
    stay float32). Read from the shards' headers only (8 bytes of header length, then JSON)."""
    found = set()
    for path in checkpoint_files(model_dir):
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        found.update(v["dtype"] for name, v in header.items()
                     if name != "__metadata__" and v["dtype"].startswith(("F", "BF")) and len(v["shape"]) == 2
                     and not name.endswith("scales"))
    return found


def _keys(path: Path) -> list:
    with safe_open(str(path), framework="paddle") as f:
        return list(f.keys())


def target_of(name: str) -> Tuple[str, int, int]:
    """Checkpoint name -> (parameter name, part index, number of parts)."""
    for old, new in PREFIX_RENAMES:
        if name.startswith(old):
            name = new + name[len(old):]
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in PACKED:
            fused, index, count = PACKED[part]
            return ".".join(parts[:i] + [fused] + parts[i + 1:]), index, count
    return name, 0, 1


def load_weights(model: paddle.nn.Layer, model_dir, progress: bool = True,
                 part_of: Optional[PartOf] = None) -> Set[str]:
    """Copy every checkpoint tensor into the model; returns the target names loaded.

    Float tensors arrive as float32, or bfloat16 for a bfloat16 parameter (load_model(dtype=...));
    a quantized layer quantizes its weight on arrival, so only one float tensor is held at a time. A checkpoint tensor with no target, a target with no tensor, or
    a shape mismatch raises, naming the tensor. part_of: see iter_checkpoint.
    """
    targets = loading_targets(model)
    bf16 = {n for n, p in model.named_parameters() if p.dtype == paddle.bfloat16}
    renames = _tied_renames(model)
    pending: Dict[str, list] = {}
    loaded: Set[str] = set()
    for name, tensor in iter_checkpoint(model_dir, progress, part_of):
        if name == "lm_head.weight" and model.config.text.tie_word_embeddings:
            continue
        target, index, count = target_of(name)
        target = renames.get(target, target)
        if target not in targets:
            raise KeyError(f"checkpoint tensor {name!r} has no matching parameter in "
                           f"{type(model).__name__} (is the config.json architecture right?)")
        parts = pending.setdefault(target, [None] * count)
        parts[index] = tensor
        if all(p is not None for p in parts):
            targets[target](_joined(parts, target in bf16), name)
            loaded.add(target)
            del pending[target]
    _check_complete(model, loaded, pending)
    return loaded


_FLOATS = (paddle.float16, paddle.bfloat16, paddle.float32, paddle.float64)


def _joined(parts, bf16: bool):
    """The checkpoint parts of one parameter joined along axis 0, in the parameter's dtype. bf16
    parts of a float32 parameter are cast and joined in one threaded pass; otherwise they are
    joined in the checkpoint's dtype (bf16 in the published ones: half the bytes), then cast once."""
    if not bf16 and all(p.dtype == paddle.bfloat16 for p in parts):
        return bf16_to_float32(parts)
    if len({p.dtype for p in parts}) > 1:
        parts = [_as_param_dtype(p, bf16) for p in parts]
    return _as_param_dtype(paddle.concat(parts, axis=0) if len(parts) > 1 else parts[0], bf16)


def _as_param_dtype(t, bf16: bool):
    """A float checkpoint tensor in its parameter's dtype: bfloat16 for a bf16 parameter, else float32
    (bf16 -> float32 on the threaded cast); other dtypes (quantized buffers) unchanged."""
    if t.dtype not in _FLOATS:
        return t
    if not bf16 and t.dtype == paddle.bfloat16:
        return bf16_to_float32(t)
    return t.astype("bfloat16" if bf16 else "float32")


def loading_targets(model) -> Dict[str, Callable]:
    """Target name -> setter(value, checkpoint name), for parameters, buffers and quantized weights."""
    from .layers.linear import WeightOnlyLinear
    targets = {}
    for prefix, layer in model.named_sublayers(include_self=True):
        p = prefix + "." if prefix else ""
        for name, tensor in list(layer.named_parameters(include_sublayers=False)) + \
                [(n, b) for n, b in layer.named_buffers(include_sublayers=False) if n in ("qweight", "scales")]:
            targets[p + name] = partial(_assign, layer, name)
        if isinstance(layer, WeightOnlyLinear):
            targets[p + "weight"] = partial(_quantize_into, layer)
    return targets


def _tied_renames(model) -> Dict[str, str]:
    """Tied embeddings with a quantized lm_head: the one table is loaded (and quantized) as the
    lm_head, and the embedding reads its rows from there (layers/embedding.py)."""
    if model.config.text.tie_word_embeddings and hasattr(model, "lm_head"):
        return {"model.embed_tokens.weight": "lm_head.weight"}
    return {}


def _assign(layer, attr, value, name):
    current = getattr(layer, attr)
    if list(value.shape) != list(current.shape):
        raise ValueError(f"checkpoint tensor {name!r} has shape {list(value.shape)}, "
                         f"the model expects {list(current.shape)} (config.json does not match the weights)")
    if value.dtype != current.dtype:
        raise ValueError(f"checkpoint tensor {name!r} is {value.dtype}, the model expects {current.dtype} "
                         "(was the quantized checkpoint saved with another quant_type?)")
    if isinstance(current, paddle.base.framework.EagerParamBase):
        if current._is_initialized():
            current.set_value(value)
        else:                                     # lazy (build_model for loading): take the buffer, no copy
            value._share_underline_tensor_to(current)
    else:
        setattr(layer, attr, value)


def _quantize_into(layer, value, name):
    try:
        layer.load_weight(value)
    except ValueError as e:
        raise ValueError(f"checkpoint tensor {name!r}: {e}") from None


def _check_complete(model, loaded, pending):
    """Every parameter loaded; a quantized layer needs its float weight or its qweight + scales."""
    from .layers.linear import WeightOnlyLinear
    if pending:
        raise KeyError(f"checkpoint has only some parts of fused tensors: {sorted(pending)}")
    missing = [n for n, _ in model.named_parameters() if n not in loaded]
    for prefix, layer in model.named_sublayers():
        if isinstance(layer, WeightOnlyLinear):
            p = prefix + "."
            if p + "weight" not in loaded and not {p + "qweight", p + "scales"} <= loaded:
                missing.append(p + "weight")
    if missing:
        raise KeyError(f"checkpoint lacks {len(missing)} tensors the model needs, e.g. {sorted(missing)[:5]}")
