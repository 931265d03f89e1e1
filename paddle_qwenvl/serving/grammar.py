"""Grammar-constrained decoding through llguidance: a JSON schema or a Lark grammar becomes a
factory of per-request TokenConstraints (sampling.TokenConstraint) that the engine's sampler
applies. llguidance is imported here only, on the first constrained request."""
import json
import threading

import numpy as np

from .protocol import RequestError

# JSON as json.dumps writes it: a model cannot pad the output with endless whitespace
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def _llguidance():
    try:
        import llguidance
    except ImportError:
        raise RequestError("structured output needs the llguidance package on the server: "
                           "pip install 'paddle-qwenvl[serve]'", 501, code="not_installed") from None
    return llguidance


class GrammarConstraint:
    """One request's grammar state: the allowed-token mask now, advanced by each sampled token."""

    def __init__(self, matcher, num_tokens: int, eos_ids):
        self.matcher, self.num_tokens, self.eos_ids = matcher, num_tokens, list(eos_ids)

    def allowed(self, vocab_size: int) -> np.ndarray:
        """The tokenizer's tokens the grammar allows; the model's padding rows past them never."""
        from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask
        bitmask = allocate_token_bitmask(1, self.num_tokens)
        fill_next_token_bitmask(self.matcher, bitmask)
        bits = np.unpackbits(bitmask.view(np.uint8), bitorder="little")[:min(self.num_tokens, vocab_size)]
        mask = np.zeros(vocab_size, dtype=bool)
        mask[:len(bits)] = bits.astype(bool)
        if not mask.any():                   # a matcher in error allows nothing: end the request
            mask[self.eos_ids] = True
        return mask

    def advance(self, token_id: int) -> None:
        self.matcher.consume_token(token_id)


class GrammarFactory:
    """Makes a fresh GrammarConstraint for each request (SamplingParams.constraint)."""

    def __init__(self, tokenizer, grammar: str, eos_ids):
        self.tokenizer, self.grammar, self.eos_ids = tokenizer, grammar, eos_ids

    def __call__(self) -> GrammarConstraint:
        matcher = _llguidance().LLMatcher(self.tokenizer, self.grammar, log_level=0)
        return GrammarConstraint(matcher, self.tokenizer.vocab_size, self.eos_ids)


class Grammars:
    """Compiles grammars for one model's tokenizer (read once, on first use) and end-of-text ids."""

    def __init__(self, tokenizer, eos_ids):
        self._source, self.eos_ids = tokenizer, list(eos_ids)
        self._tokenizer = None
        self._lock = threading.Lock()

    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = _llguidance().LLTokenizer(self._source.to_json(), eos_token=self.eos_ids)
            return self._tokenizer

    def json_schema(self, schema: dict, param: str) -> GrammarFactory:
        """Output that is one JSON value matching `schema`."""
        try:
            grammar = _llguidance().LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_OPTIONS)
        except ValueError as exc:
            raise RequestError(f"{param}: not a usable JSON schema: {exc}", param=param) from None
        return self._checked(grammar, param)

    def lark(self, text: str, param: str) -> GrammarFactory:
        """Output that a Lark grammar (llguidance's dialect, %json allowed) accepts."""
        return self._checked(_llguidance().LLMatcher.grammar_from_lark(text), param)

    def _checked(self, grammar: str, param: str) -> GrammarFactory:
        tokenizer = self.tokenizer()
        error = _llguidance().LLMatcher.validate_grammar(grammar, tokenizer)
        if error and not error.startswith("WARNING"):
            raise RequestError(f"{param}: the schema cannot be enforced: {error}", param=param)
        return GrammarFactory(tokenizer, grammar, self.eos_ids)

