"""Write a small Qwen-style tokenizer and processor config into a model directory.

The tests build tiny random checkpoints; this gives them tokenizer files that both
HF transformers and our own processor read: a byte-level BPE (~1000 regular tokens)
trained on an embedded English text, followed by the Qwen special tokens in Qwen's order.
"""
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import AddedToken

from ..processing.chat_template import CHAT_TEMPLATES

# Qwen2's pre-tokenizer split pattern (contractions, letters, single digits, punctuation, spaces).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Special tokens in the order Qwen2-VL appends them after the regular vocabulary.
QWEN2_VL_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
# Qwen2.5-VL adds these after them, as added tokens that are not "special" (kept on decode).
QWEN2_5_VL_EXTRA_TOKENS = [
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

_CORPUS = """
A picture shows a small red house beside a river. Two children walk along the bank with a dog,
and the sky above them is bright blue with a few white clouds. In the distance there are green
hills, tall trees and a narrow road that leads to the village. What is shown in this image?
Describe the video in detail. The camera moves slowly from the left to the right, following a
cyclist who rides past a market where people are buying fruit, bread, cheese and flowers.
The quick brown fox jumps over the lazy dog. Please answer the question with a short sentence.
You are a helpful assistant. I can see a cat sitting on a wooden table next to a cup of coffee.
There is a person holding an umbrella in the rain, and the street is wet and shining under the
lights. How many people are in the photo? There are three people: a man, a woman and a child.
The weather today is sunny and warm, but tomorrow it will be cloudy with a chance of rain.
Reading books helps us learn about history, science, language, music, art and the world.
The train leaves the station at nine in the morning and arrives in the city before noon.
Computers process information quickly; they store numbers, words, images and sounds as bytes.
She opened the window, looked at the garden and smiled because the roses had finally bloomed.
We would like to thank everyone who helped us build this project and test it carefully.
Where is the nearest hospital? Turn left at the second street and walk straight for ten minutes.
Mountains, oceans, deserts and forests are different kinds of landscapes found on our planet.
The teacher asked the students to write an essay about their favourite season of the year.
He didn't know what they'd said, but we're sure you'll understand what I've written here.
Count the apples in the basket: one, two, three, four, five, six, seven, eight, nine, ten.
The model reads text and pictures, then writes an answer token by token until it is finished.
Colours such as yellow, orange, purple, black, grey and brown appear in many paintings.
An airplane flies high above the clouds while passengers sleep, read or watch a movie.
The kitchen smells of fresh soup, roasted vegetables, rice and a sweet chocolate cake.
Scientists measure temperature, pressure and speed to understand how systems change over time.
"""


def _corpus_lines():
    # Repeat the text with a few casings so frequent words earn whole-word tokens.
    lines = [line for line in _CORPUS.strip().splitlines() if line]
    return lines * 4 + [line.lower() for line in lines] + [line.upper() for line in lines]


def _train_bpe(vocab_size):
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus_lines(), trainer=trainer)
    return tok


def _added_tokens(family):
    specials = [AddedToken(t, special=True, normalized=False) for t in QWEN2_VL_SPECIAL_TOKENS]
    if family != "qwen2_5_vl":
        return specials
    return specials + [AddedToken(t, special=False, normalized=False) for t in QWEN2_5_VL_EXTRA_TOKENS]


def _token_entry(content, special):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special}


def _tokenizer_config(tok, family):
    decoder = {}
    for token in _added_tokens(family):
        decoder[str(tok.token_to_id(token.content))] = _token_entry(token.content, token.special)
    return {
        "add_bos_token": False, "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": QWEN2_VL_SPECIAL_TOKENS[1:],
        "bos_token": None, "chat_template": CHAT_TEMPLATES[family],
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }


def preprocessor_config(family, **overrides):
    """The published preprocessor_config.json of the family, with `overrides` applied."""
    processor_class = "Qwen2_5_VLProcessor" if family == "qwen2_5_vl" else "Qwen2VLProcessor"
    config = {
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14,
        "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "do_resize": True, "do_convert_rgb": True, "resample": 3,
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": processor_class,
    }
    unknown = set(overrides) - set(config)
    if unknown:
        raise ValueError(f"unknown preprocessor_config keys {sorted(unknown)}; known: {sorted(config)}")
    config.update(overrides)
    return config


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)


def _write_vocab_and_merges(tok, out_dir):
    # The slow Qwen2Tokenizer reads vocab.json + merges.txt; the BPE model can write both.
    tok.model.save(out_dir)


def _token_ids(tok, family):
    ids = {
        "image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>",
        "vision_token_id": "<|vision_pad|>", "bos_token_id": "<|endoftext|>",
        "eos_token_id": "<|im_end|>", "pad_token_id": "<|endoftext|>",
    }
    out = {name: tok.token_to_id(token) for name, token in ids.items()}
    out["vocab_size"] = tok.get_vocab_size(with_added_tokens=True)
    return out


def write_processor_files(out_dir, family="qwen2_vl", vocab_size=1000, **preprocessor_overrides):
    """Write tokenizer.json, tokenizer_config.json, vocab.json, merges.txt, chat_template.json
    and preprocessor_config.json into `out_dir`; return the special token ids and vocab size.

    family: "qwen2_vl" (also QVQ) or "qwen2_5_vl".
    preprocessor_overrides: e.g. max_pixels=64*28*28 for fast tests.
    """
    if family not in CHAT_TEMPLATES:
        raise ValueError(f"family must be one of {sorted(CHAT_TEMPLATES)}, got {family!r}")
    os.makedirs(out_dir, exist_ok=True)
    tok = _train_bpe(vocab_size)
    tok.add_tokens(_added_tokens(family))
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    _write_vocab_and_merges(tok, out_dir)
    _write_json(os.path.join(out_dir, "tokenizer_config.json"), _tokenizer_config(tok, family))
    _write_json(os.path.join(out_dir, "chat_template.json"), {"chat_template": CHAT_TEMPLATES[family]})
    _write_json(os.path.join(out_dir, "preprocessor_config.json"),
                preprocessor_config(family, **preprocessor_overrides))
    return _token_ids(tok, family)
