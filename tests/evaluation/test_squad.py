"""SQuAD v1.1 exact match / F1 against values worked out by hand from the official evaluate-v1.1.py.

The official script normalizes with lower() -> remove string.punctuation -> replace \\b(a|an|the)\\b
by a space -> ' '.join(split()), scores F1 on the Counter intersection of the tokens (0 when nothing
is shared, even for two empty answers), takes the max over the ground truths and reports 100 x the mean.
"""
import collections
import random
import re
import string

import pytest

from keras_lm.evaluation.squad import exact_match_score, f1_score, normalize_answer, squad_scores


@pytest.mark.parametrize(
    "text, expected",
    [
        # lower -> "the quick, brown fox!"; punctuation -> "the quick brown fox"; article -> " quick brown fox"
        ("The Quick, Brown Fox!", "quick brown fox"),
        # the articles only as whole words: "anna", "theory", "again" keep their letters
        ("An apple a day, Anna's theory again", "apple day annas theory again"),
        # punctuation goes before articles: "the-end" -> "theend", which is no article
        ("the-end", "theend"),
        # non-ASCII punctuation is not in string.punctuation and stays; "\b" sees "«" as a boundary
        ("«The» Café—Über", "« » café—über"),
        # tabs, newlines and runs of spaces collapse to one space
        ("  Mount \t\n Everest  ", "mount everest"),
        # nothing but punctuation and articles -> empty
        ("A the, AN!", ""),
        ("", ""),
    ],
)
def test_normalize_answer_follows_the_official_steps(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_on_hand_worked_cases():
    assert exact_match_score("The Beatles.", "beatles")  # both -> "beatles"
    assert not exact_match_score("Beatles!!", "The Rolling Stones")
    assert exact_match_score("the", "a")  # both normalize to "": equal strings
    assert not exact_match_score("Café", "Cafe")  # accents are not stripped


def test_f1_on_hand_worked_cases():
    # pred [cat, sat, on, mat], truth [cat, on, mat]: 3 shared; P = 3/4, R = 1 -> 2*(3/4)/(7/4) = 6/7
    assert f1_score("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7, abs=1e-12)
    # Counter min: pred [red, red, red], truth [red, blue] share one "red"; P = 1/3, R = 1/2 -> 2/5
    assert f1_score("red red red", "red blue") == pytest.approx(0.4, abs=1e-12)
    # no shared token -> 0
    assert f1_score("Paris", "London") == 0.0
    # two empty answers share no token: F1 0 although exact match is 1 (v1.1, unlike v2.0)
    assert f1_score("", "") == 0.0 and exact_match_score("", "")
    assert f1_score("The!", "an") == 0.0
    # unicode tokens: pred [naïve, café], truth [café]: P = 1/2, R = 1 -> 2/3
    assert f1_score("Naïve café.", "café") == pytest.approx(2 / 3, abs=1e-12)


def test_scores_take_the_best_ground_truth_and_average_over_questions():
    predictions = ["Paris", "Denver Broncos", "the cat sat on the mat", ""]
    ground_truths = [
        # F1 vs [city, of, paris] = 2*(1*1/3)/(4/3) = 1/2; vs [paris, france] = 2*(1*1/2)/(3/2) = 2/3 -> 2/3; EM 0
        ["the city of Paris", "Paris, France"],
        # EM 1 and F1 1 against the second answer
        ["Broncos", "denver broncos!"],
        # 6/7 as above; EM 0
        ["a cat on a mat"],
        # empty prediction: EM 0, F1 0
        ["something"],
    ]
    scores = squad_scores(predictions, ground_truths)
    assert scores["exact_match"] == pytest.approx(100 * 1 / 4)
    assert scores["f1"] == pytest.approx(100 * (2 / 3 + 1 + 6 / 7 + 0) / 4)


def test_mappings_score_every_question_and_a_missing_prediction_counts_zero():
    ground_truths = {"q1": ["Denver Broncos"], "q2": ["Santa Clara"], "q3": "Levi's Stadium"}
    predictions = {"q1": "the Denver Broncos", "q3": "Levis Stadium"}  # q2 unanswered
    # q1: EM 1, F1 1; q2: 0, 0; q3: "levis stadium" both -> EM 1, F1 1
    scores = squad_scores(predictions, ground_truths)
    assert scores == {"exact_match": pytest.approx(200 / 3), "f1": pytest.approx(200 / 3)}


def test_bad_inputs_give_one_clear_error():
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        squad_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no questions"):
        squad_scores([], [])
    with pytest.raises(ValueError, match="question 0 has no ground-truth"):
        squad_scores(["a"], [[]])
    with pytest.raises(ValueError, match="must be too"):
        squad_scores({"q": "a"}, [["a"]])


# The official evaluate-v1.1.py functions, verbatim, as a second reference.
def _official_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _official_f1_score(prediction, ground_truth):
    prediction_tokens = _official_normalize_answer(prediction).split()
    ground_truth_tokens = _official_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def test_equal_to_the_official_functions_on_random_answers():
    words = ["the", "a", "an", "The", "cat", "Cat,", "sat", "on", "mat.", "an", "Anna", "!", "—", "é", "x-y", " ", "\t"]
    rng = random.Random(0)
    for _ in range(500):
        prediction = " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        truth = " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        assert normalize_answer(prediction) == _official_normalize_answer(prediction)
        assert f1_score(prediction, truth) == _official_f1_score(prediction, truth)
