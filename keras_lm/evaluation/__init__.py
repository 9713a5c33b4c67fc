"""Evaluation: task metrics as Keras metrics (for ``compile``) and as functions on arrays.

- Classification: ``accuracy``, ``f1_score`` (binary or macro), ``matthews_correlation``,
  ``exact_match`` and the stateful ``ClassificationAccuracy``, ``F1Score``, ``MatthewsCorrelation``,
  ``ExactMatch`` (values equal scikit-learn's).
- Tagging: ``entity_scores`` (entity-level precision / recall / F1, equal to seqeval's),
  ``entities``, ``token_accuracy``.
- Extractive QA: ``squad_scores`` (SQuAD v1.1 exact match and F1, the official formulas); the
  per-answer functions are in ``keras_lm.evaluation.squad``.

Example:
    >>> from keras_lm import evaluation
    >>> round(evaluation.matthews_correlation([0, 1, 1, 0], [0, 1, 0, 0]), 4)
    0.5774
"""
from keras_lm.evaluation import squad
from keras_lm.evaluation.classification import (
    ClassificationAccuracy,
    ExactMatch,
    F1Score,
    MatthewsCorrelation,
    accuracy,
    confusion_matrix,
    exact_match,
    f1_score,
    matthews_correlation,
)
from keras_lm.evaluation.squad import squad_scores
from keras_lm.evaluation.tagging import entities, entity_scores, token_accuracy

__all__ = [
    "ClassificationAccuracy",
    "ExactMatch",
    "F1Score",
    "MatthewsCorrelation",
    "accuracy",
    "confusion_matrix",
    "entities",
    "entity_scores",
    "exact_match",
    "f1_score",
    "matthews_correlation",
    "squad",
    "squad_scores",
    "token_accuracy",
]
