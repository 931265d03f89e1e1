"""`paddle-qwenvl` end to end: demo, run, chat, bench, make-tiny, quantize, and bad input."""
import json
import re

from paddle_qwenvl.cli.common import DEMO_IMAGE, DEMO_VIDEO

from .conftest import assert_clean_error


def run_json(cli, model, *args):
    result = cli("run", "--model", model, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_no_arguments_runs_the_demo_on_image_and_video(cli, cache_root):
    result = cli(compiled_ops=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "RANDOM weights" in out and "meaningless" in out
    assert "[image demo.jpg]" in out and "[video demo.mp4]" in out
    assert len(re.findall(r"tokens: prompt \d+, generated 32 \(finish_reason length\)", out)) == 2
    assert len(re.findall(r"timings: vision [\d.]+ s, prefill [\d.]+ s .*decode [\d.]+ s", out)) == 2
    assert "huggingface-cli download" in out                      # says how to use a real model
    assert (cache_root / "demo-qwen2_5_vl-0.1.0" / "config.json").is_file()
    assert "built the demo checkpoint" in result.stderr


def test_demo_checkpoint_is_built_once(tmp_path, monkeypatch):
    from paddle_qwenvl.tools.demo_model import demo_checkpoint
    monkeypatch.setenv("PADDLE_QWENVL_CACHE", str(tmp_path))
    first = demo_checkpoint("qwen2_vl")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert demo_checkpoint("qwen2_vl") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((first / "config.json").read_text())["hidden_size"] == 256
    assert [p.name for p in tmp_path.iterdir()] == [first.name]   # no half-built directory left


def test_run_image_greedy_matches_the_predictor(cli, tiny_models):
    from paddle_qwenvl import Predictor, SamplingParams
    model = tiny_models["qwen2_5_vl"]
    out = run_json(cli, model, "--image", DEMO_IMAGE, "--prompt", "What is shown?",
                   "--max-new-tokens", 6, "--ignore-eos", "--temperature", 0)
    assert out["finish_reason"] == "length" and len(out["token_ids"]) == 6
    assert out["usage"]["completion_tokens"] == 6 and out["timings"]["vision"] > 0
    predictor = Predictor.from_pretrained(model, progress=False, kv_cache_memory=1 << 22, max_model_len=512)
    messages = [{"role": "user", "content": [{"type": "image", "image": str(DEMO_IMAGE)},
                                             {"type": "text", "text": "What is shown?"}]}]
    expected = predictor.generate(messages, SamplingParams(temperature=0, max_new_tokens=6, ignore_eos=True))
    assert out["token_ids"] == expected.token_ids
    assert out["usage"]["prompt_tokens"] == expected.usage.prompt_tokens


def test_top_k_is_applied(cli, tiny_models):
    model = tiny_models["qwen2_5_vl"]
    common = ("--prompt", "Tell me a story.", "--max-new-tokens", 8, "--ignore-eos")
    greedy = run_json(cli, model, *common, "--temperature", 0)["token_ids"]
    top1 = run_json(cli, model, *common, "--temperature", 1, "--top-k", 1, "--seed", 3)["token_ids"]
    sampled = run_json(cli, model, *common, "--temperature", 1, "--seed", 3)["token_ids"]
    assert top1 == greedy            # top_k=1 leaves only the argmax
    assert sampled != greedy         # without it, seeded sampling over a near-flat random model differs


def test_run_video_streams_on_qwen2_vl(cli, tiny_models):
    args = ("--video", DEMO_VIDEO, "--prompt", "Describe the video.", "--max-new-tokens", 5, "--ignore-eos",
            "--fps", 2, "--temperature", 1, "--seed", 0)
    result = cli("run", "--model", tiny_models["qwen2_vl"], "--stream", *args)
    assert result.returncode == 0, result.stderr
    assert re.search(r"finish_reason length; tokens: prompt \d+, generated 5;", result.stderr)
    whole = run_json(cli, tiny_models["qwen2_vl"], *args)
    assert result.stdout == whole["text"] + "\n"          # the streamed pieces add up to the answer
    assert whole["usage"]["prompt_tokens"] > 2 * 2 * 16 // 4   # >= 2 temporal grids of 16 merged patches


def test_chat_keeps_the_conversation(cli, tiny_models):
    stdin = f"/image {DEMO_IMAGE}\nWhat is this?\n/video missing.mp4\nAnd the colour?\n/exit\n"
    result = cli("chat", "--model", tiny_models["qwen2_5_vl"], "--max-new-tokens", 3, "--ignore-eos",
                 "--stats", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("assistant> ") == 2
    assert "error: video file not found: missing.mp4" in result.stderr      # reported, chat goes on
    prompts = [int(n) for n in re.findall(r"tokens: prompt (\d+)", result.stderr)]
    assert len(prompts) == 2
    assert prompts[1] > prompts[0] + 3          # turn 2 re-reads turn 1, its image and the answer


def test_bench_reports_every_stage(cli, tiny_models, tmp_path):
    report = tmp_path / "bench.json"
    result = cli("bench", "--model", tiny_models["qwen2_5_vl"], "--max-new-tokens", 4, "--warmup", 1,
                 "--repeat", 2, "--json", report, "--dtype", "bfloat16")
    assert result.returncode == 0, result.stderr
    assert "dtype bfloat16;" in result.stdout
    for stage in ("vision", "prefill", "decode", "end-to-end", "peak memory", "VmHWM"):
        assert stage in result.stdout
    assert len(re.findall(r"[\d.]+ TFLOP/s in its linear layers", result.stdout)) == 2     # vision, prefill
    data = json.loads(report.read_text())
    assert data["linear_flops"]["vision"] > 0 and data["linear_flops"]["prefill"] > 0
    assert data["dot_peak_tops"] == {} and "this CPU now" not in result.stdout     # compiled ops off here
    assert data["runs"] == 2 and data["completion_tokens"] == 4 and len(data["per_run"]) == 2
    assert data["decode_tokens_per_s"] > 0 and data["peak_memory_bytes"] > 10 * 2**20


def test_make_tiny_writes_a_loadable_model(cli, tmp_path):
    result = cli("make-tiny", tmp_path / "m", "--family", "qwen2_vl")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2VLForConditionalGeneration"]
    assert "random weights" in result.stdout


def test_quantize_writes_a_checkpoint_that_runs_as_loading_quantized_does(cli, tiny_models, tmp_path):
    model, out = tiny_models["qwen2_vl"], tmp_path / "q4"
    flags = ("--quant-type", "weight_only_int4", "--quant-group-size", 64, "--quantize-vision", "--quantize-lm-head")
    result = cli("quantize", model, out, *flags)
    assert result.returncode == 0, result.stderr
    assert "weight_only_int4 g64 +vision lm_head int8" in result.stdout
    saved = json.loads((out / "config.json").read_text())["paddle_qwenvl_quantization"]
    assert saved == dict(quant_type="weight_only_int4", group_size=64, quantize_vision=True, quantize_lm_head=True,
                         lm_head_quant_type="weight_only_int8")
    request = ("--image", DEMO_IMAGE, "--prompt", "What is shown?", "--max-new-tokens", 6, "--ignore-eos",
               "--temperature", 0)
    on_load = run_json(cli, model, *request, *flags)["token_ids"]
    assert run_json(cli, out, *request)["token_ids"] == on_load
    assert len(on_load) == 6


def test_quantize_errors_say_what_to_fix(cli, tiny_models, tmp_path):
    model = tiny_models["qwen2_vl"]
    assert_clean_error(cli("quantize", model, tmp_path / "q"), "error: give --quant-type")
    assert_clean_error(cli("quantize", model, model, "--quant-type", "weight_only_int8"), "out_dir must differ")
    assert_clean_error(cli("run", "--model", model, "--prompt", "hi", "--quant_type", "int3"),
                       "--quant_type: invalid choice: 'int3'")
    assert_clean_error(cli("run", "--model", model, "--prompt", "hi", "--quantize-vision"), "needs a quant_type")


def test_missing_image_is_a_clear_error(cli, tiny_models):
    result = cli("run", "--model", tiny_models["qwen2_vl"], "--image", "no/such.jpg", "--prompt", "hi")
    assert_clean_error(result, "error: image file not found: no/such.jpg")


def test_corrupt_image_is_a_clear_error(cli, tiny_models, tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    result = cli("run", "--model", tiny_models["qwen2_vl"], "--image", fake, "--prompt", "hi")
    assert_clean_error(result, "error: the data is not an image")


def test_bad_values_are_clear_errors(cli, tiny_models):
    assert_clean_error(cli("run", "--model", tiny_models["qwen2_vl"], "--prompt", "hi", "--temperature", -1),
                       "error: temperature must be >= 0")
    assert_clean_error(cli("run", "--model", "Qwen/Qwen2-VL-2B-Instruct", "--prompt", "hi"),
                       "is not a model directory", "huggingface-cli download")
    assert_clean_error(cli("run", "--prompt", "hi", "--dtype", "int8"), "invalid choice: 'int8'")


def test_engine_flags_act_and_bad_sizes_are_clear_errors(cli, tiny_models):
    model = tiny_models["qwen2_5_vl"]
    args = ("--prompt", "What is this?", "--image", str(DEMO_IMAGE), "--temperature", "0", "--max-new-tokens", "6",
            "--ignore-eos")
    plain = run_json(cli, model, *args)
    chunked = run_json(cli, model, *args, "--no-prefix-caching", "--encoder-cache-memory", "0",
                       "--max-num-batched-tokens", "16")
    assert chunked["token_ids"] == plain["token_ids"] and plain["usage"]["cached_tokens"] == 0
    assert_clean_error(cli("run", "--model", model, "--prompt", "hi", "--encoder-cache-memory", "lots"),
                       "'lots' is not a size")


def test_run_json_logprobs(cli, tiny_models):
    out = run_json(cli, tiny_models["qwen2_vl"], "--prompt", "hi", "--temperature", "0", "--max-new-tokens", "4",
                   "--ignore-eos", "--logprobs", "2")
    logprobs = out["logprobs"]
    assert [lp["token_id"] for lp in logprobs] == out["token_ids"]
    for lp in logprobs:
        assert len(lp["top"]) == 2 and lp["top"][0][0] == lp["token_id"]           # greedy: the most likely
        assert lp["logprob"] == lp["top"][0][1] <= 0 and lp["top"][1][1] <= lp["top"][0][1]
    assert_clean_error(cli("run", "--model", tiny_models["qwen2_vl"], "--prompt", "hi", "--logprobs", "30"),
                       "logprobs must be None or an integer in [0, 20]")
