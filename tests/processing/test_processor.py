"""Processor end to end: chat template and token ids as HF, pads expanded, overrides, from_prompt."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from paddle_qwenvl.processing import Processor
from paddle_qwenvl.processing.chat_template import DEFAULT_CHAT_TEMPLATE
from paddle_qwenvl.processing.errors import InputError, PlaceholderMismatchError
from paddle_qwenvl.processing.image import ImageOptions, load_image, process_image
from paddle_qwenvl.processing.processor import load_chat_template

from .conftest import write_video

transformers = pytest.importorskip("transformers")


def _image(height=100, width=150, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


MESSAGE_SETS = [
    [{"role": "user", "content": "Hello, who are you?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "What is it?"}]},
     {"role": "assistant", "content": "A cat."},
     {"role": "user", "content": [{"type": "text", "text": "And these?"}, {"type": "image", "image": "b.png"},
                                  {"type": "video", "video": "c.mp4"}, {"type": "text", "text": " Compare."}]}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}},
                                  {"type": "text", "text": "Describe."}]}],
    [{"role": "system", "content": [{"type": "text", "text": "Be exact."}]},
     {"role": "user", "content": [{"image": "a.png"}, {"text": "Count the dogs."}]}],
]


@pytest.mark.parametrize("messages", MESSAGE_SETS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_rendered_prompt_equals_hf_apply_chat_template(tiny_model_dir, messages, add_generation_prompt):
    model_dir, _ = tiny_model_dir
    hf = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    ours = Processor.from_pretrained(str(model_dir)).render(messages, add_generation_prompt)
    assert ours == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def test_add_vision_id_is_passed_to_the_template(tiny_model_dir):
    model_dir, _ = tiny_model_dir
    messages = MESSAGE_SETS[2]
    hf = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    ours = Processor.from_pretrained(str(model_dir)).render(messages, add_vision_id=True)
    assert ours == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, add_vision_id=True)
    assert "Picture 2: <|vision_start|>" in ours and "Video 1: " in ours


def test_video_url_parts_render_as_videos(tiny_model_dir):
    model_dir, _ = tiny_model_dir
    processor = Processor.from_pretrained(str(model_dir))
    text = processor.render([{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "file:///v.mp4"}}, {"type": "text", "text": "Hi"}]}])
    assert "<|vision_start|><|video_pad|><|vision_end|>Hi" in text


def test_input_ids_and_pixels_match_hf_tokenizer_and_image_processor(tiny_model_dir):
    model_dir, ids = tiny_model_dir
    images = [_image(100, 150, 0), _image(300, 200, 1)]
    messages = [{"role": "user", "content": [
        {"type": "image", "image": images[0]}, {"type": "text", "text": "Left and right:"},
        {"type": "image", "image": images[1]}]}]
    out = Processor.from_pretrained(str(model_dir))(messages)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    hf_img = transformers.Qwen2VLImageProcessor.from_pretrained(str(model_dir))
    ref = hf_img(images=images, return_tensors="np")
    assert out.image_grid_thw == [tuple(int(x) for x in g) for g in ref["image_grid_thw"]]
    assert np.abs(out.pixel_values - ref["pixel_values"]).max() <= 1e-6
    # HF's processor expands each <|image_pad|> to t*h*w/4 copies in the text, then tokenizes.
    text = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    for t, h, w in out.image_grid_thw:
        text = text.replace("<|image_pad|>", "<|placeholder|>" * (t * h * w // 4), 1)
    assert out.input_ids == hf_tok.encode(text.replace("<|placeholder|>", "<|image_pad|>"))
    assert out.input_ids.count(ids["image_token_id"]) == sum(t * h * w // 4 for t, h, w in out.image_grid_thw)


def test_video_inputs_and_second_per_grid_ts(tiny_model_dir, tmp_path):
    model_dir, ids = tiny_model_dir
    path = write_video(tmp_path / "v.mp4", 40, 10)  # 4 s at 10 fps
    messages = [{"role": "user", "content": [{"type": "video", "video": str(path), "fps": 1.0},
                                             {"type": "text", "text": "What happens?"}]}]
    out = Processor.from_pretrained(str(model_dir))(messages)
    assert out.pixel_values is None and out.image_grid_thw == []
    assert out.video_grid_thw == [(2, 20, 28)]  # 4 frames; 64x96 raised to the 128-token minimum
    assert out.second_per_grid_ts == [2.0]       # 2 frames per temporal patch at 1 fps
    assert out.pixel_values_videos.shape == (2 * 20 * 28, 1176)
    assert out.input_ids.count(ids["video_token_id"]) == 2 * 20 * 28 // 4


def test_overrides_from_pretrained_per_call_and_per_image(tiny_model_dir):
    model_dir, _ = tiny_model_dir
    image = _image(600, 900)
    messages = lambda part: [{"role": "user", "content": [{"type": "image", "image": image, **part}]}]
    processor = Processor.from_pretrained(str(model_dir))
    assert processor(messages({})).image_grid_thw == [(1, 12, 18)]  # config max 64*28*28: 168x252
    assert processor(messages({}), max_pixels=16 * 28 * 28).image_grid_thw == [(1, 6, 8)]  # 84x112
    small = Processor.from_pretrained(str(model_dir), max_pixels=16 * 28 * 28)
    assert small(messages({})).image_grid_thw == [(1, 6, 8)]
    assert small(messages({"max_pixels": 64 * 28 * 28})).image_grid_thw == [(1, 12, 18)]
    assert processor(messages({"resized_height": 56, "resized_width": 84})).image_grid_thw == [(1, 4, 6)]
    with pytest.raises(TypeError, match="unknown processor options"):
        processor(messages({}), max_pixel=5)


def test_from_prompt_with_placeholders_and_shorthand(tiny_model_dir):
    model_dir, ids = tiny_model_dir
    processor = Processor.from_pretrained(str(model_dir))
    image = _image()
    full = processor.from_prompt("<|vision_start|><|image_pad|><|vision_end|>Describe.", images=[image])
    short = processor.from_prompt("<image>Describe.", images=[image])
    assert full.input_ids == short.input_ids
    assert full.input_ids[0] == ids["vision_start_token_id"]
    assert full.image_grid_thw == [(1, 8, 10)]
    assert full.input_ids.count(ids["image_token_id"]) == 8 * 10 // 4


def test_more_images_than_placeholders_is_rejected(tiny_model_dir):
    model_dir, _ = tiny_model_dir
    processor = Processor.from_pretrained(str(model_dir))
    with pytest.raises(PlaceholderMismatchError, match="2 image\\(s\\) given but the prompt has 1"):
        processor.from_prompt("<image>Describe.", images=[_image(), _image()])
    with pytest.raises(PlaceholderMismatchError, match="0 video\\(s\\) given but the prompt has 1"):
        processor.from_prompt("<video>Describe.")


def test_sources_path_file_url_data_url_and_array_give_identical_pixels(tiny_model_dir, tmp_path):
    model_dir, _ = tiny_model_dir
    image = _image()
    image.save(tmp_path / "a.png")
    data_url = "data:image/png;base64," + base64.b64encode((tmp_path / "a.png").read_bytes()).decode()
    processor = Processor.from_pretrained(str(model_dir))
    outs = [processor.from_prompt("<image>", images=[s]).pixel_values
            for s in (image, np.asarray(image), str(tmp_path / "a.png"), f"file://{tmp_path}/a.png", data_url)]
    for other in outs[1:]:
        assert np.array_equal(outs[0], other)


def test_chat_template_falls_back_to_the_standard_one(tmp_path):
    assert load_chat_template(str(tmp_path)) == DEFAULT_CHAT_TEMPLATE
    (tmp_path / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert load_chat_template(str(tmp_path)) == "{{ messages[0]['content'] }}"


@pytest.mark.parametrize("messages,match", [
    ([], "non-empty list"),
    ([{"role": "robot", "content": "hi"}], "role must be one of"),
    ([{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}]}], "unsupported content part"),
    ([{"role": "user", "content": 5}], "string or a list"),
])
def test_malformed_messages_are_rejected(tiny_model_dir, messages, match):
    model_dir, _ = tiny_model_dir
    with pytest.raises(InputError, match=match):
        Processor.from_pretrained(str(model_dir))(messages)


def test_part_shapes_normalise_to_canonical_parts():
    from paddle_qwenvl.processing.messages import normalize_messages
    parts = [{"type": "image_url", "image_url": "http://x/a.png"}, {"type": "video_url", "video_url": {"url": "v.mp4"}},
             {"image": "b.png", "max_pixels": 1000}, "plain text", {"video": ["f1.png", "f2.png"], "fps": 1}]
    _, vision = normalize_messages([{"role": "user", "content": parts}])
    assert vision == [{"type": "image", "image": "http://x/a.png"}, {"type": "video", "video": "v.mp4"},
                      {"type": "image", "image": "b.png", "max_pixels": 1000},
                      {"type": "video", "video": ["f1.png", "f2.png"], "fps": 1}]
    with pytest.raises(InputError, match="image part has no source"):
        normalize_messages([{"role": "user", "content": [{"type": "image"}]}])
