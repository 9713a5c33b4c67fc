"""A labelled sentence task derived from WordNet: is a dictionary definition that of a noun or a verb?

``noun_verb_definitions(split)`` reads the embedded ``wordnet_glosses`` corpus and keeps, for every
noun and verb synset, its definition alone: the gloss without its lemmas (which would give the answer
away through the word list) and without its quoted usage examples. ``"draw air into, and expel out
of, the lungs"`` is a verb's definition (label 1), ``"a person who is skilled in ..."`` a noun's
(label 0). It is a second real, balanced binary sentence-classification task next to
``movie_snippets`` (e.g. for a continual-learning demonstration: one task after the other).
"""
from __future__ import annotations

import functools
import hashlib
import os

import tensorflow as tf

from keras_lm.data.loading import load

LABELS = ("noun", "verb")
SPLITS = ("train", "validation", "test")
#: One in this many definitions of the corpus' train split goes to ``validation`` (by a hash).
VALIDATION_EVERY = 20


def noun_verb_definitions(split: str = "train", data_dir: str | os.PathLike | None = None) -> tf.data.Dataset:
    """WordNet definitions labelled noun (0) or verb (1), balanced, with fixed splits.

    Built from ``keras_lm.data.load("wordnet_glosses")`` (prepared on first use), deterministically:

    - each noun or verb synset line ``"lemma, lemma: gloss"`` gives the definition: the gloss up to
      its first quoted example (``; "...``), stripped; adjectives and adverbs are left out;
    - ``test`` holds the definitions of the corpus' ``validation`` documents (every 20th document,
      never in its train split), ``validation`` those of its train documents whose
      ``sha256("noun|text")`` (or ``"verb|text"``) is 0 modulo 20, ``train`` the rest;
    - a definition given to both a noun and a verb is dropped; one seen in ``test`` is dropped from
      ``validation`` and ``train``, one seen in ``validation`` from ``train``; duplicates within a
      split are kept once;
    - each split is balanced: all its verb definitions and as many noun definitions, the nouns with
      the smallest hashes; the examples are ordered by their hash (a fixed shuffle).

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        data_dir: the TFDS data directory of the embedded corpora (default: see ``keras_lm.data.load``).

    Returns:
        A ``tf.data.Dataset`` of ``{"text": tf.string, "label": tf.int64}``; ``LABELS[label]`` names it.

    Example:
        >>> import keras_lm
        >>> from keras_lm.data.definitions import LABELS, noun_verb_definitions
        >>> example = next(iter(noun_verb_definitions("test")))  # doctest: +SKIP
        >>> sorted(example), LABELS  # doctest: +SKIP
        (['label', 'text'], ('noun', 'verb'))
    """
    if split not in SPLITS:
        raise ValueError(f"noun_verb_definitions has the splits {', '.join(SPLITS)}; got {split!r}.")
    texts, labels = _splits(None if data_dir is None else os.fspath(data_dir))[split]
    return tf.data.Dataset.from_tensor_slices({"text": tf.constant(texts, tf.string),
                                               "label": tf.constant(labels, tf.int64)})


def definition_of(synset_line: str) -> str:
    """The definition in a ``wordnet_glosses`` line: no lemmas, no quoted examples.

    Example:
        >>> definition_of('breathe, respire: draw air into, and expel out of, the lungs; "I can breathe better"')
        'draw air into, and expel out of, the lungs'
        >>> definition_of('respire: breathe easily again, as after exertion or anxiety')
        'breathe easily again, as after exertion or anxiety'
    """
    gloss = synset_line.split(": ", 1)[1] if ": " in synset_line else synset_line
    quote = gloss.find('"')
    if quote >= 0:
        gloss = gloss[:quote]
    return gloss.strip().rstrip(";").strip()


def _hash(label: int, text: str) -> str:
    return hashlib.sha256(f"{LABELS[label]}|{text}".encode("utf-8")).hexdigest()


def _definitions(corpus_split: str, data_dir) -> dict[str, set]:
    """{definition: {labels}} of the noun and verb synsets of a ``wordnet_glosses`` split."""
    found: dict[str, set] = {}
    for document in load("wordnet_glosses", split=corpus_split, data_dir=data_dir).as_numpy_iterator():
        part_of_speech = document["part_of_speech"].decode("utf-8")
        if part_of_speech not in LABELS:
            continue
        for line in document["text"].decode("utf-8").splitlines():
            text = definition_of(line)
            if text:
                found.setdefault(text, set()).add(LABELS.index(part_of_speech))
    return found


@functools.lru_cache(maxsize=4)
def _splits(data_dir) -> dict[str, tuple[list, list]]:
    test_pool = _definitions("validation", data_dir)
    train_pool = _definitions("train", data_dir)
    ambiguous = {text for pool in (test_pool, train_pool) for text, labels in pool.items() if len(labels) > 1}
    ambiguous |= {text for text in test_pool.keys() & train_pool.keys() if test_pool[text] != train_pool[text]}
    test = {text: next(iter(labels)) for text, labels in test_pool.items() if text not in ambiguous}
    validation, train = {}, {}
    for text, labels in train_pool.items():
        if text in ambiguous or text in test:
            continue
        label = next(iter(labels))
        (validation if int(_hash(label, text), 16) % VALIDATION_EVERY == 0 else train)[text] = label
    return {"train": _balanced(train), "validation": _balanced(validation), "test": _balanced(test)}


def _balanced(examples: dict[str, int]) -> tuple[list, list]:
    """All verb definitions and as many noun definitions (smallest hashes), ordered by hash."""
    by_label = {label: sorted((_hash(label, text), text) for text, given in examples.items() if given == label)
                for label in range(len(LABELS))}
    count = min(len(rows) for rows in by_label.values())
    chosen = sorted((key, text, label) for label, rows in by_label.items() for key, text in rows[:count])
    return [text for _, text, _ in chosen], [label for _, _, label in chosen]
