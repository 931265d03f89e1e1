"""scripts/bench_ops.py and its toolkit (tools.timing, tools.roofline): the interleaved timer, the
L3-sized copy count, the targets report, and a short run."""
import re
import subprocess
import sys
import time

import pytest

from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.tools import timing
from paddle_qwenvl.tools.roofline import Rows

from .conftest import ROOT


def test_interleaved_rates_calls_the_jobs_in_turn():
    calls = []

    def job(name):
        def call():
            calls.append(name)
            time.sleep(0.005)
        return call
    rates = timing.interleaved_rates({"a": (2e9, job("a")), "b": (4e9, job("b"))}, repeats=3)
    assert calls == ["a", "b"] * 4                      # one warm-up round, then 3 timed rounds in turn
    assert 1.5 < rates["b"] / rates["a"] < 2.5           # the same ~5 ms a call, twice the work


def test_operand_copies_exceed_three_times_the_l3(monkeypatch):
    monkeypatch.setattr(timing, "l3_bytes", lambda: 300 << 20)
    assert timing.copies_beyond_cache(128 << 20) == 8    # 8 x 128 MB >= 900 MB
    assert timing.copies_beyond_cache(45 << 20) == 20
    monkeypatch.setattr(timing, "l3_bytes", lambda: 8 << 20)
    assert timing.copies_beyond_cache(32 << 20) == 4     # at least 128 MB in all


def test_targets_are_reported_met_or_missed_with_unreachable_ones_explained(capsys):
    bench = Rows()
    bench.row("int8 gemv", (28.0, 34.0), "GB/s", 30.0, ("limit", 0.8))             # 82%
    bench.row("attention", (19.0, 34.0), "GB/s", 0.2, ("limit", 0.6))              # 56%
    bench.row("bf16 gemm", (1100.0, 1200.0), "GFLOP/s", 330.0, ("stock", 3.0))     # x3.3
    bench.row("fp32 gemm", (360.0, 370.0), "GFLOP/s", 340.0, ("stock", 3.0))       # x1.1, stock at 92%
    bench.row("untargeted", (1.0, 2.0), "GB/s", 1.0)
    bench.print_targets()
    report = capsys.readouterr().out.split("targets in this run:\n")[1].splitlines()
    assert [line.split()[:2] for line in report] == [["met", "int8"], ["MISSED", "attention"], ["met", "bf16"],
                                                     ["MISSED", "fp32"]]
    assert "82.4% of the limit (>= 80%)" in report[0] and "x3.3 stock (>= x3)" in report[2]
    assert "stock runs at 92% of the oneDNN limit, so x3 would be 2.8x that limit" in report[3]
    assert "so x3" not in report[2]                       # reachable: no note


@pytest.mark.slow
@pytest.mark.skipif(compiled_ops() is None, reason="compiled ops unavailable")
def test_quick_prefill_sections_print_every_row():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_ops.py"), "--quick", "--only", "gemm,prefill"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^  (\S.*?)\s+([\d.]+) GFLOP/s\s+([\d.]+)% of\s+([\d.]+)\s+stock Paddle\s+([\d.e+]+) GFLOP/s",
                      proc.stdout, re.M)
    names = [r[0] for r in rows]
    attention = ["m=1024 Hq=12 Hkv=2 D=128 float32"] + (["m=1024 Hq=12 Hkv=2 D=128 bfloat16"]
                                                         if build_info()["bf16"] and build_info()["onednn"] else [])
    assert names[6:] == attention, proc.stdout            # 6 GEMM rows, then prefill attention m=1024
    assert any(n.startswith("weight_only_int4") for n in names[:6])
    assert any(n.startswith("linear bf16 exact (fp32)") for n in names[:6])
    assert all(float(value) > 0 and float(limit) > 0 and float(stock) > 0 for _, value, _, limit, stock in rows)
    assert "best limits seen over the run: oneDNN fp32 GEMM" in proc.stdout
    assert len(re.findall(r"^  (met   |MISSED)  ", proc.stdout, re.M)) == 6   # the 6 GEMM rows' 3x target


@pytest.mark.skipif(not build_info()["avx512"], reason="no AVX512-VNNI on this CPU")
def test_dot_peak_runs_its_chains_and_reports_a_rate():
    """pqv_dot_peak really executes iters x 12 dot products per thread: each thread's result is
    the sum over its 12 chains (starting at 0) of 16 lanes after `iters` instructions, exactly."""
    import paddle
    from paddle_qwenvl.ops._build import exec_attrs
    x = paddle.zeros([1])
    int8 = compiled_ops().pqv_dot_peak(x, 0, 10, *exec_attrs(2)).numpy()
    assert int8.tolist() == [[16 * 12 * 4 * 3 * 5 * 10, 12 * 10]] * 2      # 4 products of 3 x 5 a lane each
    if build_info()["bf16"]:
        bf16 = compiled_ops().pqv_dot_peak(x, 1, 8, *exec_attrs(1)).numpy()
        assert bf16.tolist() == [[16 * 12 * 8 * 2 * 2.0 ** -10, 12 * 8]]     # 2 products of 1 x 2^-10 a lane
    assert timing.DotPeak("int8", threads=1, iters=1000)(repeats=1) > 0
    with pytest.raises(ValueError, match="kind must be one of"):
        timing.DotPeak("fp8")


def test_bench_report_names_the_dot_product_rates_it_was_given():
    from paddle_qwenvl.tools.bench import dot_peaks, format_report
    summary = dict(seconds=dict(vision=1.0, prefill=0.5, decode=2.0, other=0.1, end_to_end=3.6), prompt_tokens=300,
                   completion_tokens=32, runs=1, prefill_tokens_per_s=600.0, decode_tokens_per_s=15.5,
                   end_to_end_min=3.6, peak_memory_bytes=2**30)
    report = format_report(summary, "header", dict(vision=4e11, prefill=2e11), dict(bf16=0.46, int8=0.91))
    assert "0.400 TFLOP/s in its linear layers" in report
    assert "this CPU now bf16 vdpbf16ps 0.46 TOP/s, int8 vpdpbusd 0.91 TOP/s" in report
    assert "this CPU now" not in format_report(summary, "header")
    kinds = [k for k, on in (("bf16", build_info()["bf16"]), ("int8", build_info()["avx512"])) if on]
    assert sorted(dot_peaks(threads=1)) == sorted(kinds)


@pytest.mark.slow
@pytest.mark.skipif(compiled_ops() is None or not build_info()["bf16"], reason="no compiled bf16 GEMM here")
def test_torch_section_prints_both_sides_of_every_shape():
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_ops.py"), "--quick", "--only", "torch"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^  (\d+x\d+x\d+)\s+ours ([\d.]+) \(\s*\d+%\)\s+torch ([\d.]+) \(\s*\d+%\)\s+ours/torch x([\d.]+)"
                      r"\s+peak ([\d.]+)$", proc.stdout, re.M)
    assert [r[0] for r in rows] == ["289x1536x8960", "289x1536x17920", "289x8960x1536", "1024x1280x3840",
                                    "1024x1280x5120", "1024x5120x1280"], proc.stdout
    for _, ours, torch_rate, ratio, peak in rows:
        assert float(ours) > 0 and float(torch_rate) > 0 and float(peak) > 0
        assert float(ratio) == pytest.approx(float(ours) / float(torch_rate), abs=0.02)
