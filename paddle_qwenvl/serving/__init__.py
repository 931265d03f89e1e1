"""The OpenAI-compatible server (`paddle-qwenvl serve`): protocol.py turns OpenAI requests into
messages and SamplingParams and outputs back into OpenAI objects; app.py is the HTTP app;
metrics.py its Prometheus metrics. Needs the `serve` extra (FastAPI, uvicorn, prometheus_client)."""
