"""The tiny tokenizer files load in HF transformers and render the published chat template."""
import json

import jinja2
import pytest

from paddle_qwenvl.processing.chat_template import CHAT_TEMPLATES
from paddle_qwenvl.tools.tiny_tokenizer import QWEN2_VL_SPECIAL_TOKENS, write_processor_files

transformers = pytest.importorskip("transformers")

MESSAGES = [
    {"role": "user", "content": [
        {"type": "image", "image": "file:///x.png"},
        {"type": "text", "text": "What is shown in this image?"},
    ]},
    {"role": "assistant", "content": "A red house by a river."},
    {"role": "user", "content": [
        {"type": "video", "video": "file:///v.mp4"}, {"type": "text", "text": "And here?"}]},
]


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def model_dir(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    ids = write_processor_files(str(out), request.param, max_pixels=64 * 28 * 28)
    return out, request.param, ids


def _render(template, messages, add_generation_prompt):
    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)


def test_ids_follow_qwen_special_token_order(model_dir):
    out, family, ids = model_dir
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    first = tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.convert_tokens_to_ids(QWEN2_VL_SPECIAL_TOKENS) == list(range(first, first + 14))
    assert ids["vision_start_token_id"] == first + 9 and ids["image_token_id"] == first + 12
    assert ids["eos_token_id"] == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert ids["pad_token_id"] == tok.pad_token_id == first
    assert ids["vocab_size"] == len(tok) == first + (22 if family == "qwen2_5_vl" else 14)


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_hf_chat_template_matches_ours(model_dir, add_generation_prompt):
    out, family, _ = model_dir
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    hf = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert hf == _render(CHAT_TEMPLATES[family], MESSAGES, add_generation_prompt)
    assert hf.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert hf.count("<|image_pad|>") == 1 and hf.count("<|video_pad|>") == 1


def test_special_tokens_encode_as_single_ids(model_dir):
    out, _, ids = model_dir
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    text = "<|vision_start|><|image_pad|><|vision_end|>Describe it."
    enc = tok.encode(text)
    assert enc[:3] == [ids["vision_start_token_id"], ids["image_token_id"], ids["vision_end_token_id"]]
    assert tok.decode(enc, skip_special_tokens=True) == "Describe it."


def test_image_processor_reads_preprocessor_config(model_dir):
    out, _, _ = model_dir
    proc = transformers.Qwen2VLImageProcessor.from_pretrained(str(out))
    assert (proc.min_pixels, proc.max_pixels) == (3136, 64 * 28 * 28)
    assert (proc.patch_size, proc.temporal_patch_size, proc.merge_size) == (14, 2, 2)
    config = json.loads((out / "preprocessor_config.json").read_text())
    assert proc.image_mean == config["image_mean"] and proc.image_std == config["image_std"]


def test_auto_image_processor_reads_preprocessor_config(model_dir):
    # AutoProcessor itself needs torchvision in transformers 4.57.3 (for its video processor),
    # which is not installed here; AutoImageProcessor resolves the class from the config.
    out, _, _ = model_dir
    proc = transformers.AutoImageProcessor.from_pretrained(str(out), use_fast=False)
    assert type(proc).__name__ == "Qwen2VLImageProcessor" and proc.max_pixels == 64 * 28 * 28


def test_unknown_preprocessor_override_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown preprocessor_config keys"):
        write_processor_files(str(tmp_path), "qwen2_vl", max_pixel=10)
