"""A tiny data set in each benchmark's published format, with images drawn here (Pillow) and the
bundled demo video: write_dataset(task, root) -> the annotation file to pass as --data."""
import json
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

from paddle_qwenvl.cli.common import DEMO_VIDEO


def draw(path: Path, text: str, size=(112, 84), color=(250, 250, 240)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).text((8, size[1] // 2 - 6), text, fill=(20, 20, 20))
    image.save(path)


def draw_bars(path: Path, heights) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (112, 84), "white")
    canvas = ImageDraw.Draw(image)
    for i, height in enumerate(heights):
        canvas.rectangle([10 + 30 * i, 80 - height, 30 + 30 * i, 80], fill=(40, 90, 200))
    image.save(path)


def textvqa(root: Path) -> Path:
    data = [dict(question_id=101, image_id="a1", question="What word is written?",
                 answers=["stop"] * 6 + ["stop sign"] * 2 + ["halt", "the stop"]),
            dict(question_id=102, image_id="a2", question="How many cars?",
                 answers=["two"] * 3 + ["2"] * 3 + ["3", "three", "2 cars", "two"])]
    for row, word in zip(data, ("STOP", "2 CARS")):
        draw(root / "train_images" / f"{row['image_id']}.jpg", word)
    (root / "textvqa.json").write_text(json.dumps({"dataset_name": "textvqa", "data": data}))
    return root / "textvqa.json"


def docvqa(root: Path) -> Path:
    data = [dict(questionId=7, question="What is the date?", image="documents/d7.png", docId=1,
                 answers=["12 March 1998", "March 12, 1998"]),
            dict(questionId=8, question="Who signed the letter?", image="documents/d8.png", docId=2,
                 answers=["John Smith"])]
    draw(root / "documents" / "d7.png", "Date: 12 March 1998", size=(168, 84))
    draw(root / "documents" / "d8.png", "Signed, John Smith", size=(168, 84))
    (root / "val_v1.0.json").write_text(json.dumps({"dataset_name": "docvqa", "dataset_split": "val", "data": data}))
    return root / "val_v1.0.json"


def chartqa(root: Path) -> Path:
    data = [dict(imgname="c1.png", query="What is the value of the tallest bar?", label="60"),
            dict(imgname="c2.png", query="Which bar is the shortest, left or right?", label="Left")]
    draw_bars(root / "png" / "c1.png", [30, 60, 45])
    draw_bars(root / "png" / "c2.png", [20, 50])
    (root / "test_human.json").write_text(json.dumps(data))
    return root / "test_human.json"


def mmmu(root: Path) -> Path:
    rows = [dict(id="validation_Art_1", question="<image 1> Which shape is drawn?", options=str(["circle", "square"]),
                 answer="B", question_type="multiple-choice", image_1="images/m1.png"),
            dict(id="validation_Math_2", question="<image 1> What is 2 + 3?", options=["4", "5", "6", "7"],
                 answer="B", question_type="multiple-choice", image_1="images/m2.png"),
            dict(id="validation_Math_3", question="What is 6 x 7?", options="[]", answer="42",
                 question_type="open")]
    draw(root / "images" / "m1.png", "SQUARE")
    draw(root / "images" / "m2.png", "2 + 3")
    (root / "mmmu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "mmmu.jsonl"


def videomme(root: Path) -> Path:
    rows = [dict(video_id="001", duration="short", domain="Knowledge", videoID="demo", question_id="001-1",
                 task_type="Object Recognition", question="What colour is the ball?",
                 options=["A. Red.", "B. Yellow.", "C. Blue.", "D. Green."], answer="B"),
            dict(video_id="001", duration="short", domain="Knowledge", videoID="demo", question_id="001-2",
                 task_type="Action Recognition", question="What does the ball do?",
                 options=["A. It stays still.", "B. It bounces.", "C. It crosses the scene.", "D. It melts."],
                 answer="C")]
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_VIDEO, root / "demo.mp4")
    (root / "videomme.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "videomme.jsonl"


WRITERS = dict(textvqa=textvqa, docvqa=docvqa, chartqa=chartqa, mmmu=mmmu, videomme=videomme)


def write_dataset(task: str, root) -> Path:
    return WRITERS[task](Path(root))
