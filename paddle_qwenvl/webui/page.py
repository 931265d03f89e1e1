"""The gradio page: chat box, a message box taking images and videos, stop and reset buttons,
sampling controls and the stats of the last answer. Works offline: no analytics, no share
link, system fonts only (gradio's default theme would fetch web fonts)."""
import contextlib
import logging
import os

from .backends import Settings
from .session import respond

SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "sans-serif")
MONO_FONTS = ("ui-monospace", "Consolas", "monospace")
CSS = "#error * { color: #b91c1c !important; } #stats * { font-size: 0.9em; }"
UPLOAD_TYPES = ["image", "video"]
NO_SEED = -1


def _gradio():
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"     # read on import
    import gradio
    return gradio


def build_page(backend, title: str):
    """The page's gr.Blocks over `backend` (a LocalBackend or RemoteBackend)."""
    gr = _gradio()
    defaults = backend.defaults()
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"## {title}")
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(elem_id="chat", height=500, label="conversation", render_markdown=False,
                                  buttons=["copy"], feedback_options=None)
                box = gr.MultimodalTextbox(elem_id="message", file_count="multiple", file_types=UPLOAD_TYPES,
                                           sources=["upload"], placeholder="Ask about your images and videos",
                                           show_label=False)
                error = gr.Markdown(elem_id="error")
                stats = gr.Markdown(elem_id="stats")
                with gr.Row():
                    stop = gr.Button("Stop", elem_id="stop", variant="stop")
                    reset = gr.Button("Reset conversation", elem_id="reset")
            with gr.Column(scale=1):
                controls = _sampling_controls(gr, defaults)
        messages = gr.State([])
        interrupts = {}            # session -> "stop" or "reset", for the answer that session is streaming
        box.submit(_answer_fn(gr, backend, interrupts), [box, chat, messages, *controls],
                   [chat, messages, box, stats, error])
        stop.click(_interrupt(gr, interrupts, "stop"), None, None, queue=False)
        reset.click(_interrupt(gr, interrupts, "reset"), None, [chat, messages, box, stats, error], queue=False)
    return page


def _sampling_controls(gr, d: Settings) -> list:
    gr.Markdown("### sampling")
    return [gr.Slider(0.0, 2.0, d.temperature, step=0.05, label="temperature (0 = greedy)", elem_id="temperature"),
            gr.Slider(0.01, 1.0, d.top_p, step=0.01, label="top-p", elem_id="top_p"),
            gr.Slider(0, 200, d.top_k, step=1, label="top-k (0 = off)", elem_id="top_k"),
            gr.Slider(1, 4096, d.max_new_tokens, step=1, label="max new tokens", elem_id="max_new_tokens"),
            gr.Number(NO_SEED if d.seed is None else d.seed, precision=0, minimum=NO_SEED,
                      label=f"seed ({NO_SEED}: a fresh draw each time)", elem_id="seed")]


def _answer_fn(gr, backend, interrupts: dict):
    """The submit handler. The message box is locked while an answer streams (a question sent
    meanwhile would start from a conversation without that answer). Stop and Reset are seen
    between updates: the stream is closed (the request aborted) and this handler has the last word,
    so no late update can undo them."""
    def answer(box, shown, messages, temperature, top_p, top_k, max_new_tokens, seed, request: gr.Request):
        box, session = box or {}, request.session_hash
        interrupts.pop(session, None)
        settings = Settings(float(temperature), float(top_p), int(top_k), int(max_new_tokens),
                            None if seed is None or int(seed) == NO_SEED else int(seed))
        turns = respond(backend, box.get("text", ""), list(box.get("files") or []), shown, messages, settings)
        with contextlib.closing(turns):
            for turn in turns:
                interrupt = interrupts.pop(session, None)
                if interrupt:
                    yield _cleared(gr) if interrupt == "reset" else (turn.shown, turn.messages, _box(gr), "stopped", "")
                    return
                kept = {"text": box.get("text", ""), "files": []} if turn.error else None   # the question stays
                yield turn.shown, turn.messages, _box(gr, kept, bool(turn.stats or turn.error)), turn.stats, turn.error
    return answer


def _interrupt(gr, interrupts: dict, kind: str):
    """Stop or Reset: marks the session's running answer (if any); Reset also clears the page now."""
    def handler(request: gr.Request):
        interrupts[request.session_hash] = kind
        if kind == "reset":
            return _cleared(gr)
    return handler


def _box(gr, value=None, interactive: bool = True):
    return gr.MultimodalTextbox(value=value, interactive=interactive)


def _cleared(gr) -> tuple:
    """chat, messages, box, stats, error of a new conversation."""
    return [], [], _box(gr), "", ""


def launch(page, host: str, port: int) -> None:
    """Serves the page until interrupted."""
    gr = _gradio()
    logging.getLogger("httpx").setLevel(logging.WARNING)      # gradio's start-up self-checks
    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)
    page.queue().launch(server_name=host, server_port=port, share=False, ssr_mode=False, theme=theme, css=CSS,
                        quiet=True, footer_links=[], inbrowser=False, pwa=False, mcp_server=False)
