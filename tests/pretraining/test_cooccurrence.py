"""Co-occurrence token embeddings (PPMI + SVD): exact counts, PMI, SVD, and meaning on real text."""
import collections
import re

import numpy as np
import pytest

import keras_lm
from keras_lm.pretraining.cooccurrence import (
    cooccurrence_counts,
    cooccurrence_embeddings,
    positive_pmi,
    truncated_svd,
)


def test_counts_weight_pairs_by_inverse_distance_in_both_directions_and_never_cross_rows():
    counts = cooccurrence_counts([[1, 2, 3], [3, 1]], vocabulary_size=5, window=2)
    expected = np.zeros((5, 5))
    for a, b, weight in [(1, 2, 1.0), (2, 3, 1.0), (1, 3, 0.5), (3, 1, 1.0)]:
        expected[a, b] += weight
        expected[b, a] += weight
    np.testing.assert_array_equal(counts, expected)  # 2 and 3 of row 1 never meet row 2's tokens


def test_counts_restricted_to_listed_tokens():
    counts = cooccurrence_counts([[4, 1, 4, 2]], vocabulary_size=5, window=1, tokens=[4, 1])
    np.testing.assert_array_equal(counts, [[0, 2], [2, 0]])  # token 2 is not counted


def test_positive_pmi_matches_the_formula_with_smoothed_contexts():
    counts = np.array([[0.0, 4, 1], [4, 0, 2], [1, 2, 6]])
    total = counts.sum()
    context = counts.sum(0) ** 0.75
    context /= context.sum()
    with np.errstate(divide="ignore"):
        expected = np.maximum(np.log(counts / total / np.outer(counts.sum(1) / total, context)), 0)
    expected[counts == 0] = 0
    np.testing.assert_allclose(positive_pmi(counts), expected, rtol=1e-6)


def test_truncated_svd_finds_the_leading_singular_values():
    rng = np.random.default_rng(0)
    matrix = (rng.normal(size=(300, 8)) @ rng.normal(size=(8, 300)) + 0.01 * rng.normal(size=(300, 300)))
    matrix = matrix.astype(np.float32)
    vectors, values = truncated_svd(matrix, 5)
    np.testing.assert_allclose(values, np.linalg.svd(matrix, compute_uv=False)[:5], rtol=1e-4)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(5), atol=1e-4)


@pytest.fixture(scope="module")
def shakespeare_words():
    """Word ids of the lines of the Shakespeare validation works (3,000 most frequent words)."""
    texts = [example["text"].numpy().decode("utf-8")
             for example in keras_lm.data.load("shakespeare", split="validation")]
    lines = [re.findall(r"[a-z']+", line.lower()) for text in texts for line in text.split("\n") if line.strip()]
    frequency = collections.Counter(word for line in lines for word in line)
    vocabulary = ["<pad>", "<never-seen>"] + [word for word, _ in frequency.most_common(3000)]
    index = {word: i for i, word in enumerate(vocabulary)}
    return vocabulary, [[index[word] for word in line if word in index] for line in lines]


def test_words_used_alike_get_neighbouring_vectors_on_real_text(shakespeare_words):
    vocabulary, rows = shakespeare_words
    initial = np.random.default_rng(5).normal(0, 0.02, (len(vocabulary), 64)).astype(np.float32)
    table = cooccurrence_embeddings(rows, len(vocabulary), 64, window=5, exclude=[0], initial=initial)
    assert table.shape == (len(vocabulary), 64) and table.dtype == np.float32
    np.testing.assert_array_equal(table[:2], initial[:2])  # excluded and unseen rows keep their start
    norms = np.linalg.norm(table[2:], axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)

    def neighbours(word, k=10):
        similarity = unit[2:] @ unit[vocabulary.index(word)]
        return [vocabulary[2 + i] for i in np.argsort(-similarity)[1:k + 1]]

    # Early Modern English second-person verb forms follow "thou"; kin and titles follow "lord".
    assert {"art", "dost", "wilt", "hast"} <= set(neighbours("thou"))
    assert {"noble", "uncle", "cousin"} <= set(neighbours("lord"))
    # Across all pairs the vectors are spread out (centred): unrelated words are not similar.
    assert abs(float((unit[2:] @ unit[2:].T).mean())) < 0.01


def test_bad_inputs_are_one_clear_error():
    with pytest.raises(ValueError, match="window"):
        cooccurrence_counts([[1, 2]], vocabulary_size=3, window=0)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 3\)"):
        cooccurrence_counts([[1, 7]], vocabulary_size=3)
    with pytest.raises(ValueError, match="corpus is empty"):
        cooccurrence_counts([], vocabulary_size=3)
    with pytest.raises(ValueError, match="Only 2 distinct tokens"):
        cooccurrence_embeddings([[1, 2, 1]], vocabulary_size=10, dim=4)
    with pytest.raises(ValueError, match="initial"):
        cooccurrence_embeddings([list(range(10)) * 3], vocabulary_size=10, dim=4, initial=np.zeros((9, 4)))
