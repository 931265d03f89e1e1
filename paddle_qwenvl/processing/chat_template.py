"""Chat templates of the published Qwen VL instruct models (jinja2 source).

They are written into test model directories and are the fallback when a model
directory carries no template. Both families render a message list as
    <|im_start|>{role}\n{content}<|im_end|>\n
with each image part as <|vision_start|><|image_pad|><|vision_end|> and each
video part as <|vision_start|><|video_pad|><|vision_end|>, and insert the
default system prompt when the first message is not a system message.
"""

_SYSTEM = (
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
)

_BODY = (
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
)

_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}" + _SYSTEM + _BODY + "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2-VL-*-Instruct (also QVQ) and Qwen2.5-VL-*-Instruct publish the same template.
QWEN2_VL_CHAT_TEMPLATE = _TEMPLATE
QWEN2_5_VL_CHAT_TEMPLATE = _TEMPLATE

CHAT_TEMPLATES = {"qwen2_vl": QWEN2_VL_CHAT_TEMPLATE, "qwen2_5_vl": QWEN2_5_VL_CHAT_TEMPLATE}
DEFAULT_CHAT_TEMPLATE = QWEN2_5_VL_CHAT_TEMPLATE
