"""The model's tokenizer from tokenizer.json (the `tokenizers` package), plus streaming decode."""
import json
import os

from tokenizers import Tokenizer as _HFTokenizer


class Tokenizer:
    """Encode/decode with the model directory's tokenizer.json; special tokens stay single ids."""

    def __init__(self, backend, config=None):
        self._backend = backend
        self.config = config or {}
        self.eos_token = self.config.get("eos_token") or "<|im_end|>"
        self.pad_token = self.config.get("pad_token") or "<|endoftext|>"
        self.eos_token_id = self.token_to_id(self.eos_token)
        self.pad_token_id = self.token_to_id(self.pad_token)

    @classmethod
    def from_pretrained(cls, model_dir):
        path = os.path.join(model_dir, "tokenizer.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{model_dir} has no tokenizer.json; copy it from the original model")
        config_path = os.path.join(model_dir, "tokenizer_config.json")
        config = {}
        if os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
        return cls(_HFTokenizer.from_file(path), config)

    @property
    def vocab_size(self):
        """Number of ids including added/special tokens."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token):
        token_id = self._backend.token_to_id(token)
        if token_id is None:
            raise KeyError(f"token {token!r} is not in the tokenizer's vocabulary")
        return token_id

    def encode(self, text):
        """Token ids of `text`; Qwen adds no BOS. Special-token strings map to their single ids."""
        return self._backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens=True):
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def to_json(self) -> str:
        """The tokenizer.json text (what grammar libraries read)."""
        return self._backend.to_str()


REPLACEMENT = "\ufffd"
MAX_HELD = 4      # a UTF-8 character has at most 4 bytes


class IncrementalDecoder:
    """Feed token ids one at a time; get back only complete UTF-8 text increments.

    Byte-level BPE splits characters across tokens, so each step decodes a short window: the
    text of ids[prefix:] minus that of ids[prefix:read]. A trailing U+FFFD means an incomplete
    character: wait for more tokens, but at most MAX_HELD, so invalid bytes (which random or
    confused models emit) still come out instead of holding the stream back forever.
    """

    def __init__(self, tokenizer, skip_special_tokens=True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids = []
        self.prefix_offset = 0    # start of the decoding window
        self.read_offset = 0      # ids before this are already in the text

    def _decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id):
        """Add one id; return the new complete text ('' if none is complete yet)."""
        self.ids.append(int(token_id))
        return self._advance(final=False)

    def flush(self):
        """Whatever is still held back (an incomplete character at the very end)."""
        return self._advance(final=True)

    def _advance(self, final):
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        window = self._decode(self.ids[self.prefix_offset:])
        incomplete = window.endswith(REPLACEMENT) and len(self.ids) - self.read_offset < MAX_HELD
        if len(window) <= len(before) or (incomplete and not final):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return window[len(before):]
