"""Serving engine: sequences, paged KV cache blocks, scheduler, model runner, sampler, engine loop.

    sequence.py       a request's tokens, block table, status (plain Python)
    block_manager.py  fixed-size KV cache blocks: allocate / append / free (plain Python)
    scheduler.py      continuous batching, limits, preemption by recompute, abort (plain Python)
    inputs.py         what a request hands the engine: prompt ids and processed pixels
    request.py        the engine's per-request state: sampling, stop ids, text, media, timings
    sampler.py        logits processing and one token per row, each row with its own parameters
    model_runner.py   packs a step, runs vision once per request, the model, the sampler
    detokenizer.py    stop strings over incrementally decoded text
    outputs.py        what generate returns per request
    llm_engine.py     add_request / step / abort; generate, stream, prompt_logits (thread-safe)

No imports here, so the plain-Python modules load without the tensor ones.
"""
