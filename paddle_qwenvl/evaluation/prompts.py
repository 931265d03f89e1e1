"""The prompts Qwen2-VL / Qwen2.5-VL are evaluated with, as chat messages (images / videos first).

Sources:
- VQA tasks (TextVQA, DocVQA, ChartQA) and MMMU: Qwen2VLPromptMixin in VLMEvalKit
  (open-compass/VLMEvalKit, vlmeval/vlm/qwen2_vl/prompt.py; contributed by the Qwen team and used
  for their published scores): the question plus "Please try to answer the question with short
  words or phrases if possible."; MMMU as "Question: ...\\nOptions:\\nA. ...\\nPlease select the
  correct answer from the options above.", all images before the text.
- Video-MME: the prompt of the Video-MME release (its README, "w/o subs"), which Qwen2-VL's
  Video-MME scores follow.
"""
from typing import List

from .datasets import Item

SHORT_ANSWER = "\nPlease try to answer the question with short words or phrases if possible."
MCQ_INSTRUCTION = "Please select the correct answer from the options above."
VIDEOMME_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video. "
                        "Respond with only the letter (A, B, C, or D) of the correct option.")


def _message(item: Item, text: str) -> List[dict]:
    content = [{"type": "image", "image": path} for path in item.images]
    content += [{"type": "video", "video": path} for path in item.videos]
    return [{"role": "user", "content": content + [{"type": "text", "text": text}]}]


def vqa_prompt(item: Item) -> List[dict]:
    return _message(item, item.question + SHORT_ANSWER)


def mmmu_prompt(item: Item) -> List[dict]:
    options = "".join(f"{letter}. {text}\n" for letter, text in item.options.items())
    return _message(item, f"Question: {item.question}\nOptions:\n{options}{MCQ_INSTRUCTION}")


def videomme_prompt(item: Item) -> List[dict]:
    options = "\n".join(f"{letter}. {text}" for letter, text in item.options.items())
    return _message(item, f"{VIDEOMME_INSTRUCTION}\n{item.question}\n{options}\nThe best answer is:")
