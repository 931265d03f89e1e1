"""The benchmark metrics against worked examples of their official rules.

VQA: visualqa.org/evaluation.html (the normalisation steps it lists, each with its example, and
"accuracies are averaged over all 10 choose 9 sets of human annotators", so an answer given by
k of 10 humans scores 0.3, 0.6, 0.9, 1.0 for k = 1, 2, 3, 4+).
ANLS: Biten et al., "Scene Text Visual Question Answering" (ICCV 2019), eq. 1 with tau = 0.5, the
DocVQA metric: 1 - NL when NL < 0.5, else 0; the best reference counts.
Relaxed accuracy: Masry et al., "ChartQA" (2022), section 5: numbers within 5% of the gold answer,
text exact; the percent reading follows pix2struct's relaxed_correctness.
Options: MMMU's parse_multi_choice_response and Video-MME's extract_characters_regex.
"""
import pytest

from paddle_qwenvl.evaluation.datasets import Item
from paddle_qwenvl.evaluation.metrics import (anls, mmmu_choice, normalize_vqa_answer, relaxed_accuracy,
                                              videomme_choice, vqa_accuracy)
from paddle_qwenvl.evaluation.tasks import get_task


@pytest.mark.parametrize("raw, normalised", [
    ("Yes", "yes"),                      # lowercase
    ("yes.", "yes"),                     # periods removed ...
    ("3.5", "3.5"),                      # ... except as a decimal point
    ("two", "2"),                        # number words to digits
    ("a dog", "dog"),                    # articles removed
    ("The Stop", "stop"),
    ("dont", "don't"),                   # the page's contraction example
    ("hot-dog", "hot dog"),              # punctuation -> space
    ("girl's", "girl's"),                # apostrophes kept (possessives)
    ("2:50 pm", "2:50 pm"),              # colons kept (times)
    ("100,978", "100978"),               # the page's comma-between-digits example
])
def test_vqa_normalisation_follows_the_official_steps(raw, normalised):
    assert normalize_vqa_answer(raw) == normalised


@pytest.mark.parametrize("agreeing, accuracy", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_averages_over_the_ten_choose_nine_subsets(agreeing, accuracy):
    answers = ["cat"] * agreeing + ["dog"] * (10 - agreeing)
    assert vqa_accuracy("cat", answers) == pytest.approx(accuracy)


def test_vqa_accuracy_compares_normalised_answers():
    answers = ["2", "two", "2.", "3", "three", "4", "five", "six", "seven", "eight"]
    assert vqa_accuracy("Two", answers) == pytest.approx(0.9)          # three humans said 2


@pytest.mark.parametrize("prediction, answers, score", [
    ("Lausanne", ["lausanne"], 1.0),                  # case does not count
    ("lausane", ["Lausanne"], 1 - 1 / 8),             # one edit in eight characters
    ("  John   Smith ", ["john smith"], 1.0),         # spaces collapsed
    ("dog", ["cat"], 0.0),                            # NL 1 -> 0
    ("ab", ["ac"], 0.0),                              # NL exactly 0.5 is over the threshold
    ("abcd", ["abcf"], 0.75),                         # NL 0.25
    ("Jon Smith", ["J. Smith", "John Smith"], 0.9),   # the closest reference counts
])
def test_anls(prediction, answers, score):
    assert anls(prediction, answers) == pytest.approx(score)


@pytest.mark.parametrize("prediction, answer, score", [
    ("52", "50", 1.0),          # 4% off
    ("47.5", "50", 1.0),        # exactly 5%
    ("53", "50", 0.0),          # 6% off
    ("45%", "0.45", 1.0),       # a percent reads as a fraction
    ("Left", "left", 1.0),      # text: exact, ignoring case
    ("Leftt", "left", 0.0),
    ("0.0", "0", 0.0),          # a gold 0 is compared as text
])
def test_relaxed_accuracy(prediction, answer, score):
    assert relaxed_accuracy(prediction, [answer]) == score


OPTIONS = {"A": "circle", "B": "square", "C": "triangle", "D": "star"}


@pytest.mark.parametrize("response, choice", [
    ("(B) a square", "B"),
    ("B.", "B"),
    ("The answer is C", "C"),
    ("A or B? I would say B", "B"),                           # of several, the last named
    ("I think the drawing shows a square with four sides", "B"),   # over 5 words: the option's text
    ("square", None),                                         # 5 words or fewer: text is not read
    ("no idea", None),
])
def test_mmmu_choice(response, choice):
    assert mmmu_choice(response, OPTIONS) == choice


@pytest.mark.parametrize("response, choice", [
    ("The best answer is B.", "B"),
    ("Answer: (C)", "C"),
    ("D", "D"),
    ("Cats", "C"),                 # Video-MME reads the first capital option letter, as published
    ("none of these", None),
])
def test_videomme_choice(response, choice):
    assert videomme_choice(response, OPTIONS) == choice


def test_multiple_choice_task_scores_the_option_read():
    item = Item("q", "Which?", ["B"], options=dict(OPTIONS))
    assert get_task("mmmu").score(item, "(B)") == (1.0, "B")
    assert get_task("mmmu").score(item, "(A)") == (0.0, "A")
    assert get_task("videomme").score(item, "no letter here") == (0.0, None)
