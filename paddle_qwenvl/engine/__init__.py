"""Serving engine: sequences, paged KV cache blocks, scheduler, model runner, engine loop."""
