"""Chat messages (OpenAI / Qwen shapes) -> canonical messages, their vision parts, and prompt text.

Accepted content parts, in any order:
    {"type": "text", "text": "..."}                        or {"text": "..."}
    {"type": "image", "image": <source>, **options}        or {"image": <source>}
    {"type": "image_url", "image_url": {"url": <source>}}  or "image_url": "<source>"
    {"type": "video", "video": <source or list of frames>, **options}
    {"type": "video_url", "video_url": {"url": <source>}}
Image options: min_pixels, max_pixels, resized_height, resized_width. Video options: fps or
nframes, min_frames, max_frames, video_start, video_end, min_pixels, max_pixels, total_pixels,
resized_height, resized_width, sample_fps (for a list of frames).
"""
import json
from datetime import datetime

from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import InputError

ROLES = ("system", "user", "assistant")


def _url_of(value, kind):
    url = value.get("url") if isinstance(value, dict) else value
    if not url:
        raise InputError(f"{kind} part needs a URL: {{'{kind}': {{'url': ...}}}}")
    return url


def _source(part, media):
    """The source of an image/video part: part[media], or the URL of part[media + "_url"]."""
    if part.get(media) is not None:
        return part[media]
    if part.get(media + "_url") is not None:
        return _url_of(part[media + "_url"], media + "_url")
    raise InputError(f"{media} part has no source; give {{'type': '{media}', '{media}': <path, URL or data>}}")


def _canonical_part(part):
    """One content part -> {"type": "text"|"image"|"video", ...}, options kept."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise InputError(f"a content part must be a dict or a string, got {type(part).__name__}")
    kind = part.get("type")
    options = {k: v for k, v in part.items() if k not in ("type", "image", "image_url", "video", "video_url")}
    for media in ("image", "video"):
        if kind in (media, media + "_url") or (kind is None and (media in part or media + "_url" in part)):
            return {**options, "type": media, media: _source(part, media)}
    if kind in ("text", None) and "text" in part:
        return {"type": "text", "text": part["text"]}
    raise InputError(f"unsupported content part {sorted(part)} (type={kind!r}); use text, image or video parts")


def _canonical_message(message):
    if not isinstance(message, dict) or "role" not in message:
        raise InputError(f"each message must be a dict with 'role' and 'content', got {message!r:.80}")
    if message["role"] not in ROLES:
        raise InputError(f"message role must be one of {ROLES}, got {message['role']!r}")
    content = message.get("content")
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    if not isinstance(content, list):
        raise InputError(f"message content must be a string or a list of parts, got {type(content).__name__}")
    return {"role": message["role"], "content": [_canonical_part(p) for p in content]}


def normalize_messages(messages):
    """(canonical messages, vision parts in order of appearance)."""
    if not isinstance(messages, list) or not messages:
        raise InputError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    canonical = [_canonical_message(m) for m in messages]
    parts = [p for m in canonical if isinstance(m["content"], list)
             for p in m["content"] if p["type"] in ("image", "video")]
    return canonical, parts


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message):
    raise TemplateError(message)


def _environment():
    # The same jinja2 settings transformers uses for apply_chat_template.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


_ENV = _environment()


def render_chat(template, messages, add_generation_prompt=True, **kwargs):
    """The prompt text the chat template makes of canonical `messages`."""
    return _ENV.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, **kwargs)
