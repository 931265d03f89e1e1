"""Every published size builds (1 decoder layer, 1 vision block, random weights) and runs a forward."""
import numpy as np
import paddle
import pytest

from paddle_qwenvl.config import ModelConfig
from paddle_qwenvl.models.registry import build_model
from paddle_qwenvl.tools.presets import PRESETS
from paddle_qwenvl.engine.inputs import PromptInputs
from tests.runs import prompt_logits
from paddle_qwenvl.tools.tiny import hf_config

IDS = dict(vision_start_token_id=151652, vision_end_token_id=151653, image_token_id=151655,
           video_token_id=151656, bos_token_id=151643, eos_token_id=151645)


def one_layer_config(preset):
    family, text, vision = PRESETS[preset]
    vision = dict(vision, depth=1)
    if "fullatt_block_indexes" in vision:
        vision["fullatt_block_indexes"] = [0]
    return ModelConfig.from_dict(hf_config(family, dict(text, num_hidden_layers=1), vision, IDS))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_builds_and_runs_one_forward(preset):
    config = one_layer_config(preset)
    with paddle.no_grad():
        paddle.seed(0)
        model = build_model(config)
        grid = (1, 4, 8)
        ids = [1, 2, IDS["vision_start_token_id"]] + [IDS["image_token_id"]] * 8 + [IDS["vision_end_token_id"], 3]
        pixels = np.random.default_rng(0).standard_normal((32, config.vision.patch_dim)).astype(np.float32)
        logits = prompt_logits(model, PromptInputs(ids, pixels, [grid]))
    assert logits.shape == (len(ids), PRESETS[preset][1]["vocab_size"])
    assert np.isfinite(logits).all()
    del model
