"""Shared by the engine's HF-parity tests: tiny checkpoints, mixed requests, HF greedy reference."""
import numpy as np

PATCH_DIM = 3 * 2 * 14 * 14
MERGE = 4                               # spatial_merge_size ** 2


def text_ids(tokenizer, text):
    return tokenizer.encode(text).ids


def vision_span(config, token_id, grid):
    """<|vision_start|> + one pad token per merged patch + <|vision_end|>."""
    t, h, w = grid
    return [config.vision_start_token_id] + [token_id] * (t * h * w // MERGE) + [config.vision_end_token_id]


def mixed_requests(tokenizer, config, seed=0):
    """Four requests as dicts of HF-processor-style fields: text, image, two images, video."""
    rng = np.random.default_rng(seed)
    pix = lambda grids: rng.normal(size=(sum(t * h * w for t, h, w in grids), PATCH_DIM)).astype(np.float32)
    img1, img2, vid = (1, 4, 6), (1, 6, 4), (2, 4, 4)
    words = lambda s: text_ids(tokenizer, s)
    image = lambda g: vision_span(config, config.image_token_id, g)
    video = lambda g: vision_span(config, config.video_token_id, g)
    return [
        dict(input_ids=words("A picture shows a small red house beside a river.")),
        dict(input_ids=words("Look:") + image(img1) + words("What is shown in this image?"),
             pixel_values=pix([img1]), image_grid_thw=np.array([img1])),
        dict(input_ids=image(img1) + words("and") + image(img2) + words("Compare the two."),
             pixel_values=pix([img1, img2]), image_grid_thw=np.array([img1, img2])),
        dict(input_ids=words("Video:") + video(vid) + words("Describe the children and the dog."),
             pixel_values_videos=pix([vid]), video_grid_thw=np.array([vid]), second_per_grid_ts=[1.0]),
    ]


def hf_greedy(model_dir, family, request, max_new_tokens, **generate_kwargs):
    """Token ids HF transformers `generate()` produces for one request alone (fp32, greedy)."""
    import torch
    import transformers
    cls = (transformers.Qwen2VLForConditionalGeneration if family == "qwen2_vl"
           else transformers.Qwen2_5_VLForConditionalGeneration)
    model = _hf_model(cls, model_dir)
    kwargs = {k: torch.tensor(np.asarray(v)) for k, v in request.items() if k != "input_ids"}
    if family == "qwen2_vl":
        kwargs.pop("second_per_grid_ts", None)
    ids = torch.tensor([request["input_ids"]])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new_tokens, **kwargs, **generate_kwargs)
    return out[0, ids.shape[1]:].tolist()


_HF_MODELS = {}


def _hf_model(cls, model_dir):
    import torch
    if model_dir not in _HF_MODELS:
        _HF_MODELS[model_dir] = cls.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    return _HF_MODELS[model_dir]
