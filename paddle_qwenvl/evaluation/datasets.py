"""Readers of each benchmark's published annotation format, from a local copy.

textvqa   TextVQA_0.5.1_val.json: {"data": [{question_id, question, image_id, answers[10]}]};
          images <media>/<image_id>.jpg (media: the JSON's folder, or its train_images/ if present).
docvqa    val_v1.0.json: {"data": [{questionId, question, image: "documents/x.png", answers}]};
          image paths relative to the JSON's folder.
chartqa   test_human.json / test_augmented.json: [{imgname, query, label}]; images <media>/<imgname>
          (media: the JSON's folder, or its png/ if present). Items are numbered from 0.
mmmu      JSONL, one question per line with the fields of the MMMU release: id, question, options
          (a list, or its Python repr), answer (a letter), question_type, image_1 ... image_7 (file
          paths relative to the JSONL's folder). Open questions are left out (noted).
videomme  JSONL with the fields of the Video-MME release: question_id, videoID, question, options
          (["A. ...", "B. ...", ...]), answer, duration; videos <media>/<videoID>.mp4.
--media-dir replaces the default folder of images / videos.
"""
import ast
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple


@dataclass
class Item:
    question_id: str
    question: str
    references: List[str]                  # the accepted answers; for multiple choice, the letter
    images: List[str] = field(default_factory=list)
    videos: List[str] = field(default_factory=list)
    options: Dict[str, str] = field(default_factory=dict)     # letter -> option text
    group: str = ""                        # reported separately in the summary (subject, duration)


def read_dataset(task: str, path, media_dir=None, limit: Optional[int] = None) -> Tuple[List[Item], List[str]]:
    """(items, notes) of `task` from `path`; the first `limit` items when given. Every image and
    video the items name must exist."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"--data {path}: no such file; give the task's annotation file ({task})")
    items, notes = READERS[task](path, Path(media_dir).expanduser() if media_dir else None)
    items = items[:limit] if limit is not None else items
    _check_media(items, path)
    return items, notes


def _check_media(items: List[Item], path: Path) -> None:
    for item in items:
        for media in item.images + item.videos:
            if not Path(media).is_file():
                raise ValueError(f"{path}: item {item.question_id} names {media}, which does not exist; "
                                 "pass --media-dir DIR with the folder holding the images / videos")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None


def read_jsonl(path: Path) -> List[dict]:
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number} is not a JSON object ({exc})") from None
    return rows


def _media_root(path: Path, media_dir: Optional[Path], usual: str) -> Path:
    if media_dir is not None:
        return media_dir
    return path.parent / usual if (path.parent / usual).is_dir() else path.parent


def _entries(data, path: Path, key: str) -> list:
    entries = data.get(key) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of questions{' under ' + repr(key) if key else ''}")
    return entries


def _field(entry: dict, name: str, path: Path):
    if name not in entry:
        raise ValueError(f"{path}: an entry has no {name!r} field ({sorted(entry)[:8]}...); "
                         "is this the right file for the task?")
    return entry[name]


def read_textvqa(path: Path, media_dir: Optional[Path]):
    root = _media_root(path, media_dir, "train_images")
    items = [Item(str(_field(e, "question_id", path)), e["question"], list(_field(e, "answers", path)),
                  images=[str(root / f"{_field(e, 'image_id', path)}.jpg")])
             for e in _entries(_load_json(path), path, "data")]
    return items, []


def read_docvqa(path: Path, media_dir: Optional[Path]):
    root = media_dir or path.parent
    entries = _entries(_load_json(path), path, "data")
    if entries and "answers" not in entries[0]:
        raise ValueError(f"{path} holds no answers (the test split's are not public); "
                         "score that split on the DocVQA site (rrc.cvc.uab.es)")
    items = [Item(str(_field(e, "questionId", path)), e["question"], list(e["answers"]),
                  images=[str(root / _field(e, "image", path))]) for e in entries]
    return items, []


def read_chartqa(path: Path, media_dir: Optional[Path]):
    root = _media_root(path, media_dir, "png")
    items = [Item(str(i), _field(e, "query", path), [str(_field(e, "label", path))],
                  images=[str(root / _field(e, "imgname", path))])
             for i, e in enumerate(_entries(_load_json(path), path, ""))]
    return items, []


def read_mmmu(path: Path, media_dir: Optional[Path]):
    root = media_dir or path.parent
    items, open_questions = [], 0
    for row in read_jsonl(path):
        if row.get("question_type", "multiple-choice") != "multiple-choice":
            open_questions += 1
            continue
        options = _field(row, "options", path)
        options = ast.literal_eval(options) if isinstance(options, str) else options
        images = [str(root / row[f"image_{i}"]) for i in range(1, 8) if row.get(f"image_{i}")]
        qid = str(_field(row, "id", path))
        items.append(Item(qid, row["question"], [_field(row, "answer", path)], images=images,
                          options=dict(zip(string.ascii_uppercase, options)), group=_mmmu_subject(qid)))
    notes = [f"{open_questions} open (not multiple-choice) questions left out"] if open_questions else []
    return items, notes


def _mmmu_subject(question_id: str) -> str:
    """'validation_Art_Theory_12' -> 'Art_Theory'."""
    parts = question_id.split("_")
    return "_".join(parts[1:-1]) if len(parts) > 2 else ""


def read_videomme(path: Path, media_dir: Optional[Path]):
    root = media_dir or path.parent
    items = []
    for row in read_jsonl(path):
        options = dict(_split_option(o) for o in _field(row, "options", path))
        items.append(Item(str(_field(row, "question_id", path)), row["question"], [_field(row, "answer", path)],
                          videos=[str(root / f"{_field(row, 'videoID', path)}.mp4")], options=options,
                          group=row.get("duration", "")))
    return items, []


def _split_option(option: str) -> Tuple[str, str]:
    """'A. A red ball.' -> ('A', 'A red ball.')."""
    letter, _, text = option.partition(".")
    return letter.strip(), text.strip()


READERS: Dict[str, Callable] = dict(textvqa=read_textvqa, docvqa=read_docvqa, chartqa=read_chartqa,
                                    mmmu=read_mmmu, videomme=read_videomme)
