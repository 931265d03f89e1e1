"""The static mode as users drive it: `paddle-qwenvl export`, `run --llm-mode static`, a deploy
script's --llm_mode static, Predictor in a fresh process, and the errors for bad exports."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.tools.tiny import make_tiny_checkpoint

pytestmark = pytest.mark.skipif(compiled_ops() is None or not build_info()["onednn"],
                                reason="an export needs the compiled ops with oneDNN")
ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "paddle_qwenvl" / "assets" / "demo.jpg"
RUN = ["run", "--image", IMAGE, "--prompt", "What is shown?", "--json", "--temperature", 0, "--max-new-tokens", 16,
       "--ignore-eos", "--max-pixels", 64 * 28 * 28]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # every subprocess (the deploy script too) imports this checkout, not an installed copy: each
    # copy builds its own ops (their oneDNN include path differs), and an export names its build
    return dict(os.environ, PADDLE_QWENVL_QUIET="1", PADDLE_QWENVL_NUM_THREADS="1", PYTHONPATH=str(ROOT),
                PADDLE_QWENVL_CACHE=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("static_cli") / "hf", "qwen2_5_vl", seed=0, std=0.02,
                                embed_std=1.0)


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "paddle_qwenvl.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


def run_json(env, *args) -> dict:
    result = cli(env, *RUN, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def dynamic_ids(env, model_dir):
    out = run_json(env, "--model", model_dir, "--llm-mode", "dynamic")
    assert out["llm_mode"] == "dynamic"
    return out["token_ids"]


@pytest.fixture(scope="module")
def exported(env, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "tiny"
    result = cli(dict(env, PADDLE_QWENVL_QUIET="0"), "export", model_dir, out)
    assert result.returncode == 0, result.stderr
    assert "export: tracing the decoder step" in result.stderr       # progress, unless quiet
    return out


def test_run_static_from_the_checkpoint_gives_the_dynamic_tokens(env, model_dir, dynamic_ids):
    out = run_json(env, "--model", model_dir, "--llm-mode", "static")
    assert out["llm_mode"] == "static" and out["token_ids"] == dynamic_ids
    assert len(set(dynamic_ids)) > 4
    again = cli(env, *RUN, "--model", model_dir, "--llm-mode", "static")       # the cached export, reused
    assert again.returncode == 0 and "export:" not in again.stderr, again.stderr


def test_exported_directory_runs_static_by_default(env, exported, dynamic_ids):
    out = run_json(env, "--model", exported)
    assert out["llm_mode"] == "static" and out["token_ids"] == dynamic_ids


LOAD_WITH_PADDLE_INFERENCE = """
import sys
from paddle import inference
from paddle_qwenvl.ops._build import compiled_ops
compiled_ops()                                   # registers our ops with paddle.inference
for name in ("vision_tower", "decoder_step"):
    config = inference.Config(f"{sys.argv[1]}/{name}.json", f"{sys.argv[1]}/{name}.pdiparams")
    print(name, len(inference.create_predictor(config).get_input_names()))
"""

FRESH_PROCESS = """
import sys
from paddle_qwenvl import Predictor, SamplingParams
predictor = Predictor.from_pretrained(sys.argv[1], max_model_len=1024, kv_cache_memory=1 << 24, progress=False)
message = [{"role": "user", "content": [{"type": "image", "image": sys.argv[2]},
                                        {"type": "text", "text": "What is shown?"}]}]
out = predictor.generate(message, SamplingParams(temperature=0, max_new_tokens=16, ignore_eos=True),
                         max_pixels=64 * 28 * 28)
print(out.token_ids)
print(sorted(m for m in sys.modules if m.startswith("paddle_qwenvl.models")))
"""


def test_export_holds_paddle_inference_programs(env, exported):
    result = subprocess.run([sys.executable, "-c", LOAD_WITH_PADDLE_INFERENCE, str(exported)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["vision_tower", "6", "decoder_step", str(9 + 2 * 2)]   # 2 layers: k, v each


def test_fresh_process_without_model_classes(env, exported, dynamic_ids):
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(exported), str(IMAGE)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    ids, modules = result.stdout.strip().splitlines()
    assert json.loads(ids) == dynamic_ids and modules == "[]"


def test_deploy_script_llm_mode_static(env, model_dir):
    script = ROOT / "deploy" / "qwen2_5_vl" / "qwen2_5_vl_infer.py"
    texts = []
    for mode in ("dynamic", "static"):
        result = subprocess.run([sys.executable, str(script), "--model_name_or_path", str(model_dir), "--temperature",
                                 "0", "--max_length", "8", "--min_length", "8", "--llm_mode", mode,
                                 "--max_pixels", str(64 * 28 * 28)], capture_output=True, text=True, env=env,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        assert "note: --llm_mode" not in result.stderr
        texts.append(result.stdout)
    assert texts[0] == texts[1] and texts[0].startswith("Final output_text:\n")


def one_line_error(result, *fragments):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_exports_are_one_line_errors(env, model_dir, exported, tmp_path):
    one_line_error(cli(env, "export", model_dir, exported), "is not empty", "new directory")
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in exported.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "vision_tower.pdiparams").unlink()
    one_line_error(cli(env, *RUN, "--model", broken), "vision_tower.pdiparams is missing", "export again")
    manifest = json.loads((exported / "manifest.json").read_text())
    (broken / "vision_tower.pdiparams").write_bytes((exported / "vision_tower.pdiparams").read_bytes())
    (broken / "manifest.json").write_text(json.dumps(dict(manifest, paddle_qwenvl="0.0.1")))
    one_line_error(cli(env, *RUN, "--model", broken), "paddle_qwenvl '0.0.1'", "export again")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    program = broken / "decoder_step.json"
    program.write_text("x" * program.stat().st_size)                  # the right size, not a program
    one_line_error(cli(env, *RUN, "--model", broken), "could not load", "decoder_step.json", "export again")
    one_line_error(cli(env, *RUN, "--model", exported, "--llm-mode", "dynamic"), "llm_mode")


def test_damaged_cached_export_is_rebuilt(env, model_dir, dynamic_ids):
    run_json(env, "--model", model_dir, "--llm-mode", "static")                 # the cached export exists
    cached = [p for p in (Path(env["PADDLE_QWENVL_CACHE"]) / "static").iterdir() if (p / "manifest.json").is_file()]
    assert len(cached) == 1
    params = cached[0] / "decoder_step.pdiparams"
    params.write_bytes(params.read_bytes()[:100])
    result = cli(env, *RUN, "--model", model_dir, "--llm-mode", "static")
    assert result.returncode == 0, result.stderr
    assert "rebuilding the cached export" in result.stderr and "decoder_step.pdiparams has 100 bytes" in result.stderr
    assert json.loads(result.stdout)["token_ids"] == dynamic_ids
