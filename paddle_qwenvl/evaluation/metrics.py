"""The benchmarks' own metrics, each a function of one prediction and its references -> score in [0, 1].

vqa_accuracy      VQA / TextVQA (visualqa.org/evaluation.html and its vqaEval.py; TextVQA's EvalAI
                  evaluator): answers normalised, min(#humans agreeing / 3, 1) averaged over the
                  10-choose-9 subsets of the human answers.
anls              DocVQA / ST-VQA (Biten et al., ICCV 2019): 1 - normalised Levenshtein distance to the
                  closest reference, 0 when that distance is 0.5 or more.
relaxed_accuracy  ChartQA (Masry et al., ACL Findings 2022; the relaxed_correctness of pix2struct that
                  Qwen-VL's and VLMEvalKit's ChartQA scoring use): numbers within 5% of the reference,
                  other answers exact (case-insensitive).
mmmu_choice       MMMU's parse_multi_choice_response (MMMU-Benchmark/MMMU eval_utils.py), except that
                  an answer naming no option scores 0 instead of a random guess.
videomme_choice   Video-MME's extract_characters_regex (its eval_your_results.py).
"""
import re
from typing import Dict, Optional, Sequence

# vqaEval.py's tables, as published (capitalised keys never match: answers are lowercased first)
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")     # vqaEval.py's pattern: a period not before a digit
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def normalize_vqa_answer(text: str) -> str:
    """vqaEval.py's processPunctuation + processDigitArticle: 'Two dogs.' -> '2 dogs', 'dont' -> "don't",
    '100,978' -> '100978'; apostrophes and colons stay ("girl's", '2:50')."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_and_articles(_punctuation(text))


def _punctuation(text: str) -> str:
    out = text
    between_digits = COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if p + " " in text or " " + p in text or between_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out)


def _digits_and_articles(text: str) -> str:
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Mean over leaving out each human answer of min(#remaining humans who gave `prediction` / 3, 1).
    With 10 answers: 1 agreeing human -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1.0."""
    if not answers:
        raise ValueError("a VQA item needs its human answers")
    pred = normalize_vqa_answer(prediction)
    gts = [normalize_vqa_answer(a) for a in answers]
    matches = sum(g == pred for g in gts)
    scores = [min(1.0, (matches - (g == pred)) / 3) for g in gts]
    return sum(scores) / len(scores)


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalised Levenshtein Similarity of one answer: answers lowercased, spaces collapsed."""
    pred = " ".join(prediction.strip().lower().split())
    best = 0.0
    for answer in answers:
        ref = " ".join(answer.strip().lower().split())
        longest = max(len(ref), len(pred))
        distance = levenshtein(ref, pred) / longest if longest else 0.0
        best = max(best, 1.0 - distance if distance < threshold else 0.0)
    return best


def _to_float(text: str) -> Optional[float]:
    try:
        return float(text.rstrip("%")) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return None


def relaxed_accuracy(prediction: str, answers: Sequence[str], tolerance: float = 0.05) -> float:
    """1 when the answer matches any reference: a number within `tolerance` relative error
    ('45%' reads as 0.45), anything else (and a reference of 0) by case-insensitive equality."""
    pred = prediction.strip()
    for answer in answers:
        ref = answer.strip()
        pred_number, ref_number = _to_float(pred), _to_float(ref)
        if pred_number is not None and ref_number:
            if abs(pred_number - ref_number) / abs(ref_number) <= tolerance:
                return 1.0
        elif pred.lower() == ref.lower():
            return 1.0
    return 0.0


def mmmu_choice(response: str, options: Dict[str, str]) -> Optional[str]:
    """The option letter a free answer names, by MMMU's rules: '(B)' first, then a bare ' B ', then
    (answers over 5 words) an option's text; of several, the one named last. None if none is named."""
    for char in ",.!?;:'":
        response = response.strip(char)
    response = f" {response} "
    for pattern in ("({})", " {} "):
        found = {c: response.rfind(pattern.format(c)) for c in options if pattern.format(c) in response}
        if found:
            return max(found, key=found.get)
    if len(response.split()) > 5:
        lower = response.lower()
        found = {c: lower.rfind(text.lower()) for c, text in options.items() if text.lower() in lower}
        if found:
            return max(found, key=found.get)
    return None


VIDEOMME_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                     "The best option is", "The correct option is", "Best answer:", "Best option:",
                     "Answer:", "Option:")


def videomme_choice(response: str, options: Dict[str, str]) -> Optional[str]:
    """The first option letter (a capital) in the answer once Video-MME's answer prefixes are
    removed, as Video-MME reads it (so 'Cats' reads as C); None when there is none."""
    text = response.strip()
    for prefix in VIDEOMME_PREFIXES:
        text = text.replace(prefix, "")
    letters = "".join(options) or "ABCD"
    match = re.search(f"[{letters}]", text)
    return match[0] if match else None
