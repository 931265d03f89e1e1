"""One chat turn of the page, as plain functions over the two histories it keeps: the model's
messages (Qwen chat format, files by path) and what the chat box shows (gradio's messages)."""
import contextlib
import mimetypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List

from .backends import Settings

UPDATE_SECONDS = 0.1       # the page redraws the answer at most this often (each redraw costs the browser)
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpeg", ".mpg", ".flv", ".wmv"}


@dataclass
class Turn:
    """What the page shows after each step of a turn."""
    shown: list                    # the chat box's messages
    messages: list                 # the conversation the model sees next time
    stats: str = ""
    error: str = ""


def media_kind(path: str) -> str:
    """'video' for a video file (by suffix or MIME type), else 'image'."""
    mime = mimetypes.guess_type(path)[0] or ""
    return "video" if Path(path).suffix.lower() in VIDEO_SUFFIXES or mime.startswith("video/") else "image"


def user_message(text: str, files: List[str]) -> dict:
    """The model's user turn: images and videos in upload order, then the text."""
    content = [{"type": kind, kind: path} for kind, path in ((media_kind(f), f) for f in files)]
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def shown_user_message(text: str, files: List[str]) -> List[dict]:
    """The chat box's user turn: one bubble per file, then the text."""
    bubbles = [{"role": "user", "content": {"path": f}} for f in files]
    return bubbles + ([{"role": "user", "content": text}] if text else [])


def respond(backend, text: str, files: List[str], shown: list, messages: list,
            settings: Settings) -> Iterator[Turn]:
    """Streams one answer. A bad upload or request (ValueError) or an unreachable server leaves
    both histories as they were and reports the error; the conversation goes on."""
    text = (text or "").strip()
    if not text and not files:
        yield Turn(shown, messages, error="Type a question (and attach images or videos if you like).")
        return
    asked = messages + [user_message(text, files)]
    showing = shown + shown_user_message(text, files)
    try:
        for answer in throttled(backend.stream(asked, settings)):
            reply = {"role": "assistant", "content": answer.text}
            yield Turn(showing + [reply], asked + [reply], answer.stats.line() if answer.stats else "")
    except (ValueError, ConnectionError) as exc:
        yield Turn(shown, messages, error=_describe(exc, files))


def throttled(answers, seconds: float = UPDATE_SECONDS):
    """The answers at most one per `seconds`, and always the last (the one with stats)."""
    last = None
    with contextlib.closing(answers):            # closed early (Stop): the request is aborted
        for answer in answers:
            now = time.monotonic()
            if answer.stats or last is None or now - last >= seconds:
                last = now
                yield answer


def _describe(exc: Exception, files: List[str]) -> str:
    names = ", ".join(Path(f).name for f in files)
    return f"Error: {exc}" + (f" ({names} not added to the conversation: attach other files and ask again)"
                              if files else "")
