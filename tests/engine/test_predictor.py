"""Predictor end to end on a tiny checkpoint: chat messages with images and a video, batched,
against HF transformers generate() on the same processed inputs, one request at a time."""
import json

import numpy as np
import pytest

from paddle_qwenvl import Predictor, SamplingParams
from paddle_qwenvl.tools.tiny import make_tiny_checkpoint

from hf_parity_utils import hf_greedy

pytest.importorskip("transformers")
FAMILY = "qwen2_5_vl"
MAX_NEW = 8


def frame(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def user(*parts):
    return [{"role": "user", "content": list(parts)}]


MESSAGES = [
    user({"type": "text", "text": "Tell me about the red house by the river."}),
    user({"type": "image", "image": frame(1, 56, 84)}, {"type": "text", "text": "What is shown?"}),
    user({"type": "image", "image": frame(2, 84, 56)}, {"type": "image", "image": frame(3, 56, 56)},
         {"type": "text", "text": "Compare the two pictures."}),
    user({"type": "video", "video": [frame(10 + i, 56, 56) for i in range(4)], "sample_fps": 2,
          "resized_height": 56, "resized_width": 56},
         {"type": "text", "text": "Describe the video."}),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("pred"), family=FAMILY, seed=2)


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor.from_pretrained(model_dir, max_model_len=256, block_size=16,
                                     kv_cache_memory=1 << 21, progress=False)


def as_hf_request(inputs):
    fields = ("input_ids", "pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw",
              "second_per_grid_ts")
    values = {f: getattr(inputs, f) for f in fields}
    return {f: v for f, v in values.items() if v is not None and len(v) > 0}


def test_batched_messages_match_hf_alone(predictor, model_dir):
    greedy = SamplingParams(temperature=0, max_new_tokens=MAX_NEW)
    outs = predictor.generate(MESSAGES, greedy)
    prepared = [predictor.prepare(m) for m in MESSAGES]
    assert prepared[3].second_per_grid_ts == [1.0]        # whole seconds: HF 4.57.3 agrees on rope
    expected = [hf_greedy(str(model_dir), FAMILY, as_hf_request(p), MAX_NEW) for p in prepared]
    assert [o.token_ids for o in outs] == expected
    for out, inputs in zip(outs, prepared):
        assert out.usage.prompt_tokens == len(inputs.input_ids)
        assert out.usage.completion_tokens == len(out.token_ids) <= MAX_NEW
        assert out.finished and out.finish_reason in ("stop", "length")
    assert outs[0].timings.vision == 0 and all(o.timings.vision > 0 for o in outs[1:])
    assert all(o.timings.prefill > 0 for o in outs)


def test_single_request_and_stream(predictor):
    params = SamplingParams(temperature=0, max_new_tokens=MAX_NEW, ignore_eos=True)
    single = predictor.generate(MESSAGES[1], params)
    assert single.request_id and len(single.token_ids) == MAX_NEW
    deltas = list(predictor.stream(MESSAGES[1], params))
    assert "".join(d.delta for d in deltas) == single.text
    assert deltas[-1].finished and deltas[-1].token_ids == single.token_ids


def test_prompt_with_media_request(predictor):
    request = {"prompt": "<|im_start|>user\n<image>Describe.<|im_end|>\n<|im_start|>assistant\n",
               "images": [frame(1, 56, 84)]}
    out = predictor.generate(request, SamplingParams(temperature=0, max_new_tokens=4, ignore_eos=True))
    assert len(out.token_ids) == 4 and out.usage.prompt_tokens == len(predictor.prepare(request).input_ids)


def test_default_sampling_follows_generation_config(predictor, model_dir, tmp_path):
    assert predictor.default_sampling.greedy                  # tiny config: no do_sample
    config = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "repetition_penalty": 1.05}
    params = SamplingParams.from_generation_config(config)
    assert (params.temperature, params.top_k, params.top_p, params.repetition_penalty) == (0.7, 50, 0.8, 1.05)
    qwen2_vl = {"do_sample": True, "top_k": 1, "top_p": 0.001, "temperature": 0.01, "min_p": None}
    params = SamplingParams.from_generation_config(qwen2_vl)
    assert (params.temperature, params.top_k, params.top_p, params.min_p) == (0.01, 1, 0.001, 0.0)
    greedy = SamplingParams.from_generation_config({"repetition_penalty": 1.1, "temperature": 0.3})
    assert greedy.greedy and greedy.repetition_penalty == 1.1


def test_unsupported_options_rejected(model_dir):
    with pytest.raises(ValueError, match="dtype 'float16' is not supported"):
        Predictor.from_pretrained(model_dir, dtype="float16")
    with pytest.raises(ValueError, match="quant_type 'int8' is not supported; use one of"):
        Predictor.from_pretrained(model_dir, quant_type="int8")


def test_weight_only_int8_predictor_generates(model_dir):
    from paddle_qwenvl.layers.linear import WeightOnlyLinear
    predictor = Predictor.from_pretrained(model_dir, quant_type="weight_only_int8", max_model_len=256,
                                          block_size=16, kv_cache_memory=1 << 21, progress=False)
    assert any(isinstance(m, WeightOnlyLinear) for m in predictor.model.sublayers())
    out = predictor.generate(MESSAGES[1], SamplingParams(temperature=0, max_new_tokens=4, ignore_eos=True))
    assert len(out.token_ids) == 4 and out.finish_reason == "length"


def test_bfloat16_predictor_generates_from_images_and_video(model_dir):
    predictor = Predictor.from_pretrained(model_dir, dtype="bfloat16", max_model_len=256, block_size=16,
                                          kv_cache_memory=1 << 21, progress=False)
    assert predictor.dtype == "bfloat16"
    outs = predictor.generate(MESSAGES[2:], SamplingParams(temperature=0, max_new_tokens=4, ignore_eos=True))
    assert [len(o.token_ids) for o in outs] == [4, 4]


def test_auto_dtype_follows_the_checkpoint_and_the_cpu(model_dir, tmp_path):
    """auto: fp32 math for a float32 checkpoint; bf16 math for a bf16 one (as published) where the
    CPU has native bf16, and then the same tokens as asking for bfloat16."""
    from paddle_qwenvl.weights import resolve_dtype
    from paddle_qwenvl.ops._build import build_info
    bf16_dir = make_tiny_checkpoint(tmp_path / "bf16", dtype="bfloat16")
    assert resolve_dtype(model_dir) == "float32"
    assert resolve_dtype(bf16_dir) == ("bfloat16" if build_info()["bf16"] else "float32")
    assert resolve_dtype(bf16_dir, "float32") == "float32"
    with pytest.raises(ValueError, match="dtype 'half' is not supported; use one of"):
        resolve_dtype(bf16_dir, "half")
    greedy = SamplingParams(temperature=0, max_new_tokens=6, ignore_eos=True)
    auto = Predictor.from_pretrained(bf16_dir, max_model_len=256, progress=False)
    asked = Predictor.from_pretrained(bf16_dir, dtype=resolve_dtype(bf16_dir), max_model_len=256, progress=False)
    assert auto.dtype == asked.dtype == resolve_dtype(bf16_dir)
    assert auto.generate(MESSAGES[1], greedy).token_ids == asked.generate(MESSAGES[1], greedy).token_ids


def test_bad_request_shape_rejected(predictor):
    with pytest.raises(TypeError, match="a request is a list of chat messages or a dict with 'prompt'"):
        predictor.generate([MESSAGES[0], "just a string"])


def test_second_chat_turn_reuses_the_first_and_answers_as_without_caching(model_dir):
    """The next turn resends the image and the history: its prefix comes from the cache and the
    image from the encoder cache, and the answer is what a predictor without caches gives."""
    cached = Predictor.from_pretrained(model_dir, progress=False, block_size=16)
    plain = Predictor.from_pretrained(model_dir, progress=False, block_size=16, enable_prefix_caching=False,
                                      encoder_cache_memory=0)
    greedy = SamplingParams(temperature=0, max_new_tokens=MAX_NEW, ignore_eos=True)
    chat = MESSAGES[1]
    first = cached.generate(chat, greedy)
    chat = chat + [{"role": "assistant", "content": first.text},
                   {"role": "user", "content": [{"type": "text", "text": "And the colours?"}]}]
    second = cached.generate(chat, greedy)
    assert second.usage.cached_tokens > 0 and second.timings.vision == 0
    assert second.token_ids == plain.generate(chat, greedy).token_ids


def test_a_benchmark_batch_is_prefilled_in_one_step(model_dir):
    """load_predictor (bench, the deploy scripts): batch_size copies arrive together and one step
    prefills them all, so the batch's decode steps carry no prompt chunks; an explicit
    max_num_batched_tokens, or one request, keeps the engine's budget."""
    from paddle_qwenvl.cli.common import load_predictor
    batch = load_predictor(model_dir, max_model_len=256, batch_size=3)
    assert batch.engine.config.max_num_batched_tokens == 3 * 256
    message = user("Describe these numbers: " + " ".join(str(i) for i in range(60)))
    for _ in range(3):
        batch.engine.add_request(batch.prepare(message), SamplingParams(temperature=0, max_new_tokens=4))
    batch.engine.step()
    seqs = list(batch.engine.scheduler.running)
    assert len(seqs) == 3 and all(s.num_computed_tokens >= s.num_prompt_tokens for s in seqs)
    assert seqs[0].num_prompt_tokens * 3 > 256                   # more than one request's worth of tokens
    assert load_predictor(model_dir, max_model_len=256).engine.config.max_num_batched_tokens == 256
    chunked = load_predictor(model_dir, max_model_len=256, batch_size=3, engine={"max_num_batched_tokens": 64})
    assert chunked.engine.config.max_num_batched_tokens == 64


def test_linear_flops_count_each_stage_from_the_config(predictor):
    """tools.bench.linear_flops (the TFLOP/s bench prints): 2 per multiply-add of the decoder's
    linear layers per prompt token, of the tower's per patch (and the merger's per merged token);
    a repeated image counts once, as the step encodes it once."""
    from paddle_qwenvl.tools.bench import linear_flops
    cfg = predictor.engine.runner.config
    t, v = cfg.text, cfg.vision
    request = user({"type": "image", "image": frame(0, 56, 56)}, {"type": "text", "text": "What is this?"})
    inputs = predictor.prepare(request)
    patches = sum(a * b * c for a, b, c in inputs.image_grid_thw)
    q, kv = t.num_attention_heads * t.head_dim, 2 * t.num_key_value_heads * t.head_dim
    per_token = t.num_hidden_layers * (t.hidden_size * (q + kv) + q * t.hidden_size + 3 * t.hidden_size * t.intermediate_size)
    mlp = (3 if cfg.architecture == "Qwen2_5_VLForConditionalGeneration" else 2) * v.hidden_size * v.intermediate_size
    per_patch = v.depth * (4 * v.hidden_size ** 2 + mlp) + v.patch_dim * v.hidden_size
    merged_dim = v.hidden_size * v.spatial_merge_size ** 2
    merger = merged_dim * merged_dim + merged_dim * v.out_hidden_size
    want = dict(vision=2 * (patches * per_patch + patches // v.spatial_merge_size ** 2 * merger),
                prefill=2 * len(inputs.input_ids) * per_token)
    assert linear_flops(predictor, [request]) == want
    twice = linear_flops(predictor, [request, request])
    assert twice == dict(want, prefill=2 * want["prefill"])
