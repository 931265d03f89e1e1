"""Engine behaviour on a tiny random checkpoint: stops, limits, streaming, seeds, abort, errors."""
import re
import threading

import numpy as np
import pytest
from tokenizers import Tokenizer

from paddle_qwenvl.engine.detokenizer import find_stop
from paddle_qwenvl.processing.tokenizer import IncrementalDecoder
from paddle_qwenvl.engine.inputs import PromptInputs
from paddle_qwenvl.engine.llm_engine import EngineConfig, LLMEngine
from paddle_qwenvl.models import load_model
from paddle_qwenvl.sampling import SamplingParams
from paddle_qwenvl.tools.tiny import make_tiny_checkpoint

PROMPTS = ["A picture shows a small red house", "Two children walk along the bank",
           "the sky above them is bright blue"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    model_dir = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), family="qwen2_vl", seed=3)
    return load_model(model_dir, progress=False), Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture
def engine(parts):
    model, tokenizer = parts
    return LLMEngine(model, tokenizer, EngineConfig(max_model_len=128, block_size=16, kv_cache_memory=1 << 21))


def inputs(engine, text):
    return PromptInputs(engine.tokenizer.encode(text).ids)


def seeded(**kw):
    """Varied text (a random model's greedy output repeats one token), reproducible by seed."""
    return SamplingParams(**dict(dict(temperature=0.8, top_k=100, seed=0, max_new_tokens=16,
                                      ignore_eos=True), **kw))


def greedy(**kw):
    return SamplingParams(temperature=0, **dict(dict(max_new_tokens=16, ignore_eos=True), **kw))


def test_stop_token_id_ends_generation_at_first_occurrence(engine):
    base = engine.generate([inputs(engine, PROMPTS[1])], greedy())[0].token_ids
    stop_id = base[4]
    out = engine.generate([inputs(engine, PROMPTS[1])], greedy(stop_token_ids=[stop_id]))[0]
    first = base.index(stop_id)
    assert out.token_ids == base[:first + 1] and out.finish_reason == "stop"


def test_min_new_tokens_delays_stop_token(engine):
    base = engine.generate([inputs(engine, PROMPTS[0])], greedy())[0].token_ids
    out = engine.generate([inputs(engine, PROMPTS[0])], greedy(stop_token_ids=[base[0]], min_new_tokens=3))[0]
    assert base[0] not in out.token_ids[:3]
    assert out.finish_reason == ("stop" if base[0] in out.token_ids else "length")


def a_later_word(text):
    """A stop string taken from the text: its second run of >= 3 ASCII letters."""
    words = re.findall(r"[A-Za-z]{3,}", text)
    assert len(words) >= 2, f"need varied text to pick a stop string from, got {text!r}"
    return words[1]


def test_stop_string_cuts_text(engine):
    base = engine.generate([inputs(engine, PROMPTS[2])], seeded())[0]
    stop = a_later_word(base.text)
    out = engine.generate([inputs(engine, PROMPTS[2])], seeded(stop=["zzz", stop]))[0]
    assert out.finish_reason == "stop"
    assert out.text == base.text[:base.text.index(stop)]
    assert out.text == base.text[:base.text.index(stop)] and stop not in out.text
    assert len(out.token_ids) < len(base.token_ids)


def test_max_new_tokens_and_max_model_len(engine):
    out = engine.generate([inputs(engine, PROMPTS[0])], greedy(max_new_tokens=5))[0]
    assert len(out.token_ids) == 5 and out.finish_reason == "length"
    long = engine.generate([inputs(engine, PROMPTS[0])], greedy(max_new_tokens=500))[0]
    assert long.usage.prompt_tokens + long.usage.completion_tokens == 128
    assert long.finish_reason == "length"


def test_streamed_deltas_add_up_to_final_text(engine):
    requests = [inputs(engine, p) for p in PROMPTS]
    params = greedy(max_new_tokens=10)
    finals = engine.generate(requests, params)
    pieces, last = {}, {}
    for out in engine.stream(requests, params):
        pieces[out.request_id] = pieces.get(out.request_id, "") + out.delta
        last[out.request_id] = out
    assert len(last) == 3 and all(o.finished for o in last.values())
    assert all(pieces[r] == o.text for r, o in last.items())
    assert sorted(o.text for o in last.values()) == sorted(f.text for f in finals)


def test_stream_holds_back_possible_stop_string_start(engine):
    base = engine.generate([inputs(engine, PROMPTS[2])], seeded())[0]
    stop = a_later_word(base.text)
    outs = list(engine.stream([inputs(engine, PROMPTS[2])], seeded(stop=stop)))
    assert "".join(o.delta for o in outs) == base.text[:base.text.index(stop)]


def test_seeded_sampling_reproduces_in_any_batch(engine):
    params = SamplingParams(temperature=1.0, top_k=50, seed=7, max_new_tokens=10, ignore_eos=True)
    alone = engine.generate([inputs(engine, PROMPTS[0])], params)[0].token_ids
    mixed = engine.generate([inputs(engine, p) for p in PROMPTS],
                            [params, SamplingParams(seed=1, max_new_tokens=4), greedy()])[0].token_ids
    assert alone == mixed
    other = engine.generate([inputs(engine, PROMPTS[0])],
                            SamplingParams(temperature=1.0, top_k=50, seed=8, max_new_tokens=10,
                                           ignore_eos=True))[0].token_ids
    assert other != alone


def test_abort_frees_the_request(engine):
    rid = engine.add_request(inputs(engine, PROMPTS[0]), greedy(max_new_tokens=50))
    engine.step()
    assert engine.abort(rid) and not engine.has_unfinished()
    assert engine.scheduler.block_manager.num_free_blocks == engine.runner.num_blocks
    assert not engine.abort(rid)


def test_breaking_out_of_a_stream_aborts_the_rest(engine):
    for _ in engine.stream([inputs(engine, p) for p in PROMPTS], greedy(max_new_tokens=30)):
        break
    assert not engine.has_unfinished()


def test_abort_from_outside_ends_generate_with_abort(engine):
    rid = []
    original = engine.add_request

    def add_and_remember(*args):
        rid.append(original(*args))
        return rid[-1]
    engine.add_request = add_and_remember
    stream = engine.stream([inputs(engine, PROMPTS[0])], greedy(max_new_tokens=50))
    first = next(stream)
    assert engine.abort(rid[0])
    rest = list(stream)
    assert not first.finished and rest[-1].finished and rest[-1].finish_reason == "abort"
    del engine.add_request


def test_threads_share_batches_and_get_their_own_outputs(engine):
    params = greedy(max_new_tokens=8)
    expected = [engine.generate([inputs(engine, p)], params)[0].token_ids for p in PROMPTS]
    sizes, run = [], engine.runner.run

    def recording_run(requests):
        sizes.append(len(requests))
        return run(requests)
    engine.runner.run = recording_run
    results = [None] * len(PROMPTS)

    def worker(i):
        results[i] = engine.generate([inputs(engine, PROMPTS[i])], params)[0].token_ids
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    del engine.runner.run
    assert results == expected
    assert max(sizes) > 1              # requests of different threads ran in one step


def test_bad_requests_rejected(engine, parts):
    with pytest.raises(ValueError, match="max_model_len=128 leaves no room"):
        engine.add_request(PromptInputs(list(range(1, 200))), greedy())
    with pytest.raises(ValueError, match=r"token ids \[5000\] are outside the vocabulary \[0, 1024\)"):
        engine.add_request(inputs(engine, PROMPTS[0]), greedy(stop_token_ids=[5000]))
    with pytest.raises(TypeError, match="SamplingParams"):
        engine.add_request(inputs(engine, PROMPTS[0]), {"temperature": 0})
    with pytest.raises(ValueError, match="pixel_values has 0 patch rows but image_grid_thw describes 24"):
        PromptInputs([1, 2], image_grid_thw=[[1, 4, 6]])
    cfg = parts[0].config
    span = [cfg.vision_start_token_id] + [cfg.image_token_id] * 5 + [cfg.vision_end_token_id]
    bad = PromptInputs([5] + span, pixel_values=np.zeros((24, 1176), np.float32), image_grid_thw=[[1, 4, 6]])
    with pytest.raises(ValueError, match="the prompt has 5 image pad tokens but image_grid_thw"):
        engine.add_request(bad, greedy())
    assert not engine.has_unfinished()
    with pytest.raises(ValueError, match="raise kv_cache_memory or lower max_model_len"):
        LLMEngine(parts[0], parts[1], EngineConfig(max_model_len=4096, kv_cache_memory=1 << 20))


def test_kv_cache_sized_from_budget_and_capped_by_use(parts):
    model, tokenizer = parts
    t = model.config.text
    block_bytes = 2 * t.num_hidden_layers * t.num_key_value_heads * t.head_dim * 4 * 16
    small = LLMEngine(model, tokenizer, EngineConfig(max_model_len=64, block_size=16,
                                                     kv_cache_memory=10 * block_bytes + 5))
    assert small.runner.num_blocks == 10
    assert small.runner.kv_caches[0][0].shape == [160, t.num_key_value_heads, t.head_dim]
    big = LLMEngine(model, tokenizer, EngineConfig(max_model_len=64, block_size=16, max_num_seqs=3,
                                                   kv_cache_memory=1 << 30))
    assert big.runner.num_blocks == 3 * 4


def test_bfloat16_model_keeps_a_bf16_kv_cache_of_twice_the_tokens(tmp_path):
    """A bfloat16 model's keys and values are held in bf16: the same budget holds twice the blocks,
    and a batch of requests generates through it (the paged kernels widen the rows as they read)."""
    model_dir = make_tiny_checkpoint(tmp_path / "m", family="qwen2_vl", seed=3)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    t = load_model(model_dir, progress=False).config.text
    block_bytes = 2 * t.num_hidden_layers * t.num_key_value_heads * t.head_dim * 4 * 16     # fp32
    config = EngineConfig(max_model_len=64, block_size=16, max_num_seqs=64, kv_cache_memory=10 * block_bytes)
    fp32 = LLMEngine(load_model(model_dir, progress=False), tokenizer, config)
    bf16 = LLMEngine(load_model(model_dir, progress=False, dtype="bfloat16"), tokenizer, config)
    assert (fp32.runner.num_blocks, bf16.runner.num_blocks) == (10, 20)
    assert str(bf16.runner.kv_caches[0][0].dtype) == "paddle.bfloat16"
    outs = bf16.generate([inputs(bf16, p) for p in PROMPTS], seeded(max_new_tokens=8))
    assert [len(o.token_ids) for o in outs] == [8, 8, 8]


def test_incremental_decoder_waits_for_whole_characters(parts):
    tokenizer = parts[1]
    text = "A café ☕ by the river — naïve ünïcode"
    ids = tokenizer.encode(text).ids
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(deltas) == tokenizer.decode(ids)
    assert not any("\ufffd" in d for d in deltas)


def test_find_stop_picks_earliest():
    assert find_stop("hello world###end", ["end", "###"], new_chars=17) == 11
    assert find_stop("abc", ["x"], new_chars=3) is None
