"""M-RoPE positions: the docstring's worked example and the video time scale, by hand."""
import numpy as np
import pytest

from paddle_qwenvl.config import ModelConfig
from paddle_qwenvl.processing.rope import get_mrope_positions
from paddle_qwenvl.tools.tiny import TINY_TEXT, TINY_VISION, hf_config

IDS = dict(vision_start_token_id=90, vision_end_token_id=91, image_token_id=92, video_token_id=93)


def config(family):
    text = dict(TINY_TEXT, vocab_size=128)
    return ModelConfig.from_dict(hf_config(family, text, TINY_VISION[family], IDS))


def test_docstring_example_one_image():
    ids = [1, 2, 90, 92, 92, 92, 92, 91, 3]
    pos, delta = get_mrope_positions(ids, [(1, 4, 4)], None, None, config("qwen2_vl"))
    assert pos.tolist() == [[0, 1, 2, 3, 3, 3, 3, 5, 6],
                            [0, 1, 2, 3, 3, 4, 4, 5, 6],
                            [0, 1, 2, 3, 4, 3, 4, 5, 6]]
    assert delta == -2


def test_text_only_positions_are_plain():
    pos, delta = get_mrope_positions([5, 6, 7], None, None, None, config("qwen2_5_vl"))
    assert pos.tolist() == [[0, 1, 2]] * 3 and delta == 0


@pytest.mark.parametrize("seconds, expected_t", [(1.0, [0, 2, 4]), (2.0, [0, 4, 8]), (0.5, [0, 1, 2])])
def test_qwen2_5_video_time_scale(seconds, expected_t):
    # 3 temporal grids of 1 token each (h = w = merge); tokens_per_second = 2 in the tiny config
    ids = [90, 93, 93, 93, 91]
    pos, _ = get_mrope_positions(ids, None, [(3, 2, 2)], [seconds], config("qwen2_5_vl"))
    assert (pos[0, 1:4] - 1).tolist() == expected_t
    assert pos[:, 4].tolist() == [1 + expected_t[-1] + 1] * 3


def test_qwen2_video_ignores_seconds():
    ids = [90, 93, 93, 93, 91]
    pos, _ = get_mrope_positions(ids, None, [(3, 2, 2)], [2.0], config("qwen2_vl"))
    assert pos[0, 1:4].tolist() == [1, 2, 3]


def test_placeholder_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="1 image and 0 video placeholders but 2 image"):
        get_mrope_positions([90, 92, 91], [(1, 2, 2), (1, 2, 2)], None, None, config("qwen2_vl"))
