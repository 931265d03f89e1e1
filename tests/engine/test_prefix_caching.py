"""Prefix caching, the encoder cache and chunked prefill: exact (outputs equal to running without
them), and every block accounted for."""
import numpy as np
import pytest

from paddle_qwenvl.engine.inputs import PromptInputs
from paddle_qwenvl.engine.llm_engine import EngineConfig, LLMEngine
from paddle_qwenvl.models import load_model
from paddle_qwenvl.sampling import SamplingParams
from tests.parity.cases import CASES, build

GREEDY = SamplingParams(temperature=0, max_new_tokens=12, ignore_eos=True)
GREEDY_LONG = SamplingParams(temperature=0, max_new_tokens=40, ignore_eos=True)
KINDS = ["text", "one_image", "two_images", "video", "image_and_video"]


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def model(request, tiny_dirs):
    return load_model(tiny_dirs[request.param], progress=False)


def engine_for(model, caching=True, chunk=None, **kw):
    config = dict(dict(max_model_len=512, block_size=16, max_num_seqs=4), enable_prefix_caching=caching,
                  max_num_batched_tokens=chunk, **kw)
    return LLMEngine(model, None, EngineConfig(**config))


def turn(model, prompt: PromptInputs, answer, extra=(40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50)):
    """The next turn of a chat: the same prompt (media included), the answer, a new question."""
    return PromptInputs(prompt.input_ids + list(answer) + list(extra), prompt.pixel_values, prompt.image_grid_thw,
                        prompt.pixel_values_videos, prompt.video_grid_thw, prompt.second_per_grid_ts)


def ref_and_cached(model, prompts, **kw):
    ref = [o.token_ids for o in engine_for(model, caching=False).generate(prompts, GREEDY)]
    return ref, engine_for(model, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_second_turn_reuses_the_first_and_answers_the_same(model, kind):
    first = build(model.config, CASES[kind], seed=3)
    engine = engine_for(model)
    answer = engine.generate([first], GREEDY)[0]
    assert answer.usage.cached_tokens == 0
    second = turn(model, first, answer.token_ids)
    out = engine.generate([second], GREEDY)[0]
    ref = engine_for(model, caching=False).generate([second], GREEDY)[0]
    assert out.token_ids == ref.token_ids
    cached = (len(first.input_ids) + len(answer.token_ids) - 1) // 16 * 16    # whole blocks computed in turn 1
    assert out.usage.cached_tokens == min(cached, (len(second.input_ids) - 1) // 16 * 16)
    assert out.usage.cached_tokens > 0
    if kind != "text":
        assert out.timings.vision == 0                      # the encoder cache knew the media
    assert engine.scheduler.block_manager.num_used_blocks == 0


@pytest.mark.parametrize("chunk", [16, 64, None])
def test_chunked_prefill_answers_the_same(model, chunk):
    prompts = [build(model.config, CASES[k], seed=i) for i, k in enumerate(KINDS)]
    ref, engine = ref_and_cached(model, prompts, caching=False, chunk=chunk)
    assert [o.token_ids for o in engine.generate(prompts, GREEDY)] == ref
    assert engine.scheduler.block_manager.num_used_blocks == 0


def test_chunked_prefill_with_prefix_caching_and_a_batch(model):
    base = [build(model.config, CASES[k], seed=7) for k in ("one_image", "video")]
    prompts = base + [turn(model, p, [5, 6, 7]) for p in base]
    ref, engine = ref_and_cached(model, prompts, chunk=16)
    assert [o.token_ids for o in engine.generate(prompts, GREEDY)] == ref
    again = engine.generate(prompts, GREEDY)                 # everything cached now
    assert [o.token_ids for o in again] == ref and all(o.usage.cached_tokens > 0 for o in again)


def test_long_prompt_is_chunked_beside_decodes(model):
    engine = engine_for(model, caching=False, chunk=32)
    short = [PromptInputs([5 + i, 6, 7]) for i in range(3)]
    long = build(model.config, CASES["two_images"], seed=1)
    assert len(long.input_ids) > 64
    steps, run = [], engine.runner.run

    def recording_run(requests):
        steps.append({r.request_id: r.seq.num_scheduled_tokens for r in requests})
        return run(requests)
    engine.runner.run = recording_run
    ids = [engine.add_request(r, GREEDY_LONG) for r in short]      # decoding until the long one is done
    engine.step()                                            # the short ones prefill
    engine.add_request(long, GREEDY, request_id="long")
    outs = {}
    while engine.has_unfinished():
        outs.update({o.request_id: o for o in engine.step() if o.finished})
    prefill = [step for step in steps[1:] if "long" in step]
    first_decode = next(i for i, step in enumerate(prefill) if step["long"] == 1)
    assert first_decode >= 3                                 # the prompt took several steps
    for step in prefill[:first_decode]:                      # each chunk beside the 3 decodes
        assert all(step[i] == 1 for i in ids) and step["long"] <= 32 - 3
    assert sum(step["long"] for step in prefill[:first_decode]) == len(long.input_ids)
    ref = engine_for(model, caching=False).generate([long], GREEDY)[0].token_ids
    assert outs["long"].token_ids == ref


def test_two_images_behind_the_same_placeholders_share_no_blocks(model):
    a = build(model.config, CASES["one_image"], seed=1)
    b = build(model.config, CASES["one_image"], seed=2)
    assert a.input_ids == b.input_ids and not np.array_equal(a.pixel_values, b.pixel_values)
    engine = engine_for(model)
    engine.generate([a], GREEDY)
    out = engine.generate([b], GREEDY)[0]
    first_image_row = a.input_ids.index(model.config.image_token_id)
    assert out.usage.cached_tokens <= first_image_row // 16 * 16
    assert out.token_ids == engine_for(model, caching=False).generate([b], GREEDY)[0].token_ids


def test_eviction_under_a_small_cache(model):
    from paddle_qwenvl.engine.model_runner import kv_block_bytes
    prompts = [PromptInputs(list(range(10 + 40 * i, 50 + 40 * i))) for i in range(4)]   # 40 tokens each
    ref = [o.token_ids for o in engine_for(model, caching=False).generate(prompts, GREEDY)]
    four_blocks = 4 * kv_block_bytes(model.config.text, 16)
    small = engine_for(model, max_num_seqs=1, max_model_len=64, kv_cache_memory=four_blocks)
    blocks = small.scheduler.block_manager
    assert blocks.num_blocks == 4
    got = [small.generate([p], GREEDY)[0].token_ids for p in prompts]
    assert got == ref
    assert len(blocks.cached) <= 4 and blocks.num_used_blocks == 0
    # the later prompts evicted the first one's blocks: nothing of it is cached any more
    again = small.generate([prompts[0]], GREEDY)[0]
    assert again.usage.cached_tokens == 0 and again.token_ids == ref[0]


def test_abort_of_a_partly_prefilled_cache_hitting_request_frees_only_its_blocks(model):
    first = build(model.config, CASES["two_images"], seed=4)
    engine = engine_for(model, chunk=32)
    answer = engine.generate([first], GREEDY)[0]
    blocks = engine.scheduler.block_manager
    other = engine.add_request(PromptInputs(list(range(3, 13))), GREEDY)
    engine.step()
    held = {b: blocks.ref_counts[b] for b in range(blocks.num_blocks) if blocks.ref_counts[b]}
    rid = engine.add_request(turn(model, first, answer.token_ids, extra=range(40, 100)), GREEDY)
    engine.step()
    seq = engine._requests[rid].seq
    assert 0 < seq.num_computed_tokens < seq.num_tokens - 1           # cache hit, then one chunk
    assert seq.num_cached_tokens > 0
    engine.abort(rid)
    assert {b: blocks.ref_counts[b] for b in range(blocks.num_blocks) if blocks.ref_counts[b]} == held
    engine.abort(other)
    assert blocks.num_used_blocks == 0 and not any(blocks.ref_counts)


def test_preempted_cache_hitting_requests_answer_the_same(model):
    first = build(model.config, CASES["image_and_video"], seed=5)
    prompts = [turn(model, first, [7 + i] * (i + 1)) for i in range(4)]
    ref = [o.token_ids for o in engine_for(model, caching=False).generate(prompts, GREEDY)]
    from paddle_qwenvl.engine.model_runner import kv_block_bytes
    need = -(-(len(prompts[-1].input_ids) + 12) // 16)
    tight = engine_for(model, kv_cache_memory=(need + 3) * kv_block_bytes(model.config.text, 16),
                       max_model_len=need * 16)
    got = [o.token_ids for o in tight.generate(prompts, GREEDY)]
    assert got == ref
    assert tight.scheduler.num_preemptions > 0
    blocks = tight.scheduler.block_manager
    assert blocks.num_used_blocks == 0 and not any(blocks.ref_counts)


def test_a_video_at_another_frame_rate_shares_no_blocks_after_it(model):
    """Seconds per temporal grid set a video's token positions (Qwen2.5-VL): the same frames at
    another rate are other keys and values."""
    if model.config.architecture != "Qwen2_5_VLForConditionalGeneration":
        pytest.skip("Qwen2-VL ignores the frame rate")
    a = build(model.config, [5, 6, ("video", (3, 8, 8), 1.0)] + list(range(20, 60)), seed=2)
    b = PromptInputs(a.input_ids, None, None, a.pixel_values_videos, a.video_grid_thw, [0.5])
    engine = engine_for(model)
    engine.generate([a], GREEDY)
    out = engine.generate([b], GREEDY)[0]
    assert out.usage.cached_tokens <= 2 // 16 * 16 and out.timings.vision == 0   # same frames: encoder cache
    assert out.token_ids == engine_for(model, caching=False).generate([b], GREEDY)[0].token_ids


def test_a_long_video_goes_through_the_tower_a_few_blocks_a_step(model):
    """With chunked prefill the tower runs ahead of the prefill within a per-step budget (the
    decoder work of the chunk less the step's prompt tokens; one block at least when the step had
    none or the tower waited the step before), so a long video never costs one step its whole
    tower pass; the tokens are those of an engine that encodes it at once."""
    video = build(model.config, [5, ("video", (4, 8, 8), 1.0), 6, 7], seed=9)     # 4 x 64 patches
    text = PromptInputs(list(range(20, 40)))
    engine = engine_for(model, caching=False, chunk=16)
    runner, tower, work, prompt_tokens = engine.runner, model.visual, [], []
    budget = runner._patch_blocks(16)

    def counting(run, num_blocks):
        first = run.next_block
        done = type(tower).advance(tower, run, num_blocks)
        work[-1] += (run.next_block - first) * run.num_patches
        return done

    def recording(requests, tokens=0):
        prompt_tokens.append(tokens)
        return type(runner).advance_vision(runner, requests, tokens)
    tower.advance, runner.advance_vision = counting, recording
    try:
        ids = engine.add_requests([text], GREEDY_LONG)
        engine.step()                                           # the text request decodes from here
        ids += engine.add_requests([video], GREEDY)
        prompt_tokens.clear()                                   # the steps from here, as `work`
        outs = {}
        while engine.has_unfinished():
            work.append(0)
            for out in engine.step():
                outs[out.request_id] = out
    finally:
        del tower.advance, runner.advance_vision
    depth = len(tower.blocks)
    assert sum(work) == 4 * 64 * depth                           # every block of every temporal patch, once
    assert 0 < budget < 4 * 64 * depth and max(work) <= max(budget, 64)
    assert sum(1 for w in work if w) >= 4 * 64 * depth // budget
    assert len(prompt_tokens) == len(work) and any(0 < t < 16 for t in prompt_tokens)
    for i, (w, t) in enumerate(zip(work, prompt_tokens)):
        floor = 64 if t == 0 or (i > 0 and work[i - 1] == 0) else 0
        assert w <= max(runner._patch_blocks(16 - t), floor), (i, w, t)
    reference = engine_for(model, caching=False).generate([text, video], [GREEDY_LONG, GREEDY])
    assert [outs[i].token_ids for i in ids] == [r.token_ids for r in reference]


def test_logprobs_are_the_log_softmax_of_the_steps_logits(model):
    """Each generated token's logprob and alternatives, against the logits of the same positions
    (prompt_logits with the tokens as continuation); sampled and greedy rows in one batch."""
    prompts = [build(model.config, CASES["one_image"], seed=1), PromptInputs([5, 6, 7, 8])]
    params = [SamplingParams(temperature=0, max_new_tokens=5, ignore_eos=True, logprobs=3),
              SamplingParams(temperature=1.0, seed=4, max_new_tokens=5, ignore_eos=True, logprobs=0)]
    engine = engine_for(model, caching=False)
    outs = engine.generate(prompts, params)
    for prompt, out, p in zip(prompts, outs, params):
        logits = engine.prompt_logits([prompt], [out.token_ids[:-1]])[0][len(prompt.input_ids) - 1:]
        shifted = logits - logits.max(-1, keepdims=True)
        ref = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        assert [lp.token_id for lp in out.logprobs] == out.token_ids
        for row, lp in zip(ref, out.logprobs):
            assert abs(lp.logprob - row[lp.token_id]) < 1e-4
            assert [t for t, _ in lp.top] == list(np.argsort(-row, kind="stable")[:p.logprobs])
            assert all(abs(v - row[t]) < 1e-4 for t, v in lp.top)
    assert outs[0].logprobs[0].top[0][0] == outs[0].token_ids[0]          # greedy: the top one
    assert engine.generate([prompts[1]], GREEDY)[0].logprobs is None
