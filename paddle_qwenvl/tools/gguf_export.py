"""The language model of a Qwen2-VL / Qwen2.5-VL checkpoint as a llama.cpp GGUF ("qwen2"
architecture, BF16 or F32 weights as stored, norms and biases in F32), for side-by-side benchmarks.

Text-only token ids run the same on both: M-RoPE with the same position on its three axes is the
plain RoPE of "qwen2". The GGUF carries a stand-in tokenizer of the checkpoint's vocab_size ("t0",
"t1", ...): enough for llama.cpp to load the model and take token ids, not to tokenize text.

Names, HF -> GGUF (the `model.` or `model.language_model.` prefix removed; `visual.*` skipped):
| HF                                           | GGUF                       |
| embed_tokens / norm / lm_head (top level)    | token_embd / output_norm / output |
| layers.N.input_layernorm                     | blk.N.attn_norm            |
| layers.N.post_attention_layernorm            | blk.N.ffn_norm             |
| layers.N.self_attn.{q,k,v}_proj (+ bias)     | blk.N.attn_{q,k,v}         |
| layers.N.self_attn.o_proj                    | blk.N.attn_output          |
| layers.N.mlp.{gate,up,down}_proj             | blk.N.ffn_{gate,up,down}   |
"""
import json
import os
import re
import struct
import sys
from pathlib import Path

import numpy as np

_RULES = [
    (r"embed_tokens\.weight", "token_embd.weight"),
    (r"norm\.weight", "output_norm.weight"),
    (r"lm_head\.weight", "output.weight"),
    (r"layers\.(\d+)\.input_layernorm\.weight", r"blk.\1.attn_norm.weight"),
    (r"layers\.(\d+)\.post_attention_layernorm\.weight", r"blk.\1.ffn_norm.weight"),
    (r"layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", r"blk.\1.attn_\2.\3"),
    (r"layers\.(\d+)\.self_attn\.o_proj\.weight", r"blk.\1.attn_output.weight"),
    (r"layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight", r"blk.\1.ffn_\2.weight"),
]
_PREFIXES = ("model.language_model.", "model.", "")
_NUMPY_DTYPES = {"BF16": np.uint16, "F32": np.float32, "F16": np.float16}
_FILE_TYPES = {"BF16": 32, "F32": 0, "F16": 1}        # gguf.LlamaFileType by the embedding's dtype


def gguf_name(hf_name: str):
    """The GGUF tensor name of an HF language-model tensor; None for vision tensors."""
    if hf_name.startswith(("visual.", "model.visual.")):
        return None
    for prefix in _PREFIXES:
        if hf_name.startswith(prefix):
            for pattern, target in _RULES:
                if re.fullmatch(pattern, hf_name[len(prefix):]):
                    return re.sub(pattern, target, hf_name[len(prefix):])
    raise ValueError(f"{hf_name}: not a Qwen2 language-model tensor this GGUF writer knows")


def safetensors_arrays(model_dir) -> dict:
    """{name: (safetensors dtype, read-only numpy view of the file)}: BF16 as uint16 bit patterns."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
        else ["model.safetensors"]
    arrays = {}
    for file in files:
        path = model_dir / file
        with open(path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(size))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] not in _NUMPY_DTYPES:
                raise ValueError(f"{name} in {path}: dtype {info['dtype']} is not BF16, F16 or F32")
            start, end = info["data_offsets"]
            arrays[name] = (info["dtype"], np.memmap(path, dtype=_NUMPY_DTYPES[info["dtype"]], mode="r",
                                                     offset=8 + size + start, shape=tuple(info["shape"])))
    return arrays


def _embedding_name(arrays: dict) -> str:
    return next(name for name in arrays if gguf_name(name) == "token_embd.weight")


def _float32(dtype: str, array) -> np.ndarray:
    if dtype == "BF16":
        return (np.asarray(array).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(array, dtype=np.float32)


def _add_tokenizer(writer, text_config: dict) -> None:
    """A stand-in BPE vocabulary of vocab_size tokens, bos/eos from the config marked as control."""
    import gguf
    vocab = text_config["vocab_size"]
    specials = {text_config.get("bos_token_id"), text_config.get("eos_token_id")} - {None}
    types = [gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL for i in range(vocab)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list([f"t{i}" for i in range(vocab)])
    writer.add_token_types(types)
    writer.add_token_merges(["t 0"])
    if text_config.get("bos_token_id") is not None:
        writer.add_bos_token_id(text_config["bos_token_id"])
    if text_config.get("eos_token_id") is not None:
        writer.add_eos_token_id(text_config["eos_token_id"])
    writer.add_add_bos_token(False)


def _add_hparams(writer, c: dict, file_type) -> None:
    writer.add_context_length(c.get("max_position_embeddings", 32768))
    writer.add_embedding_length(c["hidden_size"])
    writer.add_block_count(c["num_hidden_layers"])
    writer.add_feed_forward_length(c["intermediate_size"])
    writer.add_head_count(c["num_attention_heads"])
    writer.add_head_count_kv(c.get("num_key_value_heads", c["num_attention_heads"]))
    writer.add_rope_freq_base(c.get("rope_theta", 1e6))
    writer.add_layer_norm_rms_eps(c.get("rms_norm_eps", 1e-6))
    writer.add_file_type(file_type)


def output_matrix_type(path) -> str:
    """The GGUF type of the output matrix of the GGUF at `path` (token_embd's when tied): "Q6_K", ..."""
    import gguf
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    return types.get("output.weight", types["token_embd.weight"])


def text_config(model_dir) -> dict:
    """The language model's hyperparameters: top level (Qwen2-VL) or text_config (newer layouts)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return {**config, **config.get("text_config", {})}


def cached_gguf(model_dir, file_type: str, threads: int, root=None) -> Path:
    """The GGUF of `model_dir`'s language model in `file_type` (BF16, Q8_0, Q4_0), built on first
    use as root/<checkpoint name>.<file_type>.gguf (default root: the cache's bench/ folder, beside
    the benchmark checkpoints); the quantized ones from the BF16 one by llama.cpp. A file older than
    the checkpoint's config.json is rebuilt."""
    from .demo_model import cache_root
    model_dir = Path(model_dir)
    path = Path(root or cache_root() / "bench") / f"{model_dir.name}.{file_type}.gguf"
    if path.is_file() and path.stat().st_mtime >= (model_dir / "config.json").stat().st_mtime:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing {path} (once) ...", file=sys.stderr, flush=True)
    if file_type == "BF16":
        return write_qwen2_gguf(model_dir, path)
    from .llamacpp import quantize
    tmp = path.with_name(f"{path.name}.writing-{os.getpid()}")
    quantize(cached_gguf(model_dir, "BF16", threads, root), tmp, file_type, threads)
    os.replace(tmp, path)
    return path


def write_qwen2_gguf(model_dir, out_path, progress: bool = False) -> Path:
    """Write the language model of `model_dir` (safetensors) to `out_path` as a qwen2 GGUF.

    Written to a temporary file beside out_path and renamed into place, so an interrupted write is
    never used."""
    import gguf
    config = text_config(model_dir)
    out_path = Path(out_path)
    tmp = out_path.with_name(f"{out_path.name}.writing-{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), "qwen2")
    writer.add_name(Path(model_dir).name)
    arrays = safetensors_arrays(model_dir)
    _add_hparams(writer, config, _FILE_TYPES[arrays[_embedding_name(arrays)][0]])
    _add_tokenizer(writer, config)
    for name, (dtype, array) in sorted(arrays.items()):
        target = gguf_name(name)
        if target is None:
            continue
        if array.ndim == 1:                                     # norms, biases: F32, as convert_hf_to_gguf
            writer.add_tensor(target, _float32(dtype, array))
        else:
            writer.add_tensor(target, array, raw_dtype=gguf.GGMLQuantizationType.BF16 if dtype == "BF16" else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=progress)
    writer.close()
    os.replace(tmp, out_path)
    return out_path
