"""Running a loaded model as users run it: through the engine (model runner, paged KV cache, sampler)."""
from typing import List, Sequence

import numpy as np

from paddle_qwenvl.engine.llm_engine import EngineConfig, LLMEngine
from paddle_qwenvl.sampling import SamplingParams


def make_engine(model, block_size: int = 16, max_model_len: int = 1024, max_num_seqs: int = 2) -> LLMEngine:
    """An engine without a tokenizer (outputs carry token ids only)."""
    config = EngineConfig(max_model_len=max_model_len, block_size=block_size, max_num_seqs=max_num_seqs)
    return LLMEngine(model, None, config)


def prompt_logits(model, inputs, block_size: int = 16, continuation: Sequence[int] = ()) -> np.ndarray:
    """(prompt + continuation tokens, vocab): the prompt in one prefill step, then one decode step
    per continuation token."""
    return make_engine(model, block_size).prompt_logits([inputs], [list(continuation)])[0]


def greedy_ids(model, inputs, max_new_tokens: int = 32, block_size: int = 16) -> List[int]:
    """Greedy token ids after the prompt, EOS ignored: exactly max_new_tokens of them."""
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=True)
    return make_engine(model, block_size).generate([inputs], params)[0].token_ids
