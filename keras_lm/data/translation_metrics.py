"""Corpus BLEU for translations, scored by sacrebleu on detokenized text (its default ``13a`` tokenizer)."""
from __future__ import annotations

from typing import Sequence, Union

Text = Union[str, bytes]
References = Union[Sequence[Text], Sequence[Sequence[Text]]]


def corpus_bleu(hypotheses: Sequence[Text], references: References) -> float:
    """sacrebleu's corpus BLEU (0-100) of detokenized ``hypotheses`` against ``references``.

    Scores plain text as sacrebleu does by default: its ``13a`` tokenizer (the WMT
    ``mteval-v13a`` rules) splits punctuation, case matters, exponential smoothing. Pass
    detokenized text (what a reader sees), never subword pieces.

    Args:
        hypotheses: one translation per segment (``str``, or UTF-8 ``bytes`` as TF returns them).
        references: one reference per segment, or several such streams (a list of lists, each as
            long as ``hypotheses``) when every segment has more than one reference.

    Returns:
        The BLEU score as a float between 0 and 100.

    Raises:
        ValueError: no hypotheses, a reference stream of another length, or text that is not
            ``str``/UTF-8 ``bytes``.

    Example:
        >>> round(corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"]), 2)
        53.73
    """
    hypotheses = _texts(hypotheses, "hypotheses")
    if not hypotheses:
        raise ValueError("corpus_bleu needs at least one hypothesis; got none.")
    streams = _reference_streams(references)
    for index, stream in enumerate(streams):
        if len(stream) != len(hypotheses):
            which = "references" if len(streams) == 1 else f"reference stream {index}"
            raise ValueError(
                f"corpus_bleu got {len(hypotheses)} hypotheses but {len(stream)} {which}: give one "
                "reference per hypothesis, in the same order."
            )
    from sacrebleu.metrics import BLEU

    return float(BLEU(tokenize="13a").corpus_score(hypotheses, streams).score)


def copy_source_bleu(sources: Sequence[Text], references: References) -> float:
    """The copy-the-source baseline: corpus BLEU of the untranslated ``sources`` against ``references``.

    A translation model must beat it: it measures what names, numbers and punctuation the two
    languages share.

    Example:
        >>> round(copy_source_bleu(["Jesus wept."], ["Y lloró Jesús."]), 2)
        0.0
    """
    return corpus_bleu(sources, references)


def _reference_streams(references: References) -> list[list[str]]:
    references = _texts_or_streams(references, "references")
    if references and isinstance(references[0], (list, tuple)):
        return [_texts(stream, f"reference stream {i}") for i, stream in enumerate(references)]
    return [_texts(references, "references")]


def _texts_or_streams(values, name: str) -> list:
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a list of texts (one per segment), not a single text: {values[:40]!r}")
    return list(values)


def _texts(values: Sequence[Text], name: str) -> list[str]:
    texts = []
    values = _texts_or_streams(values, name)
    for index, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{name}[{index}] is not valid UTF-8: {value[:40]!r}") from None
        if not isinstance(value, str):
            raise ValueError(f"{name}[{index}] must be a str (or UTF-8 bytes); got {type(value).__name__}.")
        texts.append(value)
    return texts
