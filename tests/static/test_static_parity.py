"""Exported programs (paddle.inference) against the dygraph model they came from, through the
engine, on the tiny checkpoints of both families: the same logits (1e-4) and greedy tokens for
text, images, video and image + video, and for a batch of mixed requests."""
import numpy as np
import pytest

from paddle_qwenvl.engine.llm_engine import EngineConfig, LLMEngine
from paddle_qwenvl.models import load_model
from paddle_qwenvl.ops._build import build_info, compiled_ops
from paddle_qwenvl.sampling import SamplingParams
from paddle_qwenvl.static.export import export_model
from paddle_qwenvl.static.loader import load_export
from paddle_qwenvl.tools.tiny import make_tiny_checkpoint
from tests.parity.cases import CASES, build
from tests.runs import greedy_ids, prompt_logits

pytestmark = pytest.mark.skipif(compiled_ops() is None or not build_info()["onednn"],
                                reason="an export needs the compiled ops with oneDNN")
NAMES = ["text", "one_image", "two_images", "video", "image_and_video"]


def exported_pair(model_dir, out_dir):
    """(dygraph model, static model) of one checkpoint."""
    out = export_model(model_dir, out_dir, block_size=16, progress=False)
    return load_model(model_dir, progress=False), load_export(out)


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def pair(request, tmp_path_factory):
    """Checkpoints whose greedy tokens vary (large embeddings, untied lm_head)."""
    root = tmp_path_factory.mktemp(request.param)
    model_dir = make_tiny_checkpoint(root / "hf", request.param, seed=0, std=0.02, embed_std=1.0,
                                     text={"tie_word_embeddings": False})
    return exported_pair(model_dir, root / "export")


@pytest.mark.parametrize("name", NAMES)
def test_same_logits_and_greedy_tokens(pair, name):
    dynamic, static = pair
    inputs = build(dynamic.config, CASES[name], seed=3)
    want = greedy_ids(dynamic, inputs, max_new_tokens=32)
    assert len(set(want)) > 8, "the checkpoint should not repeat one token"
    assert greedy_ids(static, inputs, max_new_tokens=32) == want
    # the prompt in one prefill step, then decode steps over the cache the static step wrote
    got = prompt_logits(static, inputs, continuation=want[:6])
    np.testing.assert_allclose(got, prompt_logits(dynamic, inputs, continuation=want[:6]), rtol=0, atol=1e-4)


def test_mixed_batch_through_the_engine(pair):
    """Four requests, two at a time in a small cache (so some wait and chunks interleave)."""
    dynamic, static = pair
    requests = [build(dynamic.config, CASES[name], seed=i) for i, name in enumerate(NAMES[1:])]
    params = SamplingParams(max_new_tokens=12, temperature=0.0, ignore_eos=True)

    def run(model):
        config = EngineConfig(max_model_len=512, block_size=16, max_num_seqs=2, max_num_batched_tokens=64)
        return [out.token_ids for out in LLMEngine(model, None, config).generate(requests, params)]
    assert run(static) == run(dynamic)


def test_tied_lm_head_logits(tiny_dirs, tmp_path):
    """Qwen2-VL's tiny checkpoint ties lm_head to the embedding table: the logits come from it."""
    dynamic, static = exported_pair(tiny_dirs["qwen2_vl"], tmp_path / "export")
    inputs = build(dynamic.config, CASES["one_image"], seed=1)
    np.testing.assert_allclose(prompt_logits(static, inputs, continuation=[7, 8]),
                               prompt_logits(dynamic, inputs, continuation=[7, 8]), rtol=0, atol=1e-4)


def test_predictor_runs_an_export_in_its_block_size(tiny_dirs, tmp_path):
    """An export paged in 32-token blocks: Predictor takes that size (16 is its default)."""
    from paddle_qwenvl import Predictor
    out = export_model(tiny_dirs["qwen2_5_vl"], tmp_path / "export", block_size=32, progress=False)
    request = {"prompt": "Describe <image>.", "images": [np.full((56, 56, 3), 200, dtype=np.uint8)]}
    params = SamplingParams(temperature=0, max_new_tokens=8, ignore_eos=True)
    static = Predictor.from_pretrained(out, max_model_len=256, kv_cache_memory=1 << 21, progress=False)
    dynamic = Predictor.from_pretrained(tiny_dirs["qwen2_5_vl"], max_model_len=256, kv_cache_memory=1 << 21,
                                        block_size=32, progress=False)
    assert static.engine.config.block_size == 32 and static.llm_mode == "static"
    assert static.generate(request, params).token_ids == dynamic.generate(request, params).token_ids


def test_programs_run_on_the_loading_process_threads(tiny_dirs, tmp_path, monkeypatch):
    """The ops' thread count is an attribute traced at export: a process running on another count
    gets a copy of the program with its own (in the cache), and the same logits."""
    import re
    from paddle_qwenvl.ops import threads
    out = export_model(tiny_dirs["qwen2_vl"], tmp_path / "export", block_size=16, progress=False)
    exported = set(re.findall(r'"D":(-?\d+)\},"N":"num_threads"', (out / "decoder_step.json").read_text()))
    assert exported == {str(threads.num_threads())}
    inputs = build(load_export(out).config, CASES["one_image"], seed=1)
    want = prompt_logits(load_export(out), inputs, continuation=[7, 8])
    monkeypatch.setenv("PADDLE_QWENVL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(threads, "_chosen", [threads.num_threads() + 1])
    np.testing.assert_allclose(prompt_logits(load_export(out), inputs, continuation=[7, 8]), want, rtol=0, atol=1e-6)
    patched = list((tmp_path / "cache" / "static" / "programs").glob("*.json"))
    assert len(patched) == 2
    for program in patched:
        assert set(re.findall(r'"D":(-?\d+)\},"N":"num_threads"', program.read_text())) == {
            str(threads.num_threads())}
