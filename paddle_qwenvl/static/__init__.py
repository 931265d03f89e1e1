"""The static-graph mode: a checkpoint exported as Paddle inference programs (export.py) and run
through paddle.inference (model.py) by the same engine as the dygraph model. Running an export
imports no model classes (paddle_qwenvl.models); exporting does."""

LLM_MODES = ("dynamic", "static")
