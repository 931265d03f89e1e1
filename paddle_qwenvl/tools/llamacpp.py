"""llama.cpp through llama-cpp-python's C API, for side-by-side benchmarks: quantize a GGUF as
llama-quantize does, load it with or without llama.cpp's extra weight buffers (its repacked and AMX
layouts), and time prompt processing and one-token decode steps on given token ids.

llama-cpp-python is an optional extra: `pip install 'paddle-qwenvl[llamacpp]'`."""
import ctypes
import time
from pathlib import Path

import numpy as np

INSTALL_HINT = ("llama-cpp-python is not installed. Install it with `pip install 'paddle-qwenvl[llamacpp]'` "
                "(or `pip install llama-cpp-python`): it compiles llama.cpp, several minutes on a few cores; "
                "CMAKE_ARGS=\"-DLLAVA_BUILD=OFF\" skips the multimodal library this benchmark does not use.")

# llama.cpp file types (llama_ftype) of the GGUFs compared; 1-d tensors stay F32 in each
FILE_TYPES = {"BF16": "LLAMA_FTYPE_MOSTLY_BF16", "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}
AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8")


def import_llama_cpp():
    """The llama_cpp module, or an ImportError saying how to install it."""
    try:
        import llama_cpp
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return llama_cpp


def cpu_amx_flags(cpuinfo: str = "/proc/cpuinfo") -> list:
    """The AMX flags this CPU reports (amx_tile, amx_bf16, amx_int8); [] without AMX or off Linux."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in AMX_FLAGS if flag in flags]


def quantize(src, dst, file_type: str, threads: int) -> Path:
    """Quantize the GGUF `src` to `file_type` (a FILE_TYPES key) at `dst`, as llama-quantize does
    (with its choice of types for the output / tied embedding matrix)."""
    lc = import_llama_cpp()
    if file_type not in FILE_TYPES:
        raise ValueError(f"unknown GGUF type {file_type!r}; choose from {sorted(FILE_TYPES)}")
    params = lc.llama_model_quantize_default_params()
    params.ftype = getattr(lc, FILE_TYPES[file_type])
    params.nthread = threads
    if lc.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {src} to {file_type}")
    return Path(dst)


class LlamaCppModel:
    """One GGUF model and one context on the CPU, fed token ids, sampling greedily.

    repack=False loads the weights as stored, without llama.cpp's extra buffer types (its repacked
    and AMX layouts): llama-bench's `--repack 0`, llama-cli's `--no-repack`."""

    def __init__(self, path, threads: int, n_ctx: int, repack: bool = True, n_batch: int = 2048):
        self.lc = lc = import_llama_cpp()
        lc.llama_backend_init()
        model_params = lc.llama_model_default_params()
        model_params.use_extra_bufts = repack
        self.model = lc.llama_model_load_from_file(str(path).encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path} (its log above says why)")
        params = lc.llama_context_default_params()
        params.n_ctx, params.n_batch = n_ctx, n_batch
        params.n_ubatch = min(512, n_batch)
        params.n_threads = params.n_threads_batch = threads
        self.ctx = lc.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {n_ctx} tokens for {path}")
        self.n_batch = n_batch
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))

    def run(self, prompt_ids: list, new_tokens: int) -> tuple:
        """(prompt seconds, decode seconds) of a fresh sequence: the prompt, which yields the first
        new token, then new_tokens - 1 one-token steps."""
        self.lc.llama_memory_clear(self.lc.llama_get_memory(self.ctx), True)
        start = time.perf_counter()
        token = self.feed(prompt_ids)
        prompt_done = time.perf_counter()
        for _ in range(new_tokens - 1):
            token = self.feed([token])
        return prompt_done - start, time.perf_counter() - prompt_done

    def feed(self, ids: list) -> int:
        """Decode `ids` after what the context holds; the greedy next token."""
        for i in range(0, len(ids), self.n_batch):
            part = ids[i:i + self.n_batch]
            tokens = (self.lc.llama_token * len(part))(*part)
            code = self.lc.llama_decode(self.ctx, self.lc.llama_batch_get_one(tokens, len(part)))
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code} (context full or bad token ids)")
        return int(self.last_logits().argmax())

    def last_logits(self) -> np.ndarray:
        """(n_vocab,) float32 logits after the last token fed: a view into llama.cpp's buffer."""
        return np.ctypeslib.as_array(self.lc.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))

    def close(self) -> None:
        self.lc.llama_free(self.ctx)
        self.lc.llama_model_free(self.model)
