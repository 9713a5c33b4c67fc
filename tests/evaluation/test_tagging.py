"""Entity-level tagging scores against seqeval (default mode and strict mode) on the same tags."""
import warnings

import numpy as np
import pytest

from keras_lm.evaluation.tagging import entities, entity_scores, token_accuracy

TYPES = ("PER", "LOC", "ORG")
PREFIXES = {"IOB1": "IOB", "IOB2": "IOB", "IOBES": "IOBES"}

# Classic tricky cases: I- without B-, a type change inside a chunk, B- after B- of the same
# type, E-/S- handling (E- after O, S- inside a chunk, I- after E-), a lone B-, chunks at the
# sentence edges, and IOB1's B- that only separates two same-type chunks.
TRICKY = [
    ["I-PER", "I-PER", "O"],
    ["O", "I-LOC", "I-LOC"],
    ["B-PER", "I-LOC", "I-LOC", "O"],
    ["B-PER", "B-PER", "I-PER"],
    ["I-PER", "B-PER", "I-PER", "I-ORG"],
    ["B-LOC", "E-LOC", "S-PER", "O", "E-ORG"],
    ["B-LOC", "I-LOC", "S-LOC", "E-LOC"],
    ["S-PER", "I-PER", "E-PER", "B-ORG"],
    ["E-LOC", "I-LOC", "E-LOC", "E-LOC"],
    ["B-ORG", "O", "B-ORG", "I-PER", "E-PER"],
    ["B-ORG", "I-ORG", "I-ORG"],
    ["O", "O", "O"],
    ["B-PER"],
    ["I-ORG", "I-LOC", "B-LOC", "I-LOC", "O", "I-LOC"],
]


def seqeval_scores(y_true, y_pred, scheme=None):
    """(micro p, r, f1), per-type dict and macro (p, r, f1) from seqeval itself."""
    from seqeval import scheme as schemes
    from seqeval.metrics import f1_score, sequence_labeling, v1

    if scheme is None:
        options, scores = {}, sequence_labeling.precision_recall_fscore_support
    else:
        options, scores = {"scheme": getattr(schemes, scheme)}, v1.precision_recall_fscore_support
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        micro = scores(y_true, y_pred, average="micro", **options)
        macro = scores(y_true, y_pred, average="macro", **options)
        per_type = scores(y_true, y_pred, average=None, **options)
        public_f1 = f1_score(y_true, y_pred, **({"mode": "strict", **options} if options else {}))
    assert public_f1 == micro[2]  # the public entry point agrees
    if scheme is None:
        from seqeval.metrics.sequence_labeling import get_entities

        types = sorted({e[0] for e in get_entities(y_true) + get_entities(y_pred)})
    else:
        from seqeval.metrics.v1 import unique_labels

        types = unique_labels(y_true, y_pred, getattr(schemes, scheme))
    by_type = {t: tuple(float(v[i]) for v in per_type[:3]) + (int(per_type[3][i]),) for i, t in enumerate(types)}
    return micro, by_type, macro


def assert_equal_to_seqeval(y_true, y_pred, scheme=None):
    ours = entity_scores(y_true, y_pred, scheme=scheme)
    micro, by_type, macro = seqeval_scores(y_true, y_pred, scheme)
    np.testing.assert_allclose((ours.precision, ours.recall, ours.f1), micro[:3], rtol=0, atol=1e-12)
    assert ours.micro.support == micro[3]
    assert sorted(ours.per_type) == sorted(by_type)
    for name, (precision, recall, f1, support) in by_type.items():
        score = ours.per_type[name]
        np.testing.assert_allclose((score.precision, score.recall, score.f1), (precision, recall, f1), atol=1e-12)
        assert score.support == support
    if by_type:  # with no entity at all seqeval's macro averages are nan; ours are 0.0
        np.testing.assert_allclose((ours.macro_precision, ours.macro_recall, ours.macro_f1), macro[:3], atol=1e-12)


def random_tags(rng, prefixes, sentences):
    return [
        [
            "O" if rng.random() < 0.35 else f"{rng.choice(list(prefixes.replace('O', '')))}-{rng.choice(TYPES)}"
            for _ in range(rng.integers(1, 12))
        ]
        for _ in range(sentences)
    ]


def perturb(rng, tags, prefixes):
    """A prediction: each tag kept with probability 0.7, else replaced by a random one."""
    letters = prefixes.replace("O", "")
    return [
        [t if rng.random() < 0.7 else ("O" if rng.random() < 0.3 else f"{rng.choice(list(letters))}-{rng.choice(TYPES)}")
         for t in sentence]
        for sentence in tags
    ]


def test_entities_of_the_classic_tricky_cases_equal_seqevals():
    from seqeval import scheme as schemes
    from seqeval.metrics.sequence_labeling import get_entities

    for tags in TRICKY:
        assert entities(tags) == get_entities(tags), tags
        for name in ("IOB2", "IOBES"):
            allowed = PREFIXES[name]
            if all(t[0] in allowed for t in tags):
                expected = [(e.tag, e.start, e.end - 1) for e in schemes.Tokens(tags, getattr(schemes, name)).entities]
                assert entities(tags, scheme=name) == expected, (name, tags)
    # Hand-checked: lenient reading counts an I- without B- and splits at a type change...
    assert entities(["O", "I-LOC", "I-LOC"]) == [("LOC", 1, 2)]
    assert entities(["B-PER", "I-LOC", "I-LOC", "O"]) == [("PER", 0, 0), ("LOC", 1, 2)]
    # ...strict IOB2 drops both ill-formed chunks.
    assert entities(["O", "I-LOC", "I-LOC"], scheme="IOB2") == []
    assert entities(["B-PER", "I-LOC", "I-LOC", "O"], scheme="IOB2") == [("PER", 0, 0)]
    assert entities(["B-LOC", "E-LOC", "S-PER", "O", "E-ORG"], scheme="IOBES") == [("LOC", 0, 1), ("PER", 2, 2)]


@pytest.mark.parametrize("scheme", [None, "IOB1", "IOB2", "IOBES"])
def test_scores_equal_seqeval_on_tricky_cases_and_randomized_sequences(scheme):
    rng = np.random.default_rng(7)
    prefixes = "IOBES" if scheme in (None, "IOBES") else "IOB"
    tricky = [t for t in TRICKY if all(tag[0] in prefixes for tag in t)]
    assert len(tricky) >= 8
    for _ in range(40):
        y_true = random_tags(rng, prefixes, int(rng.integers(1, 8))) + tricky[: int(rng.integers(0, len(tricky)))]
        y_pred = perturb(rng, y_true, prefixes)
        assert_equal_to_seqeval(y_true, y_pred, scheme)
    assert_equal_to_seqeval(tricky, tricky[::-1] if len(set(map(len, tricky))) == 1 else perturb(rng, tricky, prefixes),
                            scheme)


def test_no_entities_and_lenient_iob1_equal_seqeval():
    assert_equal_to_seqeval([["O", "O"]], [["O", "O"]])
    assert_equal_to_seqeval([["O", "B-PER"]], [["O", "O"]])
    assert_equal_to_seqeval([["O", "O"]], [["B-PER", "I-PER"]], scheme="IOB2")
    scores = entity_scores([["O"]], [["O"]])
    assert (scores.precision, scores.recall, scores.f1, scores.per_type) == (0.0, 0.0, 0.0, {})


def test_token_accuracy_equals_seqeval():
    from seqeval.metrics import accuracy_score

    rng = np.random.default_rng(3)
    y_true = random_tags(rng, "IOB", 20)
    y_pred = perturb(rng, y_true, "IOB")
    assert token_accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)


def test_bad_inputs_give_one_clear_error():
    with pytest.raises(ValueError, match="Sentence 1 has 2 true tags but 1 predicted"):
        entity_scores([["O"], ["O", "B-PER"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 true tag sequences but 1 predicted"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match=r"'E-PER' is not a IOB2 tag"):
        entities(["B-PER", "E-PER"], scheme="IOB2")
    with pytest.raises(ValueError, match="Unknown tagging scheme 'BIO'"):
        entities(["O"], scheme="BIO")
    with pytest.raises(TypeError, match="list of tag sequences"):
        entity_scores(["B-PER", "O"], ["B-PER", "O"])
