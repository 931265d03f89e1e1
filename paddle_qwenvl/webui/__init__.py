"""The web chat page (`paddle-qwenvl webui`): a gradio page over an in-process Predictor or a
running `paddle-qwenvl serve`. Needs the `webui` extra."""
