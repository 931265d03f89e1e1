"""Our models against HF transformers 4.57.3 on tiny random checkpoints (fp32)."""
import numpy as np
import paddle
import pytest
import torch

from tests.runs import greedy_ids, make_engine, prompt_logits

from .cases import CASES, build

LOGIT_TOL = 1e-4


def hf_kwargs(inputs, family):
    kw = dict(input_ids=torch.tensor([inputs.input_ids]))
    if inputs.image_grid_thw:
        kw.update(pixel_values=torch.tensor(inputs.pixel_values), image_grid_thw=torch.tensor(inputs.image_grid_thw))
    if inputs.video_grid_thw:
        kw.update(pixel_values_videos=torch.tensor(inputs.pixel_values_videos),
                  video_grid_thw=torch.tensor(inputs.video_grid_thw))
        if family == "qwen2_5_vl":
            kw["second_per_grid_ts"] = torch.tensor(inputs.second_per_grid_ts)
    return kw


@pytest.mark.parametrize("case", sorted(CASES))
def test_prefill_logits_match(models, family, case):
    ours, hf, _ = models[family]
    inputs = build(ours.config, CASES[case])
    with torch.no_grad():
        ref = hf(**hf_kwargs(inputs, family)).logits[0].numpy()
    got = prompt_logits(ours, inputs)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= LOGIT_TOL


@pytest.fixture
def bf16_checkpoint(family, tmp_path_factory):
    """family's tiny model written in bf16 (as published): (our float32 model, HF float32, dir)."""
    import transformers
    from paddle_qwenvl.models import load_model
    from paddle_qwenvl.tools.tiny import make_tiny_checkpoint
    from .conftest import HF_CLASSES
    path = make_tiny_checkpoint(tmp_path_factory.mktemp(f"bf16-{family}") / "m", family, seed=1, dtype="bfloat16")
    hf = getattr(transformers, HF_CLASSES[family]).from_pretrained(path, dtype=torch.float32,
                                                                   attn_implementation="eager").eval()
    return load_model(path, progress=False), hf, path


def test_bf16_checkpoint_matches_hf_in_float32(bf16_checkpoint, family):
    """Our float32 model holds the bf16 weights as they are (HF widens them on load): the same
    tolerances as the float32 checkpoints, logits and 32 greedy tokens."""
    ours, hf, _ = bf16_checkpoint
    assert ours.model.layers[0].mlp.gate_up_proj.weight.dtype == paddle.bfloat16
    inputs = build(ours.config, CASES["image_and_video"])
    with torch.no_grad():
        ref = hf(**hf_kwargs(inputs, family)).logits[0].numpy()
    assert np.abs(prompt_logits(ours, inputs) - ref).max() <= LOGIT_TOL
    hf.generation_config.eos_token_id = None
    with torch.no_grad():
        ref_ids = hf.generate(**hf_kwargs(inputs, family), max_new_tokens=32, min_new_tokens=32, do_sample=False,
                              pad_token_id=0)[0, len(inputs.input_ids):].tolist()
    assert greedy_ids(ours, inputs, 32) == ref_ids


@pytest.mark.parametrize("case", ["one_image", "two_images"])
def test_vision_features_match(models, family, case):
    ours, hf, _ = models[family]
    inputs = build(ours.config, CASES[case])
    with torch.no_grad():
        ref = hf.model.get_image_features(torch.tensor(inputs.pixel_values), torch.tensor(inputs.image_grid_thw))
    ref = torch.cat(list(ref)).numpy()
    got = ours.get_image_features(paddle.to_tensor(inputs.pixel_values), inputs.image_grid_thw).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5


def test_video_features_match(models, family):
    ours, hf, _ = models[family]
    inputs = build(ours.config, CASES["image_and_video"])
    with torch.no_grad():
        ref = hf.model.get_video_features(torch.tensor(inputs.pixel_values_videos),
                                          torch.tensor(inputs.video_grid_thw))
    ref = torch.cat(list(ref)).numpy()
    got = ours.get_video_features(paddle.to_tensor(inputs.pixel_values_videos), inputs.video_grid_thw).numpy()
    assert np.abs(got - ref).max() <= 1e-5


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_tokens_match(models, family, case):
    ours, hf, _ = models[family]
    inputs = build(ours.config, CASES[case])
    hf.generation_config.eos_token_id = None
    with torch.no_grad():
        ref = hf.generate(**hf_kwargs(inputs, family), max_new_tokens=32, min_new_tokens=32, do_sample=False,
                          pad_token_id=0)[0, len(inputs.input_ids):].tolist()
    got = greedy_ids(ours, inputs, 32)
    assert got == ref


def test_batch_of_two_packed_matches_hf_padded_batch(models, family):
    """Two prompts of different lengths in one packed prefill step vs HF's left-padded batch."""
    ours, hf, _ = models[family]
    seqs = [build(ours.config, CASES["one_image"], seed=1), build(ours.config, CASES["image_and_video"], seed=2)]
    lens = [len(s.input_ids) for s in seqs]
    got = np.concatenate(make_engine(ours).prompt_logits(seqs))
    width = max(lens)
    ids = torch.tensor([[0] * (width - n) + s.input_ids for n, s in zip(lens, seqs)])
    mask = torch.tensor([[0] * (width - n) + [1] * n for n in lens])
    kw = dict(input_ids=ids, attention_mask=mask,
              pixel_values=torch.tensor(np.concatenate([s.pixel_values for s in seqs])),
              image_grid_thw=torch.tensor(seqs[0].image_grid_thw + seqs[1].image_grid_thw),
              pixel_values_videos=torch.tensor(seqs[1].pixel_values_videos),
              video_grid_thw=torch.tensor(seqs[1].video_grid_thw))
    if family == "qwen2_5_vl":
        kw["second_per_grid_ts"] = torch.tensor(seqs[1].second_per_grid_ts)
    with torch.no_grad():
        ref = hf(**kw).logits.numpy()
    ref = np.concatenate([ref[0, width - lens[0]:], ref[1, width - lens[1]:]])
    assert np.abs(got - ref).max() <= LOGIT_TOL
