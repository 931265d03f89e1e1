"""Input processing: chat messages with images and videos -> token ids and pixel patches.

    processor = Processor.from_pretrained(model_dir)             # or with min_pixels=..., fps=...
    inputs = processor([{"role": "user", "content": [
        {"type": "image", "image": "photo.jpg"},                  # path, file://, data:, http(s)://,
        {"type": "video", "video": "clip.mp4", "fps": 1.0},       # PIL image or numpy array
        {"type": "text", "text": "What happens?"}]}])
    inputs.input_ids, inputs.pixel_values, inputs.image_grid_thw, inputs.pixel_values_videos,
    inputs.video_grid_thw, inputs.second_per_grid_ts

    processor.from_prompt("<image>Describe.", images=[...])      # a ready prompt, no chat template

Images match HF transformers' Qwen2VLImageProcessor; video sampling and frame sizes follow
qwen-vl-utils; the chat template is the model directory's (else the standard Qwen VL one).
Bad input raises a subclass of InputError (a ValueError) that says what to change.
"""
from .errors import InputError
from .processor import ProcessedInputs, Processor
from .tokenizer import IncrementalDecoder, Tokenizer

__all__ = ["Processor", "ProcessedInputs", "Tokenizer", "IncrementalDecoder", "InputError"]
