"""Tooling, not runtime: random checkpoints (tiny ones and real-size presets), the demo's model,
the tiny tokenizer, the checkpoint writer (and save_quantized), and the benchmark toolkit.

    tiny.py, presets.py, tiny_tokenizer.py   random checkpoints in the published HF format
    demo_model.py                            the embedded demo's cached checkpoint
    weight_writer.py                         sharded safetensors writer; save_quantized
    timing.py, roofline.py, bench.py         the benchmarks' timer, probe, roofline rows, request runs
"""
