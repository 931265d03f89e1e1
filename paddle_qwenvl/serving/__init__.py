"""The OpenAI-compatible server (`paddle-qwenvl serve`): protocol.py turns OpenAI requests into
messages and SamplingParams and outputs back into OpenAI objects; app.py is the HTTP app;
metrics.py its Prometheus metrics; media.py checks and fetches images and videos; tools.py and
tool_parser.py put tools into the prompt and tool calls out of the output; guidance.py and grammar.py
turn response_format and forced tool calls into grammar constraints (llguidance). Needs the `serve`
extra (FastAPI, uvicorn, prometheus_client, llguidance)."""
