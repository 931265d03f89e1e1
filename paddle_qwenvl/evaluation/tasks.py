"""Task name -> its prompt and its metric."""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from . import metrics, prompts
from .datasets import Item


@dataclass(frozen=True)
class Task:
    name: str
    metric: str                                   # the name the summary shows
    prompt: Callable[[Item], List[dict]]
    metric_fn: Optional[Callable[[str, List[str]], float]] = None                # answer, references
    read_choice: Optional[Callable[[str, Dict[str, str]], Optional[str]]] = None  # multiple choice

    def score(self, item: Item, answer: str) -> Tuple[float, Optional[str]]:
        """(score in [0, 1], the option letter read from `answer` for multiple choice, else None)."""
        if self.read_choice is None:
            return self.metric_fn(answer, item.references), None
        choice = self.read_choice(answer, item.options)
        return float(choice is not None and choice == item.references[0]), choice


TASKS = {task.name: task for task in (
    Task("textvqa", "VQA accuracy", prompts.vqa_prompt, metrics.vqa_accuracy),
    Task("docvqa", "ANLS", prompts.vqa_prompt, metrics.anls),
    Task("chartqa", "relaxed accuracy", prompts.vqa_prompt, metrics.relaxed_accuracy),
    Task("mmmu", "accuracy", prompts.mmmu_prompt, read_choice=metrics.mmmu_choice),
    Task("videomme", "accuracy", prompts.videomme_prompt, read_choice=metrics.videomme_choice),
)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
