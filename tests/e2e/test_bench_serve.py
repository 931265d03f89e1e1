"""`paddle-qwenvl bench-serve` against `paddle-qwenvl serve` (tiny model, loopback), as a user runs it:
a bounded sweep over concurrency 1/4/16 writing JSON and a PNG, the errors of rejected requests
counted, and an unreachable server reported."""
import json

from PIL import Image

from .conftest import assert_clean_error
from .test_serve import KEY, free_port, server  # noqa: F401  (the server fixture: tiny model on loopback)

SMALL = ("--num-requests", "16", "--image-size", "56x56", "--prompt-tokens", "8")


def test_sweep_writes_json_and_plot(cli, server, tmp_path):  # noqa: F811
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    result = cli("bench-serve", "--api-base", server + "/v1", "--api-key", KEY, "--concurrency", "1,4,16",
                 *SMALL, "--max-tokens", "4", "--ignore-eos", "--json", out, "--plot", plot)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert [run["label"] for run in report["runs"]] == ["concurrency 1", "concurrency 4", "concurrency 16"]
    for run in report["runs"]:
        summary = run["summary"]
        assert (summary["completed"], summary["failed"]) == (16, 0)
        assert summary["output_tokens_mean"] == 4                    # ignore_eos honoured: exactly 4 each
        assert summary["prompt_tokens_mean"] > 8                     # words + image tokens + template
        assert summary["ttft_ms"]["mean"] < summary["e2e_ms"]["mean"]
        assert summary["ttft_ms"]["p50"] <= summary["ttft_ms"]["p99"]
    assert report["runs"][2]["load"]["concurrency"] == 16
    assert "TTFT p99 (ms)" in result.stdout and "concurrency 16" in result.stdout
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 1000 and image.height > 300


def test_request_rate_and_rejected_requests(cli, server, tmp_path):  # noqa: F811
    """Prompts longer than the server's --max-model-len (1024): every request fails, each counted."""
    out = tmp_path / "bench.json"
    result = cli("bench-serve", "--api-base", server + "/v1", "--api-key", KEY, "--request-rate", "50",
                 "--num-requests", "3", "--image-size", "none", "--prompt-tokens", "2000", "--max-tokens", "4",
                 "--json", out)
    assert result.returncode == 1
    summary = json.loads(out.read_text())["runs"][0]["summary"]
    assert (summary["completed"], summary["failed"]) == (0, 3)
    assert sum(summary["errors"].values()) == 3
    assert all(e.startswith("HTTP 400") and "context is 1024" in e for e in summary["errors"])
    assert "errors:" in result.stdout


def test_unreachable_server_and_bad_flags(cli):
    assert_clean_error(cli("bench-serve", "--api-base", f"http://127.0.0.1:{free_port()}/v1"), "cannot reach")
    assert_clean_error(cli("bench-serve", "--api-base", "http://127.0.0.1:1/v1", "--concurrency", "0"),
                       "--concurrency")
    assert_clean_error(cli("bench-serve", "--api-base", "http://127.0.0.1:1/v1", "--image-size", "big"),
                       "--image-size")
