"""SQuAD v1.1 exact match and F1, computed exactly as the official ``evaluate-v1.1.py`` does.

An answer is normalized (lower-cased; the ASCII punctuation of ``string.punctuation`` removed, other
punctuation kept; the articles ``a``, ``an``, ``the`` removed as whole words; whitespace collapsed), then compared
with every ground-truth answer of its question: exact match is 1 when the normalized strings are
equal, F1 is the harmonic mean of the precision and recall of the shared tokens (a bag of words,
``collections.Counter``). Each question scores the maximum over its ground truths; both figures are
averaged over questions and multiplied by 100.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Iterable, Mapping, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, and collapse whitespace (official order).

    Example:
        >>> normalize_answer("The  Eiffel-Tower!")
        'eiffeltower'
    """
    text = text.lower()
    text = "".join(character for character in text if character not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """Whether the normalized prediction equals the normalized ground truth.

    Example:
        >>> exact_match_score("the Beatles.", "Beatles")
        True
    """
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-overlap F1 of the normalized answers (0 when they share no token, empty answers included).

    Example:
        >>> round(f1_score("in the year 1990", "1990"), 4)
        0.5
    """
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def _best_over_ground_truths(metric, prediction: str, ground_truths: Sequence[str]) -> float:
    return max(float(metric(prediction, truth)) for truth in ground_truths)


def _as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def squad_scores(
    predictions: Sequence[str] | Mapping[str, str],
    ground_truths: Sequence[Sequence[str]] | Mapping[str, Sequence[str]],
) -> dict[str, float]:
    """SQuAD v1.1 ``{"exact_match": ..., "f1": ...}`` (both x100) of predicted answers.

    Args:
        predictions: one answer per question, in order, or ``{question id: answer}``.
        ground_truths: the accepted answers of each question (a list per question, or a single
            string), in the same order, or ``{question id: answers}``. With mappings, every id of
            ``ground_truths`` is scored and a missing prediction counts 0, as in the official script.

    Raises:
        ValueError: no questions, a question without ground truths, or lists of different lengths.

    Example:
        >>> squad_scores(["Denver Broncos", "a cat"], [["Denver Broncos"], ["the dog", "cat"]])
        {'exact_match': 100.0, 'f1': 100.0}
    """
    if isinstance(ground_truths, Mapping):
        if not isinstance(predictions, Mapping):
            raise ValueError("squad_scores: ground_truths is a mapping of question ids, so predictions must be too.")
        ids = list(ground_truths)
        pairs = [(predictions.get(question_id), ground_truths[question_id]) for question_id in ids]
    else:
        if isinstance(predictions, Mapping):
            raise ValueError("squad_scores: predictions is a mapping of question ids, so ground_truths must be too.")
        predictions, ground_truths = list(predictions), list(ground_truths)
        if len(predictions) != len(ground_truths):
            raise ValueError(f"squad_scores: {len(predictions)} predictions for {len(ground_truths)} questions; "
                             "pass one prediction per question.")
        pairs = list(zip(predictions, ground_truths))
    if not pairs:
        raise ValueError("squad_scores: no questions to score.")
    exact_match = f1 = 0.0
    for index, (prediction, truths) in enumerate(pairs):
        truths = [_as_text(t) for t in ([truths] if isinstance(truths, (str, bytes)) else _listed(truths))]
        if not truths:
            raise ValueError(f"squad_scores: question {index} has no ground-truth answer.")
        if prediction is None:  # the official script: "Unanswered question ... will receive score 0."
            continue
        prediction = _as_text(prediction)
        exact_match += _best_over_ground_truths(exact_match_score, prediction, truths)
        f1 += _best_over_ground_truths(f1_score, prediction, truths)
    return {"exact_match": 100.0 * exact_match / len(pairs), "f1": 100.0 * f1 / len(pairs)}


def _listed(values) -> Iterable:
    return values.tolist() if hasattr(values, "tolist") else values
