"""Accuracy on public benchmarks, scored as each benchmark scores itself.

metrics   the benchmarks' own metrics (VQA accuracy, ANLS, relaxed accuracy, multiple choice)
datasets  readers of each benchmark's published annotation format, from a local copy
prompts   the evaluation prompts Qwen2-VL / Qwen2.5-VL are published with
tasks     task name -> reader, prompt, metric
runner    answers items (resumable JSONL), scores predictions, prints the summary
compare   two runs of the same task side by side
"""
