"""Sharded safetensors writer with an index, as published checkpoints are laid out, and
`save_quantized` (a quantized model as a checkpoint that loads without re-quantizing)."""
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tqdm import tqdm

from ..quantization import CONFIG_KEY


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even."""
    bits = x.astype(np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


class ShardWriter:
    """Collects tensors and writes model-0000i-of-0000n.safetensors files of about `shard_bytes`."""

    def __init__(self, out_dir: Path, dtype: str, shard_bytes: int, progress: bool, total: int):
        if dtype not in ("float32", "bfloat16", "keep"):
            raise ValueError(f"dtype must be float32, bfloat16 or keep, got {dtype!r}")
        self.out_dir, self.dtype, self.shard_bytes = Path(out_dir), dtype, shard_bytes
        self.shards, self.current, self.size = [], {}, 0
        self.bar = tqdm(total=total, desc="writing weights", unit="tensor", disable=not progress)

    def add(self, name: str, value):
        """value: a numpy array (float32 / bfloat16: written in that dtype), or with "keep" a numpy
        array or a paddle tensor written as it is (a bfloat16 one as BF16)."""
        self.current[name] = to_bfloat16_bits(value) if self.dtype == "bfloat16" else value
        self.size += int(np.prod(value.shape)) * (2 if self.dtype == "bfloat16" else _itemsize(value))
        self.bar.update(1)
        if self.size >= self.shard_bytes:
            self._flush()

    def _flush(self):
        if self.current:
            path = self.out_dir / f"shard-{len(self.shards):05d}.tmp"
            _save(self.current, path, self.dtype)
            self.shards.append((path, list(self.current)))
            self.current, self.size = {}, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._flush()
        self.bar.close()
        if exc[0] is None:
            self._finish()

    def _finish(self):
        n = len(self.shards)
        if n == 1:
            self.shards[0][0].rename(self.out_dir / "model.safetensors")
            return
        weight_map = {}
        for i, (path, names) in enumerate(self.shards):
            final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            path.rename(self.out_dir / final)
            weight_map.update({name: final for name in names})
        index = {"metadata": {}, "weight_map": weight_map}
        (self.out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _itemsize(value) -> int:
    return value.itemsize if isinstance(value, np.ndarray) else value.element_size()


def _save(tensors: dict, path: Path, dtype: str):
    if dtype != "bfloat16" and all(isinstance(v, np.ndarray) for v in tensors.values()):
        save_file(tensors, str(path), metadata={"format": "pt"})
        return
    import paddle
    from safetensors.paddle import save_file as save_paddle
    as_paddle = (lambda v: paddle.to_tensor(v).view(paddle.bfloat16)) if dtype == "bfloat16" else \
        (lambda v: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v)
    save_paddle({k: as_paddle(v) for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def save_quantized(model, source_dir, out_dir, shard_bytes: int = 2 << 30) -> Path:
    """Write a quantized model as a checkpoint that loads without re-quantizing.

    Tensors keep our names (fused qkv_proj / gate_up_proj, qweight + scales); the tokenizer and
    processor files are copied from `source_dir`.
    """
    if model.quant is None:
        raise ValueError("the model is not quantized: load it with quant_type first")
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in source_dir.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "model.safetensors.index.json":
            shutil.copy2(f, out_dir / f.name)
    config = dict(model.config.raw, **{CONFIG_KEY: model.quant.to_dict()})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    state = model.state_dict()
    with ShardWriter(out_dir, "keep", shard_bytes, progress=False, total=len(state)) as writer:
        for name, tensor in state.items():
            writer.add(name, tensor)                # bf16 ones (kept from the checkpoint) stay bf16
    return out_dir
