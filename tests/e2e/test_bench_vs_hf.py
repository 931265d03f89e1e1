"""scripts/bench_vs_hf.py: the roofline's byte count (tools.bench), and one whole run on a tiny checkpoint."""
import json
import subprocess
import sys

import pytest

from paddle_qwenvl.tools.bench import decode_weight_bytes

from .conftest import ROOT


def test_decode_weight_bytes_of_qwen2_vl_2b(tmp_path):
    from paddle_qwenvl.tools.presets import PRESETS
    from paddle_qwenvl.tools.tiny import hf_config
    _, text, vision = PRESETS["qwen2-vl-2b"]
    (tmp_path / "config.json").write_text(json.dumps(hf_config("qwen2_vl", text, vision, {})))
    # per layer: qkv 1536 x (1536 + 2 * 256), o 1536 x 1536, gate/up/down 3 x 1536 x 8960
    per_layer = 1536 * 2048 + 1536 * 1536 + 3 * 1536 * 8960
    params = 28 * per_layer + 151936 * 1536                    # + lm_head (tied to the embedding)
    assert params == 1_543_569_408
    assert decode_weight_bytes(tmp_path, 4.0) == params * 4
    assert decode_weight_bytes(tmp_path, 2.0, 2.0) == params * 2     # --dtype bfloat16


def test_decode_weight_bytes_from_the_config_are_what_a_loaded_model_holds(tiny_models):
    from paddle_qwenvl.models import load_model
    for model_dir in tiny_models.values():                      # float32 checkpoints
        assert decode_weight_bytes(load_model(str(model_dir), progress=False)) == decode_weight_bytes(model_dir, 4.0)


@pytest.mark.slow
def test_whole_run_on_a_tiny_checkpoint(tiny_models, tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_vs_hf.py"), "--model_dir",
                           str(tiny_models["qwen2_vl"]), "--max_new_tokens", "6", "--repeat", "1",
                           "--threads", "1", "--image_size", "112x84", "--json", str(out),
                           "--plot", str(tmp_path / "stages.png")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for side in ("ours", "hf"):
        assert result[side]["completion_tokens"] == 6
        assert result[side]["decode"] > 0 and result[side]["peak_memory_bytes"] > 0
    assert result["ours"]["prompt_tokens"] == result["hf"]["prompt_tokens"]
    assert result["ours"]["token_ids"] == result["hf"]["token_ids"]       # same greedy tokens
    assert "greedy tokens identical: 6/6" in proc.stdout
    r = result["roofline"]
    assert r["numpy_gb_s"] > 0 and r["probe_gb_s"] > 0
    assert r["bandwidth_gb_s"] == max(r["numpy_gb_s"], r["torch_gb_s"], r["probe_gb_s"])
    from PIL import Image
    with Image.open(tmp_path / "stages.png") as image:
        assert image.format == "PNG" and image.width > 500


def test_config_estimate_counts_the_default_int8_lm_head(tiny_models):
    """bench_vs_hf's roofline for --quant_type: the lm_head in int8 (the default), plus one fp32
    scale per row of every quantized matrix."""
    from paddle_qwenvl.models import load_model
    from paddle_qwenvl.quantization import make_quant_config
    for model_dir in tiny_models.values():
        model = load_model(str(model_dir), make_quant_config("weight_only_int8"), progress=False)
        estimate, held = decode_weight_bytes(model_dir, 1.0, 1.0), decode_weight_bytes(model)
        assert estimate < held <= estimate * (1 + 4 / model.config.text.hidden_size)
