"""T5 span corruption: noise statistics, exact reconstruction, batch shapes, fit on Shakespeare, .keras, errors."""
import collections
import io

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.pretraining.span_corruption import SpanCorruption
from keras_lm.pretraining.span_corruption_data import (
    random_spans_noise_mask,
    span_corruption,
    span_corruption_dataset,
    span_corruption_lengths,
    t5_sentinel_ids,
)

PIECES = 700  # SentencePiece vocabulary: pad 0, eos 1, unk 2, then pieces
EXTRA_IDS = 100  # T5's sentinels <extra_id_0..99> above the pieces: ids 799 down to 700
VOCABULARY_SIZE = PIECES + EXTRA_IDS
SENTINELS = t5_sentinel_ids(VOCABULARY_SIZE, EXTRA_IDS)
EOS, PAD = 1, 0


@pytest.fixture(scope="module")
def sentence_piece_model():
    """A serialized SentencePiece unigram model (T5's special ids) trained on three Shakespeare works."""
    import sentencepiece

    works = keras_lm.data.load("shakespeare", split="train").take(3)
    lines = [line for work in works.as_numpy_iterator() for line in work["text"].decode("utf-8").splitlines()
             if line.strip()]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=PIECES, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    return model.getvalue()


@pytest.fixture
def sentence_piece(sentence_piece_model):
    """The model as a keras-hub tokenizer. Built per test, after the test's seeding: setting a
    global seed clears TensorFlow's kernel caches, and with them the SentencePiece op's resource."""
    import keras_hub

    return keras_hub.tokenizers.SentencePieceTokenizer(proto=sentence_piece_model)


@pytest.fixture(scope="module")
def validation_works():
    return keras_lm.data.load("shakespeare", split="validation")


def _merge(inputs, targets):
    """The original tokens: each sentinel of ``inputs`` replaced by what follows it in ``targets``."""
    inputs, targets = list(inputs), list(targets)
    assert inputs[-1] == EOS and targets[-1] == EOS
    spans, current = {}, None
    for token in targets[:-1]:
        if token in SENTINEL_SET:
            current = token
            assert current not in spans, "a sentinel appears twice in the targets"
            spans[current] = []
        else:
            assert current is not None, "the targets must start with a sentinel"
            spans[current].append(token)
    used = [token for token in inputs[:-1] if token in SENTINEL_SET]
    assert used == list(spans), "inputs and targets name the same sentinels in the same order"
    assert used == SENTINELS[: len(used)], "sentinel i replaces the i-th span"
    merged = []
    for token in inputs[:-1]:
        merged.extend(spans[token] if token in SENTINEL_SET else [token])
    return merged


SENTINEL_SET = set(SENTINELS)


def _rows(batches):
    """Real (unpadded) inputs, targets, decoder inputs of every row, as lists."""
    for features, labels, weights in batches.as_numpy_iterator():
        for i in range(len(labels)):
            n_inputs = int(features["encoder_padding_mask"][i].sum())
            n_targets = int(weights[i].sum())
            yield (features["encoder_token_ids"][i, :n_inputs].tolist(), labels[i, :n_targets].tolist(),
                   features["decoder_token_ids"][i, :n_targets].tolist())


# --- (1) statistics ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_density, mean_noise_span_length", [(0.15, 3.0), (0.3, 5.0)])
def test_corrupted_rows_match_the_configured_noise_density_and_span_length(
    sentence_piece, validation_works, noise_density, mean_noise_span_length
):
    batches = span_corruption_dataset(
        validation_works, sentence_piece, inputs_length=128, batch_size=64, seed=3, noise_density=noise_density,
        mean_noise_span_length=mean_noise_span_length, sentinel_ids=SENTINELS, eos_id=EOS,
    ).take(10)
    noise = kept = 0
    span_lengths = []
    for inputs, targets, _ in _rows(batches):
        spans = sum(token in SENTINEL_SET for token in inputs)
        kept += len(inputs) - spans - 1
        noise += len(targets) - spans - 1
        lengths = []
        for token in targets[:-1]:
            if token in SENTINEL_SET:
                lengths.append(0)
            else:
                lengths[-1] += 1
        span_lengths += lengths
    assert len(span_lengths) > 1000
    density = noise / (noise + kept)
    print(f"density {density:.4f}, mean span {np.mean(span_lengths):.3f}, spans {len(span_lengths)}")
    assert abs(density - noise_density) <= 0.1 * noise_density
    assert abs(np.mean(span_lengths) - mean_noise_span_length) <= 0.1 * mean_noise_span_length
    # Random segmentation, not fixed-length spans: lengths vary from 1 up.
    assert min(span_lengths) == 1 and max(span_lengths) >= 2 * mean_noise_span_length


def test_noise_mask_is_t5s_random_spans(noise_density=0.15, mean_noise_span_length=3.0):
    length, draws = 200, 500
    draw = tf.function(lambda seed: random_spans_noise_mask(length, noise_density, mean_noise_span_length, seed))
    masks = np.stack([draw(tf.constant([seed, 7])).numpy() for seed in range(draws)])
    assert masks.shape == (draws, length) and masks.dtype == bool
    # T5: exactly round(200 * 0.15) = 30 noise tokens in round(30 / 3) = 10 spans, non-noise first.
    assert (masks.sum(axis=1) == 30).all()
    starts = masks & ~np.pad(masks[:, :-1], [[0, 0], [1, 0]])
    assert (starts.sum(axis=1) == 10).all()
    assert not masks[:, 0].any() and masks[:, -1].all()
    # Spans land anywhere in between, and the middle of the row is corrupted at the configured
    # rate (T5's interleaving lowers the rate near the start and raises it near the end).
    assert masks[:, 1:].any(axis=0).all() and not masks[:, :-1].all(axis=0).any()
    assert abs(masks[:, length // 4: 3 * length // 4].mean() - noise_density) <= 0.1 * noise_density
    assert len({mask.tobytes() for mask in masks}) == draws  # every seed draws another mask
    same = random_spans_noise_mask(length, noise_density, mean_noise_span_length, seed=(5, 7)).numpy()
    assert (same == masks[5]).all()  # stateless: the seed decides, eager and in a graph alike


def test_lengths_follow_t5s_random_spans_helper():
    assert span_corruption_lengths(512) == (568, 114)  # T5's span_corruption task: inputs 512 -> targets 114
    assert span_corruption_lengths(128, 0.15, 3.0) == (141, 29)  # 141 - 21 + 7 + 1 = 128; 21 + 7 + 1
    assert span_corruption_lengths(512, 0.5, 3.0)[1] <= 512


# --- (2) exact reconstruction --------------------------------------------------------------------------------


def test_merging_inputs_and_targets_at_the_sentinels_restores_the_tokens():
    rng = np.random.default_rng(0)
    for seed in range(60):
        length = int(rng.choice([0, 1, 2, 3, 7, 20, 57, 142, 300]))
        tokens = rng.integers(3, PIECES, size=length).tolist()
        density, span = [(0.15, 3.0), (0.3, 5.0), (0.5, 2.0)][seed % 3]  # at most 75 spans
        inputs, targets = span_corruption(tokens, SENTINELS, EOS, density, span, seed=(seed, 11))
        inputs, targets = inputs.numpy().tolist(), targets.numpy().tolist()
        assert _merge(inputs, targets) == tokens, seed
        assert len(inputs) + len(targets) == length + 2 * sum(t in SENTINEL_SET for t in inputs) + 2
        if length >= 2:
            assert sum(t in SENTINEL_SET for t in inputs) >= 1 and inputs[0] not in SENTINEL_SET


def test_span_corruption_of_a_given_mask_is_exact():
    mask = tf.constant([False, True, True, False, False, True, False, True])
    inputs, targets = span_corruption([10, 11, 12, 13, 14, 15, 16, 17], [99, 98, 97], eos_id=1, noise_mask=mask)
    assert inputs.numpy().tolist() == [10, 99, 13, 14, 98, 16, 97, 1]
    assert targets.numpy().tolist() == [99, 11, 12, 98, 15, 97, 17, 1]


def test_dataset_rows_reassemble_the_tokenized_corpus(sentence_piece, validation_works):
    batches = span_corruption_dataset(
        validation_works, sentence_piece, inputs_length=128, batch_size=32, seed=1, sentinel_ids=SENTINELS,
        eos_id=EOS, shuffle=False,
    )
    restored = [token for inputs, targets, _ in _rows(batches) for token in _merge(inputs, targets)]
    # Tokenized the way the pipeline does (in a graph): see the report on long SentencePiece inputs.
    stream = [token for ids in validation_works.map(lambda work: sentence_piece(work["text"])).as_numpy_iterator()
              for token in ids.tolist()]
    assert len(stream) > 100_000
    assert restored == stream  # every token once, in order: chunking and corruption lose nothing


# --- (3) shapes, dtypes, no overflow ---------------------------------------------------------------------------


def test_batches_are_full_fixed_length_rows_without_overflow(sentence_piece, validation_works):
    inputs_length, targets_length = 100, 24
    batches = span_corruption_dataset(
        validation_works, sentence_piece, inputs_length=inputs_length, targets_length=targets_length,
        batch_size=16, seed=2, sentinel_ids=SENTINELS, eos_id=EOS,
    )
    spec_features, spec_labels, spec_weights = batches.element_spec
    assert {name: (s.shape.as_list(), s.dtype) for name, s in spec_features.items()} == {
        "encoder_token_ids": ([None, inputs_length], tf.int32),
        "encoder_padding_mask": ([None, inputs_length], tf.int32),
        "decoder_token_ids": ([None, targets_length], tf.int32),
        "decoder_padding_mask": ([None, targets_length], tf.int32),
    }
    assert (spec_labels.shape.as_list(), spec_labels.dtype) == ([None, targets_length], tf.int32)
    assert (spec_weights.shape.as_list(), spec_weights.dtype) == ([None, targets_length], tf.float32)
    _, natural_targets = span_corruption_lengths(inputs_length)
    lengths = collections.Counter()
    for features, labels, weights in batches.take(20).as_numpy_iterator():
        n_inputs = features["encoder_padding_mask"].sum(axis=1)
        n_targets = weights.sum(axis=1).astype(int)
        assert (features["decoder_padding_mask"].sum(axis=1) == n_targets).all()
        lengths.update(zip(n_inputs.tolist(), n_targets.tolist()))
        for i in range(len(labels)):
            real, pad = slice(0, n_inputs[i]), slice(n_inputs[i], None)
            assert features["encoder_token_ids"][i, real][-1] == EOS and labels[i, n_targets[i] - 1] == EOS
            assert (features["encoder_token_ids"][i, pad] == PAD).all() and (labels[i, n_targets[i]:] == PAD).all()
            # decoder input = targets shifted right after the start id (the pad id, as T5)
            assert features["decoder_token_ids"][i, 0] == PAD
            assert (features["decoder_token_ids"][i, 1:n_targets[i]] == labels[i, : n_targets[i] - 1]).all()
    # Rows are full: one corrupted length, the one T5's helper computes; only the stream's last row
    # (shuffled in anywhere) is shorter.
    full = lengths.pop((inputs_length, natural_targets))
    assert full >= 20 * 16 - 1 and sum(lengths.values()) <= 1 and natural_targets < targets_length
    assert all(n_inputs < inputs_length and n_targets <= natural_targets for n_inputs, n_targets in lengths)


def test_corruption_is_reproducible_and_redrawn_every_epoch(sentence_piece, validation_works):
    def first_batch(dataset):
        return next(iter(dataset))[0]["encoder_token_ids"].numpy()

    def make(seed, shuffle=True):
        return span_corruption_dataset(validation_works, sentence_piece, inputs_length=64, batch_size=8,
                                       seed=seed, sentinel_ids=SENTINELS, eos_id=EOS, shuffle=shuffle)

    assert (first_batch(make(4)) == first_batch(make(4))).all()
    shuffled = make(4)
    assert not (first_batch(shuffled) == first_batch(shuffled)).all()  # new epoch, new rows and spans
    fixed = make(4, shuffle=False)
    assert (first_batch(fixed) == first_batch(fixed)).all()  # evaluation: the same every pass


# --- (4) fit on Shakespeare ------------------------------------------------------------------------------------


def _tiny_t5():
    return keras_lm.applications.T5(None, vocabulary_size=VOCABULARY_SIZE, num_layers=2, num_heads=2,
                                    hidden_dim=64, head_dim=32, intermediate_dim=128, dropout=0.0)


@pytest.mark.slow  # long: run with -m slow
def test_fit_on_shakespeare_lowers_the_held_out_loss(sentence_piece, validation_works, unigram_baseline):
    model = SpanCorruption(_tiny_t5())  # seeded by the autouse fixture
    model.compile(optimizer=keras_lm.training.adamw(1e-2, warmup=5))
    train_works = keras_lm.data.load("shakespeare", split="train").take(8)
    train = model.dataset(train_works, sentence_piece, inputs_length=64, batch_size=16, seed=0,
                          sentinel_ids=SENTINELS, eos_id=EOS)
    held_out = model.dataset(validation_works, sentence_piece, inputs_length=64, batch_size=16, shuffle=False,
                             seed=0, sentinel_ids=SENTINELS, eos_id=EOS).take(8)
    labels, weights = zip(*[(y, w) for _, y, w in held_out.as_numpy_iterator()])
    entropy, most_frequent = unigram_baseline(np.concatenate(labels), np.concatenate(weights))
    before = model.evaluate(held_out, return_dict=True, verbose=0)
    model.fit(train.take(100), verbose=0)
    after = model.evaluate(held_out, return_dict=True, verbose=0)
    print(before, after, {"unigram_entropy": entropy, "most_frequent": most_frequent})
    assert before["loss"] > 0.9 * np.log(VOCABULARY_SIZE)  # untrained: about uniform
    assert after["loss"] < before["loss"] - 2.0  # measured: 7.16 -> 4.60 (unigram entropy 4.73)
    # Far above always answering the most frequent target token (about 7%): it has learned the
    # sentinels' order and the end token from the corrupted inputs (measured: 25%).
    assert after["accuracy"] > 2 * most_frequent


# --- (5) .keras round trip -------------------------------------------------------------------------------------


def test_keras_file_round_trip_gives_equal_outputs_and_stays_compiled(tmp_path, sentence_piece, validation_works):
    model = SpanCorruption(_tiny_t5(), noise_density=0.2, mean_noise_span_length=4.0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    padded_targets = span_corruption_lengths(48, 0.2, 4.0)[1] + 6  # padding the loss must leave out
    batch = model.dataset(validation_works, sentence_piece, inputs_length=48, targets_length=padded_targets,
                          batch_size=4, shuffle=False, seed=0, sentinel_ids=SENTINELS, eos_id=EOS).take(1)
    features, labels, weights = next(iter(batch))
    assert 0 < weights.numpy().mean() < 1
    path = str(tmp_path / "span_corruption.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, SpanCorruption) and isinstance(reloaded.backbone, keras_lm.applications.T5)
    assert (reloaded.noise_density, reloaded.mean_noise_span_length) == (0.2, 4.0)
    logits = model(features).numpy()
    np.testing.assert_array_equal(logits, reloaded(features).numpy())
    # Compiled on load, with the built-in loss: the mean cross-entropy over the real target tokens.
    assert reloaded.optimizer.learning_rate.numpy() == pytest.approx(2e-3)
    log_probabilities = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    token_losses = -np.take_along_axis(log_probabilities, labels.numpy()[..., None], -1)[..., 0]
    expected = (token_losses * weights.numpy()).sum() / weights.numpy().sum()
    assert reloaded.evaluate(batch, return_dict=True, verbose=0)["loss"] == pytest.approx(expected, rel=1e-5)


# --- (6) clear errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("density", [0.0, 1.0, -0.1, 1.5])
def test_noise_density_outside_zero_one_is_refused(density):
    with pytest.raises(ValueError, match="noise_density must be strictly between 0 and 1"):
        random_spans_noise_mask(10, density)
    with pytest.raises(ValueError, match="noise_density"):
        SpanCorruption(_tiny_t5(), noise_density=density)


def test_mean_span_length_below_one_is_refused():
    with pytest.raises(ValueError, match="mean_noise_span_length must be at least 1"):
        span_corruption_lengths(128, 0.15, 0.5)


def test_too_short_lengths_are_refused(sentence_piece, validation_works):
    with pytest.raises(ValueError, match=r"inputs_length=5 is too short .* Use inputs_length >= \d+"):
        span_corruption_lengths(5)
    with pytest.raises(ValueError, match=r"targets_length=10 is too short.*targets_length >= 29"):
        span_corruption_dataset(validation_works, sentence_piece, inputs_length=128, targets_length=10,
                                sentinel_ids=SENTINELS, eos_id=EOS)


def test_empty_corpus_is_refused(sentence_piece):
    empty = tf.data.Dataset.from_tensor_slices(tf.constant(["", ""]))
    with pytest.raises(ValueError, match="The corpus is empty"):
        span_corruption_dataset(empty, sentence_piece, inputs_length=64, sentinel_ids=SENTINELS, eos_id=EOS)


def test_too_few_sentinels_are_refused(sentence_piece, validation_works):
    with pytest.raises(ValueError, match=r"Rows of 141 tokens have 7 noise spans but only 3 sentinel ids.*at least 7"):
        span_corruption_dataset(validation_works, sentence_piece, inputs_length=128, sentinel_ids=SENTINELS[:3],
                                eos_id=EOS)
    with pytest.raises(ValueError, match="more noise spans than the 2 sentinel ids"):
        span_corruption(list(range(3, 103)), SENTINELS[:2], EOS)
    # In a tf.data graph the same check fails the pipeline with the same message.
    rows = tf.data.Dataset.from_tensors(tf.range(3, 103))
    graph = rows.map(lambda row: span_corruption(row, SENTINELS[:2], EOS))
    with pytest.raises(tf.errors.InvalidArgumentError, match="more noise spans than the 2 sentinel ids"):
        next(iter(graph))


def test_default_sentinels_must_not_collide_with_the_tokenizer(sentence_piece, validation_works):
    backbone = keras_lm.applications.T5(None, vocabulary_size=PIECES, num_layers=1, num_heads=2, hidden_dim=32,
                                        head_dim=16, intermediate_dim=64)
    with pytest.raises(ValueError, match="needs sentinel_ids.*reuse ids of the tokenizer"):
        SpanCorruption(backbone).dataset(validation_works, sentence_piece, inputs_length=64, eos_id=EOS)
    model = SpanCorruption(_tiny_t5())  # room above the pieces: T5's convention applies
    features, _, _ = next(iter(model.dataset(validation_works, sentence_piece, inputs_length=64, eos_id=EOS,
                                             batch_size=2, seed=0)))
    first_sentinel = features["encoder_token_ids"].numpy()[features["encoder_token_ids"].numpy() >= PIECES].max()
    assert first_sentinel == VOCABULARY_SIZE - 1
    with pytest.raises(ValueError, match="needs the end-of-sequence id"):
        model.dataset(validation_works, sentence_piece, inputs_length=64, sentinel_ids=SENTINELS)


def test_a_non_encoder_decoder_backbone_is_refused():
    with pytest.raises(TypeError, match="needs an encoder-decoder backbone.*got Bert"):
        SpanCorruption(keras_lm.applications.Bert("tiny", vocabulary_size=100))
