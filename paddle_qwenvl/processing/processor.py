"""Processor: chat messages with images/videos -> token ids and vision-tower inputs.

    processor = Processor.from_pretrained(model_dir, max_pixels=512 * 28 * 28)
    inputs = processor(messages)          # ProcessedInputs
Each <|image_pad|> / <|video_pad|> in the rendered prompt becomes t*h*w / merge_size**2 copies,
one per vision-tower output token of its image / video (grid_thw = (t, h, w) in patches).
"""
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from .chat_template import DEFAULT_CHAT_TEMPLATE
from .errors import PlaceholderMismatchError
from .image import ImageOptions, load_image, process_image
from .messages import normalize_messages, render_chat
from .sources import FetchOptions
from .tokenizer import Tokenizer
from .video import VideoOptions, process_video

# Processor overrides -> (options group, field name).
_OVERRIDES = {
    "min_pixels": ("image", "min_pixels"), "max_pixels": ("image", "max_pixels"),
    "max_input_pixels": ("image", "max_input_pixels"),
    "fps": ("video", "fps"), "min_frames": ("video", "min_frames"), "max_frames": ("video", "max_frames"),
    "video_min_pixels": ("video", "min_pixels"), "video_max_pixels": ("video", "max_pixels"),
    "video_total_pixels": ("video", "total_pixels"), "sample_fps": ("video", "sample_fps"),
    "allow_remote": ("fetch", "allow_remote"), "timeout": ("fetch", "timeout"),
    "max_download_bytes": ("fetch", "max_bytes"),
}
_CONFIG_KEYS = ("min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size",
                "image_mean", "image_std", "rescale_factor")


@dataclass
class ProcessedInputs:
    input_ids: List[int]                          # pads expanded
    pixel_values: Optional[np.ndarray] = None     # (sum t*h*w, 1176) float32, all images
    image_grid_thw: List[Tuple[int, int, int]] = field(default_factory=list)
    pixel_values_videos: Optional[np.ndarray] = None
    video_grid_thw: List[Tuple[int, int, int]] = field(default_factory=list)
    second_per_grid_ts: List[float] = field(default_factory=list)  # one per video
    prompt: str = ""                              # rendered text before pad expansion


def _read_json(path):
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _template_from(value):
    # tokenizer_config may hold a list of named templates; "default" is the chat one.
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value}
        return named.get("default")
    return value


def load_chat_template(model_dir):
    """The model directory's chat template, else the standard Qwen VL template."""
    jinja_path = os.path.join(model_dir, "chat_template.jinja")
    if os.path.isfile(jinja_path):
        with open(jinja_path, encoding="utf-8") as f:
            return f.read()
    for name in ("chat_template.json", "tokenizer_config.json"):
        template = _template_from(_read_json(os.path.join(model_dir, name)).get("chat_template"))
        if template:
            return template
    return DEFAULT_CHAT_TEMPLATE


def _image_options(model_dir):
    config = _read_json(os.path.join(model_dir, "preprocessor_config.json"))
    values = {k: config[k] for k in _CONFIG_KEYS if config.get(k) is not None}
    size = config.get("size") or {}  # newer configs keep the limits in size{shortest,longest}_edge
    values.setdefault("min_pixels", size.get("shortest_edge", ImageOptions.min_pixels))
    values.setdefault("max_pixels", size.get("longest_edge", ImageOptions.max_pixels))
    return ImageOptions(**values)


def _split_overrides(overrides):
    unknown = sorted(set(overrides) - set(_OVERRIDES))
    if unknown:
        raise TypeError(f"unknown processor options {unknown}; known: {sorted(_OVERRIDES)}")
    groups = {"image": {}, "video": {}, "fetch": {}}
    for key, value in overrides.items():
        group, name = _OVERRIDES[key]
        groups[group][name] = value
    return groups


def _concat(arrays):
    return np.concatenate(arrays, axis=0) if arrays else None


def _replace_markers(text):
    # from_prompt shorthand: <image> / <video> stand for a whole vision block.
    return (text.replace("<image>", "<|vision_start|><|image_pad|><|vision_end|>")
                .replace("<video>", "<|vision_start|><|video_pad|><|vision_end|>"))


class Processor:
    def __init__(self, tokenizer, chat_template, image_options, video_options=VideoOptions(),
                 fetch_options=FetchOptions()):
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.image_options = image_options
        self.video_options = video_options
        self.fetch_options = fetch_options
        self.image_token_id = tokenizer.token_to_id("<|image_pad|>")
        self.video_token_id = tokenizer.token_to_id("<|video_pad|>")

    @classmethod
    def from_pretrained(cls, model_dir, **overrides):
        """Tokenizer, chat template and preprocessor config of `model_dir`, plus overrides
        (min_pixels, max_pixels, fps, video_total_pixels, allow_remote, ...)."""
        base = cls(Tokenizer.from_pretrained(model_dir), load_chat_template(model_dir),
                   _image_options(model_dir))
        return base.with_options(**overrides)

    def with_options(self, **overrides):
        """A copy of this processor with options replaced (see _OVERRIDES for the names)."""
        if not overrides:
            return self
        groups = _split_overrides(overrides)
        return Processor(
            self.tokenizer, self.chat_template,
            dataclasses.replace(self.image_options, **groups["image"]),
            dataclasses.replace(self.video_options, **groups["video"]),
            dataclasses.replace(self.fetch_options, **groups["fetch"]))

    def render(self, messages, add_generation_prompt=True, **template_kwargs):
        """Prompt text of `messages` (pads not yet expanded)."""
        canonical, _ = normalize_messages(messages)
        return self._render(canonical, add_generation_prompt, template_kwargs)

    def _render(self, canonical, add_generation_prompt, template_kwargs):
        special = {"eos_token": self.tokenizer.eos_token, "pad_token": self.tokenizer.pad_token}
        return render_chat(self.chat_template, canonical, add_generation_prompt, **special, **template_kwargs)

    def __call__(self, messages, add_generation_prompt=True, chat_template_kwargs=None, **overrides):
        """Messages -> ProcessedInputs; `overrides` apply to this call only."""
        proc = self.with_options(**overrides)
        canonical, parts = normalize_messages(messages)
        prompt = proc._render(canonical, add_generation_prompt, chat_template_kwargs or {})
        images = [(p["image"], p) for p in parts if p["type"] == "image"]
        videos = [(p["video"], p) for p in parts if p["type"] == "video"]
        return proc._process(prompt, images, videos)

    def from_prompt(self, text, images=(), videos=(), **overrides):
        """A ready prompt (no chat template applied) with its images and videos.

        Rule: the i-th <|image_pad|> in `text` belongs to images[i] and the i-th <|video_pad|>
        to videos[i]; write each as <|vision_start|><|image_pad|><|vision_end|> (or the
        shorthand <image> / <video>, replaced by exactly that block).
        """
        proc = self.with_options(**overrides)
        return proc._process(_replace_markers(text), [(s, {}) for s in images], [(s, {}) for s in videos])

    def _process(self, prompt, images, videos):
        ids = self.tokenizer.encode(prompt)
        self._check_placeholders(ids, self.image_token_id, len(images), "image")
        self._check_placeholders(ids, self.video_token_id, len(videos), "video")
        image_out = [self._image(source, part) for source, part in images]
        video_out = [self._video(source, part) for source, part in videos]
        return ProcessedInputs(
            input_ids=self._expand(ids, [g for _, g in image_out], [g for _, g, _ in video_out]),
            pixel_values=_concat([p for p, _ in image_out]),
            image_grid_thw=[g for _, g in image_out],
            pixel_values_videos=_concat([p for p, _, _ in video_out]),
            video_grid_thw=[g for _, g, _ in video_out],
            second_per_grid_ts=[s for _, _, s in video_out],
            prompt=prompt)

    def _image(self, source, part):
        image = load_image(source, self.fetch_options, self.image_options.max_input_pixels)
        patches, grid = process_image(image, self.image_options, part)
        return patches, tuple(int(x) for x in grid)

    def _video(self, source, part):
        patches, grid, second_per_grid_t = process_video(
            source, self.image_options, self.video_options, part, self.fetch_options)
        return patches, tuple(int(x) for x in grid), float(second_per_grid_t)

    @staticmethod
    def _check_placeholders(ids, token_id, count, kind):
        found = ids.count(token_id)
        if found != count:
            raise PlaceholderMismatchError(
                f"{count} {kind}(s) given but the prompt has {found} <|{kind}_pad|> placeholder(s); "
                f"give one {kind} per <|vision_start|><|{kind}_pad|><|vision_end|>")

    def _expand(self, ids, image_grids, video_grids):
        """Replace the k-th image/video pad by t*h*w / merge**2 copies of itself."""
        merge = self.image_options.merge_size ** 2
        counts = {self.image_token_id: iter(image_grids), self.video_token_id: iter(video_grids)}
        out = []
        for token in ids:
            if token in counts:
                t, h, w = next(counts[token])
                out.extend([token] * (t * h * w // merge))
            else:
                out.append(token)
        return out
