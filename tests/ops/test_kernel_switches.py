"""The op tests' key cases again under the run-time switches the library reads once per process
(hence subprocesses; the wrappers pass them to every op as attributes):
  PADDLE_QWENVL_KERNELS=portable     the *_portable.cc kernels instead of the AVX512 / VNNI ones
  PADDLE_QWENVL_WORK_PER_THREAD=0    every op at the full thread count, however small the shape
                                     (by default the small test shapes run on one thread)
  PADDLE_QWENVL_INT8_PREFILL=tiles   int8 prefill through dequantized tiles, not oneDNN's own
                                     conversion of the int8 weights
Paged attention's own portable run lives in test_paged_attention.py.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paddle_qwenvl.ops._build import build_info, compiled_ops

HERE = Path(__file__).parent
needs_ops = pytest.mark.skipif(compiled_ops() is None, reason="compiled ops unavailable")


def run_op_tests(env: dict, files, deselect: str):
    """pytest on `files` (minus tests matching `deselect`) in a fresh process with `env` added."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[str(HERE / f) for f in files],
           "-k", f"not ({deselect})"]
    done = subprocess.run(cmd, env=dict(os.environ, **env), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and " skipped" not in done.stdout, done.stdout[-500:]


@needs_ops
def test_portable_switch_turns_the_avx512_kernels_off():
    code = "from paddle_qwenvl.ops._build import build_info; print(build_info()['avx512'])"
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PADDLE_QWENVL_KERNELS="portable"),
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


@needs_ops
def test_portable_kernels_match_references():
    """int8/int4 GEMV (exact path: the portable kernels have no int8-activation variant, so the VNNI
    bound test, which asserts a nonzero int8 error, is left out), RMSNorm(+residual), SwiGLU,
    quick_gelu, rotary, the vision towers' block attention (the paged kernel's prefill tiles and the
    GEMM path's portable softmax; its bf16 and AMX tests need native bf16, which this switch turns
    off), dense linear (few rows go to oneDNN: no GEMV without AVX512; exact bf16 weights through
    widened tiles), and the fused decoder layer against the same portable ops called one by one."""
    run_op_tests({"PADDLE_QWENVL_KERNELS": "portable"},
                 ["test_elementwise.py", "test_weight_only_linear.py", "test_linear.py", "test_block_attention.py",
                  "test_decoder_layer.py"], "vnni_path or bf16_matches or attends_in_bf16 or test_amx")


@needs_ops
def test_every_op_matches_references_on_all_threads():
    """3 threads on any shape: uneven row splits of the GEMV, norms, swiglu, rotary, linear, the
    vision block attention (both paths), paged attention (its bf16 GEMM path for fresh prompts too)
    and the fused decoder layer."""
    run_op_tests({"PADDLE_QWENVL_WORK_PER_THREAD": "0", "PADDLE_QWENVL_NUM_THREADS": "3"},
                 ["test_elementwise.py", "test_weight_only_linear.py", "test_linear.py", "test_block_attention.py",
                  "test_paged_attention.py", "test_decoder_layer.py"],
                 "portable" if build_info()["amx"] else "portable or test_amx")     # no AMX: those skip


@needs_ops
def test_int8_prefill_through_tiles_matches_references():
    """The int8 bf16 prefill's other path (a oneDNN without int8 weight conversion takes it): the
    prefill cases of the weight-only tests and the fused decoder layer (whose prompt runs it)."""
    run_op_tests({"PADDLE_QWENVL_INT8_PREFILL": "tiles"}, ["test_weight_only_linear.py", "test_decoder_layer.py"],
                 "vnni_path")


QUANTIZE_INT4 = """
import numpy as np, paddle, sys
from paddle_qwenvl.ops.weight_only_linear import quantize_weight
w = paddle.to_tensor(np.random.default_rng(0).standard_normal((96, 512)).astype("float32"))
q, s = quantize_weight(w, "weight_only_int4", 128)
np.savez(sys.argv[1], q=q.numpy(), s=s.numpy())
"""


@needs_ops
def test_int4_quantizer_is_the_same_on_avx512_and_portable_kernels(tmp_path):
    """The clip-ratio search has an AVX512 form of its error sum (quantize/quantize_avx512.cc); both forms
    must pick the same scales and levels, bit for bit."""
    out = {}
    for kernels in ("auto", "portable"):
        path = tmp_path / f"{kernels}.npz"
        done = subprocess.run([sys.executable, "-c", QUANTIZE_INT4, str(path)], capture_output=True, text=True,
                              env=dict(os.environ, PADDLE_QWENVL_KERNELS=kernels), timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        out[kernels] = np.load(path)
    np.testing.assert_array_equal(out["auto"]["q"], out["portable"]["q"])
    np.testing.assert_array_equal(out["auto"]["s"], out["portable"]["s"])
