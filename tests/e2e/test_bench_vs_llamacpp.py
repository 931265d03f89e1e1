"""scripts/bench_vs_llamacpp.py: the GGUF a checkpoint's language model becomes (tools.gguf_export),
llama.cpp's logits on it against ours, and one whole run on a tiny checkpoint. The llama.cpp tests
are skipped without llama-cpp-python (the `llamacpp` extra)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT

PROMPT = [5, 17, 300, 42, 8, 99, 123, 7]


@pytest.fixture(scope="module")
def tiny_gguf(tiny_models, tmp_path_factory):
    pytest.importorskip("gguf")
    from paddle_qwenvl.tools.gguf_export import write_qwen2_gguf
    return write_qwen2_gguf(tiny_models["qwen2_vl"], tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_gguf_holds_the_language_model(tiny_models, tiny_gguf):
    import gguf
    from paddle_qwenvl.tools.gguf_export import safetensors_arrays
    reader = gguf.GGUFReader(str(tiny_gguf))
    tensors = {t.name: t for t in reader.tensors}
    per_layer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                 "ffn_down"]
    expected = {f"blk.{i}.{n}.weight" for i in range(2) for n in per_layer}
    expected |= {f"blk.{i}.attn_{x}.bias" for i in range(2) for x in "qkv"}
    assert set(tensors) == expected | {"token_embd.weight", "output_norm.weight"}       # tied: no output
    hf = safetensors_arrays(tiny_models["qwen2_vl"])
    np.testing.assert_array_equal(tensors["blk.1.ffn_down.weight"].data, hf["model.layers.1.mlp.down_proj.weight"][1])
    np.testing.assert_array_equal(tensors["token_embd.weight"].data, hf["model.embed_tokens.weight"][1])
    config = json.loads((tiny_models["qwen2_vl"] / "config.json").read_text())
    assert reader.fields["qwen2.block_count"].contents() == 2
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == config["vocab_size"]


def test_llama_cpp_logits_match_ours(tiny_models, tiny_gguf):
    pytest.importorskip("llama_cpp")
    from paddle_qwenvl.engine.inputs import PromptInputs
    from paddle_qwenvl.engine.llm_engine import EngineConfig, LLMEngine
    from paddle_qwenvl.models import load_model
    from paddle_qwenvl.tools.llamacpp import LlamaCppModel
    model = LlamaCppModel(tiny_gguf, threads=1, n_ctx=64)
    try:
        token = model.feed(PROMPT)
        theirs = model.last_logits().copy()
    finally:
        model.close()
    engine = LLMEngine(load_model(str(tiny_models["qwen2_vl"]), progress=False), None,
                       EngineConfig(max_model_len=64, block_size=16, max_num_seqs=1))
    ours = engine.prompt_logits([PromptInputs(PROMPT)])[0][-1]              # float32 checkpoint: F32 GGUF
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, atol=2e-3 * np.abs(ours).max())
    assert token == int(ours.argmax())


def test_whole_run_on_a_tiny_checkpoint(tiny_models, cache_root):
    pytest.importorskip("llama_cpp")
    env = dict(os.environ, PADDLE_QWENVL_QUIET="1", PADDLE_QWENVL_CACHE=str(cache_root))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_vs_llamacpp.py"), "--model_dir",
                           str(tiny_models["qwen2_vl"]), "--prompt-tokens", "12", "--new-tokens", "4",
                           "--repeat", "1", "--threads", "1", "--pairs", "bf16,int4"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if " / " in line and line.endswith("x")]
    assert [row.split()[:3] for row in rows] == [["BF16", "/", "bfloat16"], ["Q4_0", "/", "weight_only_int4"]]
    assert sorted(p.name for p in (cache_root / "bench").glob("*.gguf")) == ["qwen2_vl.BF16.gguf", "qwen2_vl.Q4_0.gguf"]


def test_amx_flags_come_from_cpuinfo(tmp_path):
    from paddle_qwenvl.tools.llamacpp import cpu_amx_flags
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16 amx_tile amx_int8\n")
    assert cpu_amx_flags(str(cpuinfo)) == ["amx_tile", "amx_bf16", "amx_int8"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_amx_flags(str(cpuinfo)) == []
    assert cpu_amx_flags(str(tmp_path / "missing")) == []
