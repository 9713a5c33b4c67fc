"""Token-level noise (dropout, random replacement, local swap) and back-translation as tf.data transforms,
on real movie_snippets sentences packed by a BertPreprocessor with a vocabulary trained on them."""
import re

import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.data.augmentation import (
    BackTranslation,
    Compose,
    LocalSwap,
    RandomReplacement,
    TokenDropout,
    tokenizer_special_ids,
)

LENGTH = 32
SEED = tf.constant([7, 11], tf.int64)


@pytest.fixture(scope="module")
def tokenizer(movie_sentences):
    """A WordPiece vocabulary of the words and punctuation of the first 64 movie_snippets sentences."""
    words = sorted({w for text, _ in movie_sentences for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    return keras_lm.tokenizers.WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)


@pytest.fixture(scope="module")
def pair_features(tokenizer, movie_sentences):
    """Sentence pairs (two segments, padding at the end) from real movie_snippets text."""
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=LENGTH)
    texts = [text for text, _ in movie_sentences[:16]]
    features = preprocessor((tf.constant(texts[:8]), tf.constant(texts[8:])))
    return {name: value.numpy() for name, value in features.items()}


def _uniform(shape, seed):
    return tf.random.stateless_uniform(shape, seed=seed).numpy()


def _eligible(features, special):
    return features["padding_mask"].astype(bool) & ~np.isin(features["token_ids"], special)


def _numpy(outputs):
    return {name: np.asarray(value) for name, value in outputs.items()}


def test_special_ids_come_from_the_tokenizer(tokenizer):
    assert tokenizer_special_ids(tokenizer) == tuple(sorted(
        {tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id}))


def test_dropout_removes_exactly_the_drawn_tokens_and_closes_up_keeping_segments(tokenizer, pair_features):
    dropout = TokenDropout.from_tokenizer(tokenizer, 0.3)
    special = tokenizer_special_ids(tokenizer)
    out = _numpy(dropout(dict(pair_features), seed=SEED))
    drop = _eligible(pair_features, special) & (_uniform(pair_features["token_ids"].shape, SEED) < 0.3)
    assert 0 < drop.sum() < _eligible(pair_features, special).sum()
    for row in range(len(drop)):
        keep = pair_features["padding_mask"][row].astype(bool) & ~drop[row]
        kept_ids = pair_features["token_ids"][row][keep]
        kept_segments = pair_features["segment_ids"][row][keep]
        n = len(kept_ids)
        np.testing.assert_array_equal(out["token_ids"][row], np.r_[kept_ids, [tokenizer.pad_id] * (LENGTH - n)])
        np.testing.assert_array_equal(out["segment_ids"][row], np.r_[kept_segments, [0] * (LENGTH - n)])
        np.testing.assert_array_equal(out["padding_mask"][row], np.arange(LENGTH) < n)
        # Special tokens are all still there, in order: [CLS] first a [SEP] closing each segment.
        specials_before = pair_features["token_ids"][row][np.isin(pair_features["token_ids"][row], special[1:])]
        np.testing.assert_array_equal(out["token_ids"][row][np.isin(out["token_ids"][row], special[1:])],
                                      specials_before)
    assert out["token_ids"].dtype == pair_features["token_ids"].dtype
    assert out["padding_mask"].dtype == pair_features["padding_mask"].dtype


def test_replacement_changes_exactly_the_drawn_positions_to_other_ordinary_tokens(tokenizer, pair_features):
    vocabulary_size = tokenizer.vocabulary_size()
    replace = RandomReplacement.from_tokenizer(tokenizer, 0.25)
    special = tokenizer_special_ids(tokenizer)
    out = _numpy(replace(dict(pair_features), seed=SEED))
    select_seed, _ = tf.unstack(tf.random.experimental.stateless_split(SEED, 2))
    chosen = _eligible(pair_features, special) & (_uniform(pair_features["token_ids"].shape, select_seed) < 0.25)
    changed = out["token_ids"] != pair_features["token_ids"]
    np.testing.assert_array_equal(changed, chosen)
    new = out["token_ids"][chosen]
    assert not np.isin(new, special).any() and (new < vocabulary_size).all() and (new >= 0).all()
    np.testing.assert_array_equal(out["segment_ids"], pair_features["segment_ids"])
    np.testing.assert_array_equal(out["padding_mask"], pair_features["padding_mask"])


def test_replacement_draws_every_ordinary_id_uniformly_and_never_a_special_one():
    replace = RandomReplacement(1.0, vocabulary_size=12, special_ids=(1, 2, 3, 7), pad_id=0)
    ids = np.full((400, 50), 5, np.int32)
    out = replace({"token_ids": tf.constant(ids)}, seed=SEED)["token_ids"].numpy()
    counts = np.bincount(out.reshape(-1), minlength=12)
    ordinary = [4, 6, 8, 9, 10, 11]  # 5 is the original: never drawn again
    assert counts[[0, 1, 2, 3, 5, 7]].sum() == 0
    expected = out.size / len(ordinary)
    assert np.all(np.abs(counts[ordinary] - expected) < 5 * np.sqrt(expected))


def _greedy_swaps(proposed):
    """Left-to-right acceptance: a proposal right after an accepted swap is skipped."""
    accepted = np.zeros_like(proposed)
    for row in range(proposed.shape[0]):
        for i in range(proposed.shape[1]):
            accepted[row, i] = proposed[row, i] and not (i > 0 and accepted[row, i - 1])
    return accepted


def test_local_swap_swaps_exactly_the_accepted_neighbours_within_a_segment(tokenizer, pair_features):
    swap = LocalSwap.from_tokenizer(tokenizer, 0.4)
    special = tokenizer_special_ids(tokenizer)
    ids, segments = pair_features["token_ids"], pair_features["segment_ids"]
    out = _numpy(swap(dict(pair_features), seed=SEED))
    eligible = _eligible(pair_features, special)
    pair = np.zeros_like(eligible)
    pair[:, :-1] = eligible[:, :-1] & eligible[:, 1:] & (segments[:, :-1] == segments[:, 1:])
    accepted = _greedy_swaps(pair & (_uniform(ids.shape, SEED) < 0.4))
    assert accepted.sum() > 3
    expected = ids.copy()
    for row, i in zip(*np.nonzero(accepted)):
        expected[row, i], expected[row, i + 1] = ids[row, i + 1], ids[row, i]
    np.testing.assert_array_equal(out["token_ids"], expected)
    np.testing.assert_array_equal(out["segment_ids"], segments)
    np.testing.assert_array_equal(out["padding_mask"], pair_features["padding_mask"])


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_rates_on_a_large_batch(rate):
    ids = np.tile(np.r_[[2], np.arange(10, 70), [3], [0] * 4], (200, 1)).astype(np.int32)  # [CLS] 60 [SEP] pad
    features = {"token_ids": tf.constant(ids), "padding_mask": tf.constant(ids != 0)}
    eligible = 200 * 60
    dropped = (ids != 0).sum() - TokenDropout(rate, special_ids=(2, 3))(features, seed=SEED)["padding_mask"].numpy().sum()
    replaced = (RandomReplacement(rate, 100, special_ids=(2, 3))(features, seed=SEED)["token_ids"].numpy() != ids).sum()
    swapped = (LocalSwap(rate, special_ids=(2, 3))(features, seed=SEED)["token_ids"].numpy() != ids).sum()
    for count, probability in ((dropped, rate), (replaced, rate)):
        assert abs(count / eligible - probability) < 4 * np.sqrt(probability * (1 - probability) / eligible)
    # Each accepted swap moves two tokens; a fraction rate / (1 + rate) of the positions starts one.
    assert abs(swapped / 2 / eligible - rate / (1 + rate)) < 0.02


def test_map_is_deterministic_with_a_seed_and_new_each_epoch(tokenizer, movie_sentences):
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=LENGTH)
    features = preprocessor(tf.constant([t for t, _ in movie_sentences[:32]]))
    batches = tf.data.Dataset.from_tensor_slices((features, [y for _, y in movie_sentences[:32]])).batch(8)

    def run(transform, epochs=1):
        data = batches.map(transform)
        return [[(f["token_ids"], label) for f, label in data.as_numpy_iterator()] for _ in range(epochs)]

    def noise(seed):
        return Compose([RandomReplacement.from_tokenizer(tokenizer, 0.2), LocalSwap.from_tokenizer(tokenizer, 0.2),
                        TokenDropout.from_tokenizer(tokenizer, 0.2)], seed=seed)

    first, again, other = run(noise(3), epochs=2), run(noise(3), epochs=2), run(noise(4))
    for (ids, label), (ids_again, label_again) in zip(first[0] + first[1], again[0] + again[1]):
        np.testing.assert_array_equal(ids, ids_again)
        np.testing.assert_array_equal(label, label_again)  # labels pass through
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(first[0], other[0]))  # another seed
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(first[0], first[1]))  # another epoch
    clean = [f["token_ids"] for f, _ in batches.as_numpy_iterator()]
    assert all(not np.array_equal(a, b) for (a, _), b in zip(first[0], clean))


def test_unbatched_rows_give_the_same_noise_as_their_batch():
    ids = tf.constant([2, 10, 11, 12, 13, 14, 15, 3, 0, 0])
    for transform in (TokenDropout(0.5, special_ids=(2, 3)), LocalSwap(0.5, special_ids=(2, 3)),
                      RandomReplacement(0.5, 50, special_ids=(2, 3))):
        row = transform({"token_ids": ids}, seed=SEED)["token_ids"].numpy()
        batch = transform({"token_ids": ids[tf.newaxis]}, seed=SEED)["token_ids"].numpy()
        np.testing.assert_array_equal(row, batch[0])


def test_raw_text_words():
    text = "the film is a gripping and beautifully acted drama"
    words = text.split()
    u = _uniform([1, len(words)], SEED)[0]
    dropped = TokenDropout(0.3)(tf.constant(text), seed=SEED).numpy().decode()
    assert dropped == " ".join(w for w, draw in zip(words, u < 0.3) if not draw)
    swapped = LocalSwap(0.5)(tf.constant([text]), seed=SEED).numpy()[0].decode().split()
    expected = list(words)
    accepted = _greedy_swaps(np.r_[u[:-1] < 0.5, False][None])[0]
    for i in np.nonzero(accepted)[0]:
        expected[i], expected[i + 1] = words[i + 1], words[i]
    assert swapped == expected and accepted.sum() >= 1
    replaced = RandomReplacement(1.0, words=["dull"])({"text": tf.constant(text), "label": 1}, seed=SEED)
    assert replaced["text"].numpy().decode() == " ".join(["dull"] * len(words)) and replaced["label"] == 1


def test_raw_text_dataset_elements(movie_sentences):
    examples = tf.data.Dataset.from_tensor_slices({"text": [t for t, _ in movie_sentences[:4]],
                                                   "label": [y for _, y in movie_sentences[:4]]})
    out = list(examples.map(LocalSwap(0.3, seed=0)).as_numpy_iterator())
    for example, (text, label) in zip(out, movie_sentences[:4]):
        assert sorted(example["text"].decode().split()) == sorted(text.split())
        assert example["label"] == label


def test_bad_inputs_raise_one_clear_error():
    with pytest.raises(ValueError, match="rate"):
        TokenDropout(1.5)
    with pytest.raises(ValueError, match="moves tokens"):
        TokenDropout(0.1)({"token_ids": tf.constant([[2, 5, 3]]), "labels": tf.constant([[0, 1, 0]])}, seed=SEED)
    with pytest.raises(TypeError, match="token_ids"):
        LocalSwap(0.1)(tf.constant([1, 2, 3]), seed=SEED)
    with pytest.raises(ValueError, match="vocabulary_size"):
        RandomReplacement(0.1)({"token_ids": tf.constant([2, 5, 3])}, seed=SEED)
    with pytest.raises(ValueError, match="words"):
        RandomReplacement(0.1, 10)(tf.constant("a b"), seed=SEED)
    with pytest.raises(ValueError, match="fewer than two ordinary"):
        RandomReplacement(0.1, 4, special_ids=(1, 2))


# -- back-translation ----------------------------------------------------------------------------

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "is", "a", "dull", "gripping", "drama",
         "el", "la", "es", "una", "pelicula", "aburrida", "and", "not"]


def _translator(seed):
    from keras_lm.applications.transformer import Transformer
    from keras_lm.tasks.seq2seq_lm import Seq2SeqLM

    rng = np.random.default_rng(seed)
    backbone = Transformer("tiny", vocabulary_size=len(WORDS), num_layers=1, hidden_dim=16, num_heads=2,
                           intermediate_dim=32, dropout=0.0)
    for weight in backbone.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    return Seq2SeqLM(backbone, keras_lm.tokenizers.WordPiece(WORDS), source_length=8, target_length=6)


@pytest.fixture(scope="module")
def translators():
    return _translator(0), _translator(1)


TEXTS = ["the film is a dull drama", "a gripping film", "not a film", "the drama", "dull and not gripping"]


def test_back_translation_paraphrases_through_both_models_greedily(translators):
    forward, backward = translators
    back = BackTranslation(forward, backward, batch_size=2, jit_compile=False)
    paraphrases = back.paraphrase(TEXTS)
    assert isinstance(paraphrases, list) and len(paraphrases) == len(TEXTS)
    assert all(isinstance(p, str) for p in paraphrases)
    pivots = forward.generate(TEXTS, jit_compile=False)  # one batch: another order and padding
    backward_outputs = iter(backward.generate([p for p in pivots if p.strip()], jit_compile=False))
    expected = [next(backward_outputs) if p.strip() else "" for p in pivots]
    assert paraphrases == expected
    assert back.paraphrase(TEXTS) == paraphrases  # greedy decoding is deterministic
    assert sum(bool(p.strip()) for p in paraphrases) >= 2


def test_back_translation_keeps_the_originals_and_adds_paraphrases_with_their_labels(translators):
    back = BackTranslation(*translators, jit_compile=False)
    paraphrases = back.paraphrase(TEXTS)
    labels = [0, 1, 0, 1, 1]
    pairs = tf.data.Dataset.from_tensor_slices((TEXTS, labels))
    out = [(text.decode(), int(label)) for text, label in back.augment(pairs, paraphrases=paraphrases)
           .as_numpy_iterator()]
    expected = []
    for text, label, paraphrase in zip(TEXTS, labels, paraphrases):
        expected.append((text, label))
        if paraphrase.strip() and paraphrase != text:
            expected.append((paraphrase, label))
    assert out == expected and len(out) > len(TEXTS)
    examples = tf.data.Dataset.from_tensor_slices({"text": TEXTS, "label": labels, "id": np.arange(5)})
    generated = list(back.augment(examples).as_numpy_iterator())
    assert [(e["text"].decode(), int(e["label"])) for e in generated] == expected
    assert [int(e["id"]) for e in generated] == [i for i, (_, _, p) in enumerate(zip(TEXTS, labels, paraphrases))
                                                 for i in ([i, i] if p.strip() and p != TEXTS[i] else [i])]
    with pytest.raises(ValueError, match="unbatch"):
        back.augment(pairs.batch(2))
    with pytest.raises(TypeError, match="generate"):
        BackTranslation(object(), translators[1])
