"""Token embeddings from co-occurrence statistics: PPMI + truncated SVD (the count-based word2vec).

Skip-gram with negative sampling implicitly factorises the shifted pointwise mutual information
matrix of word/context co-occurrences (Levy & Goldberg, 2014); factorising the positive PMI matrix
directly with a truncated SVD gives vectors of the same quality on small corpora, in one pass over
the text and a few matrix products, with no training loop. A masked LM needs many steps before
rare tokens' embeddings mean anything; these vectors place every token that occurs in the corpus
from the first step, which is what a short pretraining budget lacks.

Example:
    >>> import numpy as np
    >>> rows = [np.array([5, 6, 7, 5, 6, 7]), np.array([5, 6, 8])]
    >>> counts = cooccurrence_counts(rows, vocabulary_size=10, window=2)
    >>> float(counts[5, 6]), float(counts[5, 7])  # 1/distance weights, both directions
    (3.0, 1.5)
    >>> cooccurrence_embeddings(rows, vocabulary_size=10, dim=4, window=2).shape
    (10, 4)
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

#: Above this many rows the dense count matrix (float64, rows x rows) would take more than 2 GiB:
#: only the most frequent tokens get co-occurrence vectors.
MAX_DENSE_TOKENS = 16384


def cooccurrence_counts(rows: Iterable[Sequence[int]], vocabulary_size: int, window: int = 5,
                        tokens: np.ndarray | None = None) -> np.ndarray:
    """Symmetric co-occurrence counts ``[n, n]`` within ``window`` tokens, weighted 1/distance.

    Rows (documents, lines) are never crossed. ``tokens`` optionally lists the token ids counted
    (row/column ``i`` is ``tokens[i]``); by default all ``vocabulary_size`` ids.
    """
    if window < 1:
        raise ValueError(f"`window` must be at least 1, got {window}.")
    index = np.full(vocabulary_size, -1, np.int64)
    tokens = np.arange(vocabulary_size) if tokens is None else np.asarray(tokens, np.int64)
    index[tokens] = np.arange(len(tokens))
    n = len(tokens)
    pieces = []
    for row in rows:
        row = np.asarray(row, np.int64)
        if row.size and (row.min() < 0 or row.max() >= vocabulary_size):
            raise ValueError(f"Token ids must be in [0, {vocabulary_size}); got a row with ids "
                             f"{row.min()}..{row.max()}.")
        pieces.append(index[row])
        pieces.append(np.full(window, -1, np.int64))  # rows are not crossed
    if not pieces:
        raise ValueError("No text to count co-occurrences on: the corpus is empty.")
    ids = np.concatenate(pieces)
    counts = np.zeros(n * n, np.float64)
    for distance in range(1, window + 1):
        left, right = ids[:-distance], ids[distance:]
        keep = (left >= 0) & (right >= 0)
        left, right = left[keep], right[keep]
        counts += np.bincount(left * n + right, minlength=n * n) / distance
        counts += np.bincount(right * n + left, minlength=n * n) / distance
    return counts.reshape(n, n)


def positive_pmi(counts: np.ndarray, context_smoothing: float = 0.75) -> np.ndarray:
    """PPMI of a count matrix, with the context distribution raised to ``context_smoothing``."""
    total = counts.sum()
    if total <= 0:
        raise ValueError("The co-occurrence counts are all zero: the corpus has no token pairs within the window.")
    word = counts.sum(axis=1) / total
    context = counts.sum(axis=0) ** context_smoothing
    context /= context.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts / total / np.outer(word, context))
    return np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0).astype(np.float32)


def truncated_svd(matrix: np.ndarray, rank: int, oversampling: int = 32, power_iterations: int = 3,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The top ``rank`` left singular vectors and values of ``matrix`` (randomized SVD, Halko et al.)."""
    rng = np.random.default_rng(seed)
    basis = matrix @ rng.standard_normal((matrix.shape[1], rank + oversampling)).astype(matrix.dtype)
    for _ in range(power_iterations):
        basis, _ = np.linalg.qr(basis)
        basis = matrix @ (matrix.T @ basis)
    basis, _ = np.linalg.qr(basis)
    left, values, _ = np.linalg.svd(basis.T @ matrix, full_matrices=False)
    return (basis @ left)[:, :rank], values[:rank]


def cooccurrence_embeddings(rows: Iterable[Sequence[int]], vocabulary_size: int, dim: int, window: int = 5,
                            exclude: Sequence[int] = (), norm: float = 1.0, eigenvalue_weight: float = 0.5,
                            seed: int = 0, initial: np.ndarray | None = None) -> np.ndarray:
    """A ``[vocabulary_size, dim]`` embedding table from PPMI + SVD over token-id ``rows``.

    Each token that occurs in the rows gets its SVD vector (singular values raised to
    ``eigenvalue_weight``), centred over the seen tokens and scaled to L2 norm ``norm``; tokens in
    ``exclude`` (padding, [CLS], [MASK] …) and tokens never seen keep their row of ``initial``
    (default: normal with stddev 0.02). Only the ``MAX_DENSE_TOKENS`` most frequent tokens are
    factorised when the vocabulary is larger.
    """
    rows = [np.asarray(row, np.int64) for row in rows]
    if dim > MAX_DENSE_TOKENS or dim < 1:
        raise ValueError(f"`dim` must be in [1, {MAX_DENSE_TOKENS}], got {dim}.")
    frequency = np.zeros(vocabulary_size, np.int64)
    for row in rows:
        frequency += np.bincount(row, minlength=vocabulary_size)[:vocabulary_size]
    frequency[list(exclude)] = 0
    seen = np.flatnonzero(frequency)
    if seen.size <= dim:
        raise ValueError(f"Only {seen.size} distinct tokens occur in the corpus; the {dim}-dimensional "
                         "co-occurrence embeddings need more. Use a larger corpus.")
    tokens = seen[np.argsort(-frequency[seen], kind="stable")][:MAX_DENSE_TOKENS]
    counts = cooccurrence_counts(rows, vocabulary_size, window, tokens=tokens)
    in_context = counts.sum(axis=1) > 0  # a token alone in its rows has no vector
    tokens, counts = tokens[in_context], counts[np.ix_(in_context, in_context)]
    vectors, values = truncated_svd(positive_pmi(counts), dim, seed=seed)
    vectors = vectors * values ** eigenvalue_weight
    vectors -= vectors.mean(axis=0)
    vectors *= norm / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    if initial is None:
        initial = np.random.default_rng(seed).normal(0.0, 0.02, (vocabulary_size, dim))
    table = np.array(initial, np.float32, copy=True)
    if table.shape != (vocabulary_size, dim):
        raise ValueError(f"`initial` has shape {table.shape}; expected {(vocabulary_size, dim)}.")
    table[tokens] = vectors
    return table
