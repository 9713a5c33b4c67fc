"""Entity-level precision, recall and F1 for tag sequences (named-entity recognition, chunking).

Two ways of reading entities out of tags, the two of ``seqeval`` (and of CoNLL's ``conlleval``):

* ``scheme=None`` (default, lenient): any ``B-``/``I-``/``E-``/``S-`` run of one type is an entity,
  whatever the scheme; an ``I-X`` after ``O`` or after another type starts one, a type change
  inside a chunk ends one. This is what ``conlleval`` and ``seqeval``'s default mode count.
* ``scheme="IOB1" | "IOB2" | "IOE2" | "IOBES" | "BILOU"`` (strict): only chunks that are well formed in that
  scheme count (e.g. in IOB2 an entity must start with ``B-``; ``I-X`` after ``O`` is no entity),
  as ``seqeval``'s ``mode="strict"``. A tag whose prefix the scheme does not allow is an error.

An entity is ``(type, first, last)`` with inclusive word positions; a prediction is correct only when
type and both bounds equal a true entity's. Pure Python, no TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

Entity = tuple  # (type, first, last)

# -- lenient (conlleval) reading -------------------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    """``(prefix, type)`` as the lenient reader sees a tag: ``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", "_")``."""
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _ends_chunk(previous: str, current: str, previous_type: str, current_type: str) -> bool:
    if previous in ("E", "S"):
        return True
    if previous in ("B", "I") and current in ("B", "S", "O"):
        return True
    return previous not in ("O", ".") and previous_type != current_type


def _starts_chunk(previous: str, current: str, previous_type: str, current_type: str) -> bool:
    if current in ("B", "S"):
        return True
    if previous in ("E", "S", "O") and current in ("E", "I"):
        return True
    return current not in ("O", ".") and previous_type != current_type


def _lenient_entities(tags: Sequence[str]) -> list[Entity]:
    found, previous, previous_type, start = [], "O", "", 0
    for position, tag in enumerate([*tags, "O"]):
        prefix, type_ = _split_tag(tag)
        if _ends_chunk(previous, prefix, previous_type, type_):
            found.append((previous_type, start, position - 1))
        if _starts_chunk(previous, prefix, previous_type, type_):
            start = position
        previous, previous_type = prefix, type_
    return found


# -- strict reading, per scheme ----------------------------------------------------------------
# Each scheme: allowed prefixes, and transition patterns (previous prefixes, current prefixes,
# type condition: "same", "diff" or "any") that start an entity, continue it, or close it.

_ANY = "IOBESUL"


@dataclasses.dataclass(frozen=True)
class _Scheme:
    allowed: str
    starts: tuple
    inside: tuple
    ends: tuple


SCHEMES = {
    "IOB1": _Scheme(
        "IOB",
        starts=(("O", "I", "any"), ("I", "I", "diff"), ("B", "I", "any"), ("I", "B", "same"), ("B", "B", "same")),
        inside=(("B", "I", "same"), ("I", "I", "same")),
        ends=(("I", "I", "diff"), ("I", "O", "any"), ("I", "B", "any"), ("B", "O", "any"), ("B", "I", "diff"),
              ("B", "B", "same")),
    ),
    "IOB2": _Scheme(
        "IOB",
        starts=((_ANY, "B", "any"),),
        inside=(("B", "I", "same"), ("I", "I", "same")),
        ends=(("I", "O", "any"), ("I", "I", "diff"), ("I", "B", "any"), ("B", "O", "any"), ("B", "I", "diff"),
              ("B", "B", "any")),
    ),
    "IOE2": _Scheme(
        "IOE",
        starts=(("O", "I", "any"), ("O", "E", "any"), ("E", "I", "any"), ("E", "E", "any"), ("I", "I", "diff"),
                ("I", "E", "diff")),
        inside=(("I", "E", "same"), ("I", "I", "same")),
        ends=(("E", _ANY, "any"),),
    ),
    "IOBES": _Scheme(
        "IOBES",
        starts=((_ANY, "B", "any"), (_ANY, "S", "any")),
        inside=(("B", "I", "same"), ("B", "E", "same"), ("I", "I", "same"), ("I", "E", "same")),
        ends=(("S", _ANY, "any"), ("E", _ANY, "any")),
    ),
    "BILOU": _Scheme(
        "BILOU",
        starts=((_ANY, "B", "any"), (_ANY, "U", "any")),
        inside=(("B", "I", "same"), ("B", "L", "same"), ("I", "I", "same"), ("I", "L", "same")),
        ends=(("U", _ANY, "any"), ("L", _ANY, "any")),
    ),
}


def _matches(patterns: tuple, previous: tuple[str, str], current: tuple[str, str]) -> bool:
    for previous_prefixes, current_prefixes, condition in patterns:
        if previous[0] in previous_prefixes and current[0] in current_prefixes:
            same = previous[1] == current[1]
            if condition == "any" or (condition == "same") == same:
                return True
    return False


def _strict_entities(tags: Sequence[str], scheme_name: str) -> list[Entity]:
    scheme = SCHEMES[scheme_name]
    tokens = []
    for tag in [*tags, "O"]:
        if not tag or tag[0] not in scheme.allowed:
            raise ValueError(
                f"Tag {tag!r} is not a {scheme_name} tag: its prefix must be one of {', '.join(scheme.allowed)} "
                "(pass the scheme the tags are written in, or scheme=None for the lenient reading)."
            )
        tokens.append((tag[0], tag[1:].strip("-") or "_"))
    found, position, previous = [], 0, ("O", "_")
    while position < len(tokens):
        token = tokens[position]
        if _matches(scheme.starts, previous, token):
            end, inner = position + 1, token
            while end < len(tokens) and _matches(scheme.inside, inner, tokens[end]):
                inner, end = tokens[end], end + 1
            if _matches(scheme.ends, tokens[end - 1], tokens[end]):
                found.append((token[1], position, end - 1))
            position = end
        else:
            position += 1
        previous = tokens[position - 1]
    return found


def entities(tags: Sequence[str], scheme: str | None = None) -> list[Entity]:
    """The entities ``(type, first, last)`` (inclusive word positions) of one tag sequence.

    Args:
        tags: one tag per word, e.g. ``["B-PER", "I-PER", "O", "B-LOC"]``.
        scheme: ``None`` for the lenient (conlleval) reading, or one of ``SCHEMES`` for the strict one.

    Example:
        >>> entities(["B-PER", "I-PER", "O", "I-LOC"])
        [('PER', 0, 1), ('LOC', 3, 3)]
        >>> entities(["B-PER", "I-PER", "O", "I-LOC"], scheme="IOB2")
        [('PER', 0, 1)]
    """
    tags = [str(tag) for tag in tags]
    if scheme is None:
        return _lenient_entities(tags)
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown tagging scheme {scheme!r}; use None (lenient) or one of {', '.join(SCHEMES)}.")
    return _strict_entities(tags, scheme)


# -- scores ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EntityScore:
    """Precision, recall and F1 of one entity type (or of all, micro-averaged); ``support`` = true entities."""

    precision: float
    recall: float
    f1: float
    support: int
    predicted: int
    correct: int


@dataclasses.dataclass(frozen=True)
class EntityScores:
    """Entity-level scores: ``micro`` over all entities, ``per_type`` by entity type, and macro averages
    (the unweighted mean over the types present; 0.0 when there is no entity at all)."""

    micro: EntityScore
    per_type: dict
    macro_precision: float
    macro_recall: float
    macro_f1: float

    @property
    def precision(self) -> float:
        return self.micro.precision

    @property
    def recall(self) -> float:
        return self.micro.recall

    @property
    def f1(self) -> float:
        return self.micro.f1


def _score(correct: int, predicted: int, support: int, zero_division: float) -> EntityScore:
    precision = correct / predicted if predicted else float(zero_division)
    recall = correct / support if support else float(zero_division)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EntityScore(precision, recall, f1, support, predicted, correct)


def _as_sequences(tags: Iterable) -> list[list[str]]:
    sequences = []
    for sequence in tags:
        if isinstance(sequence, (str, bytes)):
            raise TypeError("Pass a list of tag sequences (one list of tags per sentence), not a list of tags.")
        sequences.append([t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in sequence])
    return sequences


def entity_scores(true_tags, predicted_tags, scheme: str | None = None, zero_division: float = 0.0) -> EntityScores:
    """Entity-level precision / recall / F1 of predicted tag sequences against true ones.

    Equal to ``seqeval.metrics`` on the same tags: ``scheme=None`` is its default mode,
    ``scheme="IOB2"`` etc. its ``mode="strict", scheme=IOB2``. Undefined ratios (no predicted or no
    true entity) are ``zero_division``, as seqeval's default.

    Args:
        true_tags: one list of tag strings per sentence.
        predicted_tags: the same shape.
        scheme: ``None`` (lenient) or a key of ``SCHEMES`` (strict).
        zero_division: the value of a ratio whose denominator is 0.

    Example:
        >>> scores = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
        >>> scores.precision, scores.recall, round(scores.f1, 4)
        (1.0, 0.5, 0.6667)
        >>> scores.per_type["LOC"].recall
        0.0
    """
    true_tags, predicted_tags = _as_sequences(true_tags), _as_sequences(predicted_tags)
    if len(true_tags) != len(predicted_tags):
        raise ValueError(f"{len(true_tags)} true tag sequences but {len(predicted_tags)} predicted ones.")
    for index, (truth, prediction) in enumerate(zip(true_tags, predicted_tags)):
        if len(truth) != len(prediction):
            raise ValueError(f"Sentence {index} has {len(truth)} true tags but {len(prediction)} predicted tags.")
    true_entities = {(i, *e) for i, tags in enumerate(true_tags) for e in entities(tags, scheme)}
    predicted_entities = {(i, *e) for i, tags in enumerate(predicted_tags) for e in entities(tags, scheme)}
    correct = true_entities & predicted_entities
    types = sorted({e[1] for e in true_entities | predicted_entities})

    def count(found: set, type_: str) -> int:
        return sum(1 for e in found if e[1] == type_)

    per_type = {
        t: _score(count(correct, t), count(predicted_entities, t), count(true_entities, t), zero_division)
        for t in types
    }
    micro = _score(len(correct), len(predicted_entities), len(true_entities), zero_division)

    def mean(values: list) -> float:
        return sum(values) / len(values) if values else 0.0

    return EntityScores(
        micro=micro,
        per_type=per_type,
        macro_precision=mean([s.precision for s in per_type.values()]),
        macro_recall=mean([s.recall for s in per_type.values()]),
        macro_f1=mean([s.f1 for s in per_type.values()]),
    )


def token_accuracy(true_tags, predicted_tags) -> float:
    """The fraction of words whose predicted tag equals the true one (``seqeval.metrics.accuracy_score``).

    Example:
        >>> token_accuracy([["B-PER", "O"], ["O"]], [["B-PER", "B-LOC"], ["O"]])
        0.6666666666666666
    """
    true_tags, predicted_tags = _as_sequences(true_tags), _as_sequences(predicted_tags)
    pairs = [(t, p) for truth, prediction in zip(true_tags, predicted_tags) for t, p in zip(truth, prediction)]
    return sum(t == p for t, p in pairs) / len(pairs) if pairs else 0.0
