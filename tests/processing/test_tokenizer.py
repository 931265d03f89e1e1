"""Tokenizer encode/decode as HF's Qwen2TokenizerFast; streaming decode yields whole characters."""
import pytest

from paddle_qwenvl.processing.tokenizer import IncrementalDecoder, Tokenizer

transformers = pytest.importorskip("transformers")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Numbers 12345 and   spaces\n\nnew lines\ttabs",
    "Unicode: wörld, 你好世界, emoji 🙂👍🏽, accents é è ñ",
    "<|im_start|>user\nHi<|im_end|>\n<|vision_start|><|image_pad|><|vision_end|>",
    "it's we're they'll I'd YOU'VE",
]


@pytest.fixture(scope="module")
def tokenizers(tiny_model_dir):
    model_dir, _ = tiny_model_dir
    return Tokenizer.from_pretrained(str(model_dir)), transformers.AutoTokenizer.from_pretrained(str(model_dir))


@pytest.mark.parametrize("text", TEXTS)
def test_encode_decode_match_hf(tokenizers, text):
    ours, hf = tokenizers
    ids = ours.encode(text)
    assert ids == hf.encode(text)
    assert ours.decode(ids, skip_special_tokens=False) == hf.decode(ids, skip_special_tokens=False) == text
    assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=True)


def test_special_ids(tokenizers, tiny_model_dir):
    ours, hf = tokenizers
    _, ids = tiny_model_dir
    assert ours.eos_token_id == hf.eos_token_id == ids["eos_token_id"]
    assert ours.pad_token_id == hf.pad_token_id == ids["pad_token_id"]
    assert ours.vocab_size == len(hf) == ids["vocab_size"]
    with pytest.raises(KeyError, match="not in the tokenizer's vocabulary"):
        ours.token_to_id("<|no_such_token|>")


@pytest.mark.parametrize("text", TEXTS)
def test_incremental_decoder_streams_the_full_text(tokenizers, text):
    ours, _ = tokenizers
    ids = ours.encode(text)
    decoder = IncrementalDecoder(ours)
    pieces = [decoder.push(i) for i in ids]
    assert "".join(pieces) + decoder.flush() == ours.decode(ids)
    assert all("\ufffd" not in p for p in pieces)


def test_incremental_decoder_holds_back_partial_characters(tokenizers):
    ours, _ = tokenizers
    ids = ours.encode("你")  # one character, several byte-level tokens in this small vocabulary
    assert len(ids) > 1
    decoder = IncrementalDecoder(ours)
    assert [decoder.push(i) for i in ids] == [""] * (len(ids) - 1) + ["你"]


def test_incremental_decoder_flushes_an_unfinished_character(tokenizers):
    ours, _ = tokenizers
    ids = ours.encode("a🙂")
    decoder = IncrementalDecoder(ours)
    assert "".join(decoder.push(i) for i in ids[:-1]) == "a"
    assert decoder.flush() == "\ufffd"
