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


class IncrementalDecoder:
    """Feed token ids one at a time; get back only complete UTF-8 text increments.

    A multi-byte character split across tokens decodes to U+FFFD until its last byte arrives,
    so text ending in U+FFFD is held back. Decoding a short window (from `_prefix` on) rather
    than all ids keeps each step cheap and lets byte-level merges settle.
    """

    def __init__(self, tokenizer, skip_special_tokens=True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self._ids = []
        self._prefix = 0   # start of the window that is re-decoded each step
        self._read = 0     # ids up to here have been emitted

    def _text(self, start, end):
        return self.tokenizer.decode(self._ids[start:end], self.skip_special_tokens)

    def push(self, token_id):
        """Add one id; return the new complete text ('' if none is complete yet)."""
        self._ids.append(int(token_id))
        emitted = self._text(self._prefix, self._read)
        full = self._text(self._prefix, len(self._ids))
        if len(full) <= len(emitted) or full.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return full[len(emitted):]

    def flush(self):
        """Whatever is left (an incomplete character decodes as U+FFFD) at the end of a stream."""
        rest = self._text(self._prefix, len(self._ids))[len(self._text(self._prefix, self._read)):]
        self._prefix = self._read = len(self._ids)
        return rest
