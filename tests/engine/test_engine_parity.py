"""Batched engine vs HF transformers generate() run on each request alone (greedy, fp32)."""
import pytest
from tokenizers import Tokenizer

from paddle_qwenvl.engine.inputs import PromptInputs
from paddle_qwenvl.engine.llm_engine import EngineConfig, LLMEngine
from paddle_qwenvl.models import load_model
from paddle_qwenvl.sampling import SamplingParams
from paddle_qwenvl.tools.tiny import make_tiny_checkpoint

from hf_parity_utils import hf_greedy, mixed_requests

pytest.importorskip("transformers")
MAX_NEW = 12


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def setup(request, tmp_path_factory):
    family = request.param
    model_dir = make_tiny_checkpoint(tmp_path_factory.mktemp(family), family=family, seed=1)
    model = load_model(model_dir, progress=False)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    requests = mixed_requests(tokenizer, model.config)
    expected = [hf_greedy(str(model_dir), family, r, MAX_NEW) for r in requests]
    return model, tokenizer, requests, expected, (family, str(model_dir))


def run_engine(model, tokenizer, requests, preempted=None, sampling=None, **config):
    """Generates all requests in one engine; appends the prompt lengths of preempted sequences."""
    engine = LLMEngine(model, tokenizer, EngineConfig(**config))
    preempt = engine.scheduler.preempt

    def recording_preempt(seq):
        if preempted is not None:
            preempted.append(seq.num_prompt_tokens)
        preempt(seq)
    engine.scheduler.preempt = recording_preempt
    outs = engine.generate([PromptInputs(**r) for r in requests],
                           sampling or SamplingParams(temperature=0, max_new_tokens=MAX_NEW))
    return engine, outs


def test_mixed_batch_matches_hf_alone(setup):
    model, tokenizer, requests, expected, _ = setup
    engine, outs = run_engine(model, tokenizer, requests, max_model_len=256, block_size=16,
                              kv_cache_memory=1 << 22)
    assert [o.token_ids for o in outs] == expected
    assert engine.scheduler.num_preemptions == 0
    for out, req in zip(outs, requests):
        assert out.usage.prompt_tokens == len(req["input_ids"])
        assert out.usage.completion_tokens == len(out.token_ids)
        assert out.finish_reason in ("stop", "length")
        assert out.text == tokenizer.decode(out.token_ids, skip_special_tokens=True)
    assert outs[0].timings.vision == 0 and outs[3].timings.vision > 0


def count_calls(model, name, calls):
    original = getattr(model, name)

    def counted(*args):
        calls.append(name)
        return original(*args)
    setattr(model, name, counted)


def test_too_small_kv_budget_still_finishes_correctly(setup):
    model, tokenizer, requests, expected, _ = setup
    calls = []
    for name in ("get_image_features", "get_video_features"):
        count_calls(model, name, calls)
    t = model.config.text
    block_bytes = 2 * t.num_hidden_layers * t.num_key_value_heads * t.head_dim * 4 * 8
    # 8 blocks of 8 tokens = 64 slots: one request fits (<= 37 tokens), all four (126 tokens) do not.
    preempted = []
    engine, outs = run_engine(model, tokenizer, requests, preempted, max_model_len=64, block_size=8,
                              kv_cache_memory=8 * block_bytes + block_bytes // 2)
    assert engine.runner.num_blocks == 8
    assert [o.token_ids for o in outs] == expected
    assert engine.scheduler.num_preemptions > 0
    media_lens = [len(r["input_ids"]) for r in requests if len(r) > 1]
    assert any(n in media_lens for n in preempted), "a request with media should have been recomputed"
    assert engine.scheduler.block_manager.num_free_blocks == 8
    # the vision tower ran once per request with media, recomputes reused its embeddings
    assert sorted(calls) == ["get_image_features"] * 2 + ["get_video_features"]
    for name in ("get_image_features", "get_video_features"):
        del model.__dict__[name]


def test_media_of_one_step_share_one_tower_call(setup):
    """Requests arriving together: one vision tower call per kind for all their media, and a
    repeated image (the same request twice) encoded once; the tokens stay HF's."""
    model, tokenizer, requests, expected, _ = setup
    grids = []
    for name in ("get_image_features", "get_video_features"):
        original = getattr(model, name)
        setattr(model, name, lambda pixels, grid, original=original, name=name: grids.append((name, list(grid)))
                or original(pixels, grid))
    twice = requests + requests[3:4]
    _, outs = run_engine(model, tokenizer, twice, max_model_len=256, block_size=16, kv_cache_memory=1 << 22,
                         encoder_cache_memory=0)
    for name in ("get_image_features", "get_video_features"):
        del model.__dict__[name]
    assert [o.token_ids for o in outs] == expected + expected[3:4]
    images = [PromptInputs(**r).image_grid_thw for r in requests]
    want = [tuple(g) for grid in images if grid for g in grid]
    assert [name for name, _ in grids] == ["get_image_features", "get_video_features"]
    assert [tuple(g) for g in grids[0][1]] == want
    assert outs[-1].timings.vision > 0 and outs[3].timings.vision > 0


def test_repetition_penalty_and_min_new_tokens_match_hf(setup):
    model, tokenizer, requests, _, (family, model_dir) = setup
    expected = [hf_greedy(model_dir, family, r, MAX_NEW, repetition_penalty=1.3, min_new_tokens=6)
                for r in requests]
    sampling = SamplingParams(temperature=0, max_new_tokens=MAX_NEW, repetition_penalty=1.3, min_new_tokens=6)
    _, outs = run_engine(model, tokenizer, requests, sampling=sampling, max_model_len=256,
                         block_size=16, kv_cache_memory=1 << 22)
    assert [o.token_ids for o in outs] == expected
