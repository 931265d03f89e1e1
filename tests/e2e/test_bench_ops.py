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
