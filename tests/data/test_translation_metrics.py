"""corpus_bleu / copy_source_bleu: sacrebleu's corpus BLEU on detokenized text, checked against
sacrebleu's documented example and scores worked out by hand."""
import pytest

from keras_lm.data.translation_metrics import copy_source_bleu, corpus_bleu


def test_identical_text_scores_100_and_disjoint_text_0():
    lines = ["In the beginning, God created the heavens and the earth.", "Jesus wept."]
    assert corpus_bleu(lines, lines) == pytest.approx(100.0, abs=1e-9)
    assert corpus_bleu(["a b c d e"], ["f g h i j"]) == 0.0


def test_a_hand_checked_sentence():
    # 13a tokens: the cat sat on the mat | the cat sat on a mat. Clipped n-gram precisions
    # 5/6, 3/5, 2/4, 1/3; same length, so no brevity penalty: BLEU = (1/12) ** (1/4).
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(
        100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-9
    )


def test_sacrebleus_documented_example_with_two_reference_streams():
    # The README example of sacrebleu 2.x: "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ...)".
    hypotheses = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    references = [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ]
    assert round(corpus_bleu(hypotheses, references), 2) == 48.53


def test_scores_detokenized_text_case_sensitively_with_exponential_smoothing():
    # 13a splits punctuation, so detokenized and pre-tokenized text score the same ...
    assert corpus_bleu(["Hello , world ."], ["Hello, world."]) == pytest.approx(100.0, abs=1e-9)
    # ... but case counts: precisions 3/4, 2/3, 1/2 and no 4-gram match, which exponential
    # smoothing counts as 1/2 (1 / 2**k for the k-th zero): (3/4 * 2/3 * 1/2 * 1/2) ** (1/4).
    assert corpus_bleu(["hello, world."], ["Hello, world."]) == pytest.approx(100 * 0.125**0.25, abs=1e-9)


def test_utf8_bytes_score_as_their_text():
    hypotheses, references = ["EN el principio crió Dios"], ["EN el principio creó Dios"]
    as_bytes = corpus_bleu([h.encode() for h in hypotheses], [r.encode() for r in references])
    assert as_bytes == corpus_bleu(hypotheses, references)
    assert 0 < as_bytes < 100


def test_copy_source_baseline_scores_the_untranslated_source():
    sources = ["Paul, an apostle of Jesus Christ.", "Amen."]
    references = ["Pablo, apóstol de Jesucristo.", "Amén."]
    assert copy_source_bleu(sources, references) == corpus_bleu(sources, references)
    assert 0 < copy_source_bleu(sources, references) < 20  # only "," and "." are shared
    assert copy_source_bleu(references, references) == pytest.approx(100.0, abs=1e-9)


def test_bad_inputs_raise_one_clear_error():
    with pytest.raises(ValueError, match=r"got 2 hypotheses but 1 references: give one reference per hypothesis"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"got 1 hypotheses but 2 reference stream 1"):
        corpus_bleu(["a"], [["a"], ["a", "b"]])
    with pytest.raises(ValueError, match="at least one hypothesis"):
        corpus_bleu([], [])
    with pytest.raises(ValueError, match=r"hypotheses\[1\] is not valid UTF-8"):
        corpus_bleu([b"ok", b"\xff\xfe"], ["ok", "ok"])
    with pytest.raises(ValueError, match=r"references\[0\] must be a str \(or UTF-8 bytes\); got int"):
        corpus_bleu(["a"], [3])
    with pytest.raises(ValueError, match="hypotheses must be a list of texts"):
        corpus_bleu("Jesus wept.", ["Jesus wept."])
