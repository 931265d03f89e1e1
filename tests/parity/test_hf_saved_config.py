"""A checkpoint that transformers 4.57.3 saves for a model built from a config (its config.json has
no top-level `architectures` and no special token ids) loads by model_type, as HF loads it."""
import json

import numpy as np
import pytest
import torch
import transformers

from paddle_qwenvl.config import ModelConfig
from paddle_qwenvl.engine.inputs import PromptInputs
from paddle_qwenvl.models import load_model
from tests.runs import prompt_logits

CONFIG_CLASSES = {"qwen2_vl": "Qwen2VLConfig", "qwen2_5_vl": "Qwen2_5_VLConfig"}
MODEL_CLASSES = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}


def save_from_config(published_dir, family, out_dir):
    """HF's model built from a config made of the published config's parts, saved by save_pretrained."""
    published = json.loads((published_dir / "config.json").read_text())
    text = {k: v for k, v in published.items() if k not in ("vision_config", "architectures", "model_type")}
    config = getattr(transformers, CONFIG_CLASSES[family])(text_config=text, vision_config=published["vision_config"])
    torch.manual_seed(0)
    model = getattr(transformers, MODEL_CLASSES[family])(config).eval()
    model.save_pretrained(out_dir)
    return model.float()            # saved as the config's dtype says; compared in fp32 (widening is exact)


def test_saved_config_has_architectures_only_inside_text_config(tiny_dirs, family, tmp_path):
    save_from_config(tiny_dirs[family], family, tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert "architectures" not in raw and raw["model_type"] == family
    config = ModelConfig.from_dir(tmp_path)
    assert config.architecture == MODEL_CLASSES[family]
    assert (config.image_token_id, config.video_token_id) == (151655, 151656)     # HF's defaults, as HF reads it


def test_model_saved_from_config_loads_and_matches_hf(tiny_dirs, family, tmp_path):
    hf = save_from_config(tiny_dirs[family], family, tmp_path)
    ids = [5, 17, 42, 99, 7, 300, 12, 1, 2, 3]
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor([ids])).logits[0].numpy()
    got = prompt_logits(load_model(tmp_path, progress=False), PromptInputs(ids))
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4


def test_unknown_model_type_without_architectures_says_what_it_needs():
    with pytest.raises(ValueError, match="no 'architectures' entry and model_type 'llava'"):
        ModelConfig.from_dict({"model_type": "llava", "vision_config": {}})
