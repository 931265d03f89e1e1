"""Every PADDLE_QWENVL_* environment variable, parsed here and nowhere else.

Each lookup reads the environment when it is called, so a test may set a variable with monkeypatch
or in a subprocess's environment. The readers call them where the value matters: at the op call
(NUM_THREADS, FUSED_LAYERS, AMX_ATTENTION) or the build (DISABLE_OPS, OPS_CACHE); the op wrappers
read WORK_PER_THREAD, KERNELS and INT8_PREFILL once per process, at the first op call
(paddle_qwenvl/ops/_build.py). An unset or empty variable means its default; any other value
outside the allowed ones is a ValueError naming the variable, the value and what is expected.
The C++ ops read none of them: their Python wrappers pass the choices down as op attributes
(ops/_build.py `exec_attrs`, and each op's own).

This is the bottom layer: it imports nothing from the package.
"""
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PREFIX = "PADDLE_QWENVL_"


@dataclass(frozen=True)
class Setting:
    name: str         # the variable, without PREFIX
    default: str      # what unset (or empty) means
    expected: str     # the allowed values, as an error message states them
    meaning: str

    @property
    def env(self) -> str:
        return PREFIX + self.name


DISABLE_OPS = Setting(
    "DISABLE_OPS", "0", "1 (never build or load the compiled ops) or 0 / unset (build them on first use)",
    "1: every op runs its pure-Paddle reference (slow, but needs no compiler); 0: compiled CPU ops, "
    "and a failed build is an error")
NUM_THREADS = Setting(
    "NUM_THREADS", "", "a positive integer thread count",
    "threads of every compiled op (the CLI's --threads overrides it); unset: the CPUs this process "
    "may run on (sched affinity / cgroup)")
FUSED_LAYERS = Setting(
    "FUSED_LAYERS", "1", "1 (all layers in one op call, the default), layer (one op call per layer) or 0 "
                         "(the single ops)",
    "how a decoder step runs: all its layers in one op call, one op call per layer, or each layer "
    "through the single ops")
KERNELS = Setting(
    "KERNELS", "auto", "'portable' (force the non-AVX512 kernels) or unset / 'auto' (pick by CPU)",
    "portable: the portable C++ loops even on an AVX512 CPU (the path an older CPU takes)")
KEEP_FREED_MEMORY = Setting(
    "KEEP_FREED_MEMORY", "1", "1 (keep freed memory, the default) or 0 (glibc's defaults)",
    "1: glibc keeps up to 1 GB of freed tensor memory for reuse instead of page-faulting it back in")
CACHE = Setting(
    "CACHE", "~/.cache/paddle_qwenvl", "a directory",
    "where the demo and benchmark checkpoints are built and kept")
OPS_CACHE = Setting(
    "OPS_CACHE", "~/.cache/paddle_qwenvl/ops", "a directory",
    "where the compiled ops are built, one subdirectory per hash of sources and flags")
AMX_ATTENTION = Setting(
    "AMX_ATTENTION", "1", "1 (the fused AMX kernel where the CPU has AMX, the default) or 0 (oneDNN GEMMs)",
    "the vision towers' bf16 block attention on the fused AMX kernel (head dim <= 80, CPU with AMX) "
    "or on oneDNN GEMMs")
WORK_PER_THREAD = Setting(
    "WORK_PER_THREAD", "1048576", "a non-negative integer (work units; 0: always every thread)",
    "work units (bytes streamed, or multiply-adds for GEMMs) each extra thread must get before an "
    "op goes parallel")
QUIET = Setting(
    "QUIET", "0", "1 (no progress bars) or 0 / unset",
    "1: the CLI and the loaders show no progress bars (the tests set it)")
INT8_PREFILL = Setting(
    "INT8_PREFILL", "auto", "'tiles' (dequantized tiles for the int8 prefill GEMM) or unset / 'auto' "
                            "(oneDNN converts the int8 weights where it can)",
    "tiles: the int8 weight-only bf16 prefill writes dequantized tiles even where oneDNN could "
    "convert the int8 weights inside its GEMM")
QUANT_PREFILL = Setting(
    "QUANT_PREFILL", "auto", "'vnni' (activations quantized to int8 at every row count), 'bf16' (oneDNN's "
                             "bf16 GEMM from 65 rows) or unset / 'auto' (vnni without AMX, bf16 with AMX)",
    "how weight-only int8 / int4 layers compute prompts and vision patches: VNNI on int8-quantized "
    "activations, as decode does (the faster where the CPU has no AMX), or oneDNN's bf16 GEMM")
DEBUG = Setting(
    "DEBUG", "0", "1 (show tracebacks) or 0 / unset",
    "1: the CLI shows the traceback of an error instead of one `error:` line")

TP_TIMEOUT = Setting(
    "TP_TIMEOUT", "300", "a positive whole number of seconds",
    "tensor parallelism: the longest one collective (all-reduce, broadcast) may wait for the other "
    "ranks before this process exits with an error (a rank hangs or died)")

SETTINGS = (DISABLE_OPS, NUM_THREADS, FUSED_LAYERS, KERNELS, KEEP_FREED_MEMORY, CACHE, OPS_CACHE,
            AMX_ATTENTION, WORK_PER_THREAD, QUIET, INT8_PREFILL, QUANT_PREFILL, DEBUG, TP_TIMEOUT)


def _raw(setting: Setting) -> str:
    """The variable's value, stripped; its default when unset or empty."""
    return os.environ.get(setting.env, "").strip() or setting.default


def _error(setting: Setting, value: str) -> ValueError:
    return ValueError(f"{setting.env}={value!r}: expected {setting.expected}")


def _choice(setting: Setting, choices) -> str:
    value = _raw(setting)
    if value not in choices:
        raise _error(setting, value)
    return value


def _flag(setting: Setting) -> bool:
    return _choice(setting, ("0", "1")) == "1"


@functools.lru_cache(maxsize=64)
def _parse_count(setting: Setting, value: str, least: int) -> int:
    """int(value) if it is a whole number >= least (cached: op calls look some of these up)."""
    if not value.isdigit() or int(value) < least:
        raise _error(setting, value)
    return int(value)


def _directory(setting: Setting) -> Path:
    return Path(_raw(setting)).expanduser()


def disable_ops() -> bool:
    return _flag(DISABLE_OPS)


def num_threads() -> Optional[int]:
    """The thread count asked for, or None when unset (the caller counts the usable CPUs)."""
    value = _raw(NUM_THREADS)
    return _parse_count(NUM_THREADS, value, 1) if value else None


def fused_layers() -> str:
    """'1' (one op call per step), 'layer' (one per layer) or '0' (the single ops)."""
    return _choice(FUSED_LAYERS, ("1", "layer", "0"))


def kernels() -> str:
    """'auto' or 'portable'."""
    return _choice(KERNELS, ("auto", "portable"))


def keep_freed_memory() -> bool:
    return _flag(KEEP_FREED_MEMORY)


def cache_dir() -> Path:
    return _directory(CACHE)


def ops_cache_dir() -> Path:
    return _directory(OPS_CACHE)


def amx_attention() -> bool:
    return _flag(AMX_ATTENTION)


def work_per_thread() -> int:
    return _parse_count(WORK_PER_THREAD, _raw(WORK_PER_THREAD), 0)


def quiet() -> bool:
    return _flag(QUIET)


def int8_prefill() -> str:
    """'auto' or 'tiles'."""
    return _choice(INT8_PREFILL, ("auto", "tiles"))


def quant_prefill() -> str:
    """'auto', 'vnni' or 'bf16'."""
    return _choice(QUANT_PREFILL, ("auto", "vnni", "bf16"))


def debug() -> bool:
    return _flag(DEBUG)


def tp_timeout() -> int:
    return _parse_count(TP_TIMEOUT, _raw(TP_TIMEOUT), 1)


def describe() -> str:
    """The table above as text: variable, default, allowed values, meaning."""
    return "\n".join(f"{s.env} (default {s.default or 'unset'}; {s.expected}): {s.meaning}" for s in SETTINGS)
