"""Serving engine: sequences, paged KV cache blocks, scheduler, model runner, engine loop.

    sequence.py       one request's tokens, block table, status (plain Python)
    block_manager.py  fixed-size KV cache blocks: allocate / append / free (plain Python)
    scheduler.py      continuous batching, limits, preemption by recompute, abort (plain Python)
    model_runner.py   packs a step, runs vision once per request, the model, sampling
    detokenizer.py    incremental text and stop strings
    llm_engine.py     add_request / step / abort; generate and stream (thread-safe)

No imports here, so the plain-Python modules load without the tensor ones.
"""
