"""deploy/qwen2_vl and deploy/qwen2_5_vl driven with PaddleMIX's flags."""
import json
import re

from .conftest import assert_clean_error


def test_image_with_paddlemix_flags(deploy, tiny_models):
    result = deploy("qwen2_5_vl", "--model_name_or_path", tiny_models["qwen2_5_vl"], "--media_type", "image",
                    "--question", "Describe this image.", "--min_length", 6, "--max_length", 6, "--top_k", 1,
                    "--top_p", 0.9, "--temperature", 0.7, "--repetition_penalty", 1.05, "--dtype", "float16",
                    "--block_attn", "--append_attn", "True", "--inference_model", "True",
                    "--output_via_mq", "False")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Final output_text:\n")
    assert "output_tokens_len: 6, finish_reason: length" in result.stderr
    for note in ("--dtype float16", "--block_attn", "--append_attn", "--inference_model", "--output_via_mq"):
        assert f"note: {note}" in result.stderr


def test_min_length_and_max_length_count_generated_tokens(deploy, tiny_models):
    model = tiny_models["qwen2_vl"]
    result = deploy("qwen2_vl", "--model_name_or_path", model, "--max_length", 3, "--temperature", 0)
    assert re.search(r"output_tokens_len: [123], ", result.stderr), result.stderr
    result = deploy("qwen2_vl", "--model_name_or_path", model, "--max_length", 3, "--batch_size", 2)
    assert result.returncode == 0, result.stderr
    assert "Final output_text [0]:" in result.stdout and "Final output_text [1]:" in result.stdout


def test_video_benchmark(deploy, tiny_models, tmp_path):
    report = tmp_path / "bench.json"
    result = deploy("qwen2_vl", "--model_name_or_path", tiny_models["qwen2_vl"], "--media_type", "video",
                    "--max_length", 4, "--min_length", 4, "--benchmark", "True", "--warmup", 1, "--repeat", 2,
                    "--benchmark_json", report)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Benchmarking ")
    for stage in ("vision", "prefill", "decode", "end-to-end", "peak memory"):
        assert stage in result.stdout
    data = json.loads(report.read_text())
    assert data["runs"] == 2 and data["completion_tokens"] == 4
    assert data["args"]["media_type"] == "video" and data["seconds"]["vision"] > 0


def test_wrong_family_is_noted(deploy, tiny_models):
    result = deploy("qwen2_vl", "--model_name_or_path", tiny_models["qwen2_5_vl"], "--max_length", 2)
    assert result.returncode == 0, result.stderr
    assert "deploy/qwen2_5_vl/qwen2_5_vl_infer.py is the matching script" in result.stderr


def test_bad_input_is_a_clear_error(deploy, tiny_models):
    model = tiny_models["qwen2_5_vl"]
    assert_clean_error(deploy("qwen2_5_vl", "--model_name_or_path", model, "--media_type", "video",
                              "--video_file", "missing.mp4"), "error: video file not found: missing.mp4")
    assert_clean_error(deploy("qwen2_5_vl", "--model_name_or_path", model, "--media_type", "audio"),
                       "invalid choice: 'audio'")
    assert_clean_error(deploy("qwen2_5_vl", "--model_name_or_path", "Qwen/Qwen2.5-VL-3B-Instruct"),
                       "not a model directory", "huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct")
    assert_clean_error(deploy("qwen2_5_vl", "--model_name_or_path", model, "--quant_type", "int3"),
                       "quant_type")
    assert_clean_error(deploy("qwen2_5_vl", "--model_name_or_path", model, "--benchmark", "maybe"),
                       "expected True or False")


def test_quantization_flags_reach_the_model(deploy, tiny_models):
    result = deploy("qwen2_vl", "--model_name_or_path", tiny_models["qwen2_vl"], "--max_length", 4,
                    "--quant_type", "weight_only_int8", "--quantize_vision", "--quantize_lm_head",
                    "--benchmark", "--warmup", 0, "--repeat", 1)
    assert result.returncode == 0, result.stderr
    assert "quant weight_only_int8 +vision lm_head int8" in result.stdout


def test_lm_head_opt_out_reaches_the_model(deploy, tiny_models):
    result = deploy("qwen2_5_vl", "--model_name_or_path", tiny_models["qwen2_5_vl"], "--max_length", 4,
                    "--quant_type", "weight_only_int4", "--no-quantize_lm_head",
                    "--benchmark", "--warmup", 0, "--repeat", 1)
    assert result.returncode == 0, result.stderr
    assert "quant weight_only_int4 g128 float lm_head" in result.stdout


def test_paddlemix_mode_flag_and_no_abbreviations(deploy, cli, tiny_models):
    """PaddleMIX's TP command passes `--mode dynamic`: it is --llm_mode, not an abbreviation of
    --model_name_or_path; and no flag is taken from a prefix."""
    model = tiny_models["qwen2_vl"]
    result = deploy("qwen2_vl", "--model_name_or_path", model, "--max_length", 2, "--mode", "dynamic",
                    "--append_attn", "1", "--benchmark", "True", "--warmup", 0, "--repeat", 1, "--dtype", "bfloat16")
    assert result.returncode == 0, result.stderr
    assert "dtype bfloat16" in result.stdout                      # the benchmark header says what ran
    assert_clean_error(deploy("qwen2_vl", "--model_name", model),
                       "the following arguments are required: --model_name_or_path")
    assert_clean_error(cli("run", "--mod", model, "--prompt", "hi"), "unrecognized arguments: --mod")
