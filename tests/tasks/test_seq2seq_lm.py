import collections
import doctest
import itertools

import keras
import keras_hub
import numpy as np
import pytest

import keras_lm
import keras_lm.tasks.beam_search as beam_search_module
import keras_lm.tasks.seq2seq_lm as seq2seq_module
from keras_lm.applications import T5
from keras_lm.applications.transformer import Transformer
from keras_lm.tasks.seq2seq_lm import Seq2SeqLM

VOCABULARY = 64
START, END = 0, 1
SOURCES = [[5, 17, 42], [33, 3, 50, 7, 8, 61, 2, 9, 10, 11, 12], [20]]


def spread_weights(model, seed=0, scale=0.3):
    """Larger random weights (norm scales around 1), so greedy choices are far from ties."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        offset = 1.0 if weight.path.endswith("gamma") else 0.0
        weight.assign(offset + rng.normal(scale=scale, size=weight.shape).astype("float32"))
    return model


def tiny_transformer(vocabulary_size=VOCABULARY, seed=0, scale=0.3, **overrides):
    config = dict(vocabulary_size=vocabulary_size, num_layers=2, hidden_dim=32, num_heads=4, intermediate_dim=64,
                  dropout=0.0)
    return spread_weights(Transformer("tiny", **{**config, **overrides}), seed, scale)


def model_of(backbone, **kwargs):
    return Seq2SeqLM(backbone, **{"source_length": 16, "target_length": 16, "decoder_start_token_id": START,
                                  "end_token_id": END, **kwargs})


def full_log_probs(backbone, source, prefixes):
    """float64 log-softmax of the next token after each decoder prefix (whole sequences, no cache)."""
    prefixes = np.asarray(prefixes, "int32")
    source = np.repeat(np.asarray([source], "int32"), len(prefixes), axis=0)
    outputs = backbone({"encoder_token_ids": source, "encoder_padding_mask": np.ones_like(source),
                        "decoder_token_ids": prefixes, "decoder_padding_mask": np.ones_like(prefixes)})
    logits = np.asarray(backbone.logits(outputs["decoder_sequence_output"]))[:, -1].astype("float64")
    logits -= logits.max(axis=-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))


def uncached_greedy(backbone, source, steps, stop=None):
    """Greedy decoding by recomputing encoder and decoder over the whole prefix at every step."""
    generated = []
    for _ in range(steps):
        token = int(np.argmax(full_log_probs(backbone, source, [[START] + generated])[0]))
        generated.append(token)
        if token == stop:
            break
    return generated


def test_cached_generation_equals_uncached_recomputation():
    backbone = tiny_transformer()
    model = model_of(backbone, end_token_id=None)
    generated = model.generate(SOURCES, max_new_tokens=10, jit_compile=False)
    expected = [uncached_greedy(backbone, source, 10) for source in SOURCES]
    assert generated == expected
    assert len({tuple(row) for row in expected}) == 3  # the sources matter
    # Compiled with XLA: the same tokens.
    assert model.generate(SOURCES, max_new_tokens=10, jit_compile=True) == expected


def test_batched_sources_of_different_lengths_equal_one_at_a_time():
    model = model_of(tiny_transformer(seed=1))
    for sampler in ("greedy", "beam"):
        batched = model.generate(SOURCES, max_new_tokens=12, sampler=sampler, jit_compile=False)
        for source, output in zip(SOURCES, batched):
            assert model.generate(source, max_new_tokens=12, sampler=sampler, jit_compile=False) == output
    # Beam search compiled with XLA (the default): the same hypotheses.
    assert model.generate(SOURCES, max_new_tokens=12, sampler="beam", jit_compile=True) == batched
    # The same sources as a right-padded dict.
    ids = np.zeros((3, 11), "int32")
    mask = np.zeros((3, 11), "int32")
    for i, source in enumerate(SOURCES):
        ids[i, :len(source)], mask[i, :len(source)] = source, 1
    assert model.generate({"encoder_token_ids": ids, "encoder_padding_mask": mask}, max_new_tokens=12,
                          jit_compile=False) == model.generate(SOURCES, max_new_tokens=12, jit_compile=False)


def test_stop_token_ends_each_row_and_beam_one_is_greedy():
    backbone = tiny_transformer(seed=2)
    free = model_of(backbone, end_token_id=None).generate(SOURCES, max_new_tokens=12, jit_compile=False)
    stop = free[0][3]  # a token row 0 produces at step 4: rows stop at different steps
    model = model_of(backbone, end_token_id=stop)
    greedy = model.generate(SOURCES, max_new_tokens=12, jit_compile=False)
    for source, row in zip(SOURCES, greedy):
        assert row == uncached_greedy(backbone, source, 12, stop=stop)
    assert greedy[0][-1] == stop and len(greedy[0]) <= 4
    assert any(len(row) != len(greedy[0]) for row in greedy)
    beam_one = model.generate(SOURCES, max_new_tokens=12, sampler="beam", num_beams=1, length_penalty=0.0,
                              jit_compile=False)
    assert beam_one == greedy


def hypotheses(vocabulary, end, length):
    """Every hypothesis of at most ``length`` tokens: ending at the first ``end``, or ``length`` long without it."""
    for n in range(1, length + 1):
        for tokens in itertools.product(range(vocabulary), repeat=n):
            if end in tokens[:-1] or (n < length and tokens[-1] != end):
                continue
            yield list(tokens)


def exhaustive_best(backbone, source, vocabulary, length, alpha, end=END):
    """The hypothesis with the best sum(log p) / ((5 + n) / 6) ** alpha, by enumeration (uncached)."""
    prefixes = sorted({tuple(h[:i]) for h in hypotheses(vocabulary, end, length) for i in range(len(h))})
    log_probs = {}
    for length_of_prefix in {len(p) for p in prefixes}:
        group = [p for p in prefixes if len(p) == length_of_prefix]
        log_probs.update(zip(group, full_log_probs(backbone, source, [[START, *p] for p in group])))
    best, best_score = None, -np.inf
    for hypothesis in hypotheses(vocabulary, end, length):
        total = sum(log_probs[tuple(hypothesis[:i])][token] for i, token in enumerate(hypothesis))
        score = total / ((5 + len(hypothesis)) / 6) ** alpha
        if score > best_score:
            best, best_score = hypothesis, score
    return best


@pytest.mark.parametrize("length,num_beams", [(2, 4), (3, 16)])
def test_beam_search_returns_the_best_hypothesis_under_the_length_penalty(length, num_beams):
    # Vocabulary 4 (start 0, end 1): with 4 beams every 1-token prefix is kept for a 2-token
    # search, with 16 every 2-token prefix for a 3-token one, so beam search must find the optimum.
    backbone = tiny_transformer(vocabulary_size=4, seed=1, scale=0.2)  # the end token is often likely
    model = model_of(backbone)
    sources = [[2, 3], [3, 3, 2, 0], [1], [2, 2, 2], [0, 3], [3]]
    best = {alpha: [exhaustive_best(backbone, s, 4, length, alpha) for s in sources] for alpha in (0.0, 2.0)}
    assert best[0.0] != best[2.0]  # the penalty changes the answer for some source
    assert {len(h) for h in best[0.0] + best[2.0]} >= {1, length}
    for alpha in (0.0, 2.0):
        found = model.generate(sources, max_new_tokens=length, sampler="beam", num_beams=num_beams,
                               length_penalty=alpha, jit_compile=False)
        assert found == best[alpha], alpha


def test_not_retraced_for_calls_in_the_same_bucket():
    model = model_of(tiny_transformer(seed=4))
    # Buckets: batch 4, source <= 16 tokens, max_new_tokens <= 16.
    calls = [([[1, 2, 3], [4, 5, 6, 7, 8], [9]], 5), ([[3] * 16, [4], [5]], 16), ([[7, 8]] * 4, 9)]
    for sources, steps in calls:
        assert len(model.generate(sources, max_new_tokens=steps, jit_compile=False)) == len(sources)
    assert model.generate_trace_count == 1
    for (sources, steps), alpha in zip(calls, (0.6, 0.0, 1.0)):
        model.generate(sources, max_new_tokens=steps, sampler="beam", length_penalty=alpha, jit_compile=False)
    assert model.generate_trace_count == 2  # one more function: beam search
    model.generate([[1, 2]], max_new_tokens=17, jit_compile=False)  # a longer target bucket
    assert model.generate_trace_count == 3


def test_samplers_and_sampler_errors():
    model = model_of(tiny_transformer(seed=5))
    for sampler in ("top_k", keras_hub.samplers.TopPSampler(p=0.5, seed=1)):
        rows = model.generate(SOURCES, max_new_tokens=6, sampler=sampler, jit_compile=False)
        assert len(rows) == 3 and all(0 < len(r) <= 6 and all(0 <= t < VOCABULARY for t in r) for r in rows)
    beam = model.generate(SOURCES, max_new_tokens=6, sampler=keras_hub.samplers.BeamSampler(num_beams=2),
                          jit_compile=False)
    assert beam == model.generate(SOURCES, max_new_tokens=6, sampler="beam", num_beams=2, jit_compile=False)
    with pytest.raises(ValueError, match="Unknown sampler 'nucleus'"):
        model.generate(SOURCES, sampler="nucleus")
    with pytest.raises(ValueError, match="num_beams must be an integer >= 1, got 0"):
        model.generate(SOURCES, sampler="beam", num_beams=0)
    with pytest.raises(ValueError, match="k must be an integer"):
        model.generate(SOURCES, sampler=keras_hub.samplers.TopKSampler(k=0))


def test_bad_sources_are_clear_errors_and_long_sources_are_truncated():
    model = model_of(tiny_transformer(seed=6), source_length=8)
    with pytest.raises(ValueError, match="empty batch"):
        model.generate([])
    with pytest.raises(ValueError, match="Source 1 is empty"):
        model.generate([[3, 4], []])
    with pytest.raises(ValueError, match=r"token id 64 is outside the vocabulary \[0, 64\)"):
        model.generate([[3, 64]])
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        model.generate([[3]], max_new_tokens=0)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        model.generate("no tokenizer here")
    long_source = list(range(2, 30))
    assert (model.generate(long_source, max_new_tokens=6, jit_compile=False)
            == model.generate(long_source[:8], max_new_tokens=6, jit_compile=False))
    with pytest.raises(TypeError, match="encoder-decoder backbone"):
        Seq2SeqLM(keras_lm.applications.Gpt2("tiny", vocabulary_size=64), source_length=8, target_length=8)
    with pytest.raises(ValueError, match="needs decoder_start_token_id"):
        Seq2SeqLM(tiny_transformer(vocabulary_size=256), keras_hub.tokenizers.ByteTokenizer(), source_length=8,
                  target_length=8)
    with pytest.raises(ValueError, match=r"end_token_id=64 is outside the backbone's vocabulary"):
        model_of(tiny_transformer(), end_token_id=64)


def word_piece(vocabulary):
    return keras_lm.tokenizers.WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *vocabulary])


def test_dataset_builds_teacher_forcing_batches_with_truncation():
    tokenizer = word_piece(["to", "be", "or", "not", "that"])  # ids 5..9
    model = Seq2SeqLM(tiny_transformer(vocabulary_size=10), tokenizer, source_length=3, target_length=4)
    assert (model.decoder_start_token_id, model.end_token_id) == (2, 3)  # [CLS], [SEP]
    features, labels, weights = next(iter(model.dataset([("to be or not", "not or be to that"), ("be", "to")],
                                                        batch_size=2)))
    assert features["encoder_token_ids"].numpy().tolist() == [[5, 6, 7], [6, 0, 0]]
    assert features["encoder_padding_mask"].numpy().tolist() == [[1, 1, 1], [1, 0, 0]]
    assert features["decoder_token_ids"].numpy().tolist() == [[2, 8, 7, 6], [2, 5, 0, 0]]
    assert features["decoder_padding_mask"].numpy().tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert labels.numpy().tolist() == [[8, 7, 6, 3], [5, 3, 0, 0]]
    assert weights.numpy().tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    with pytest.raises(ValueError, match="got no examples"):
        model.fit([])
    # T5-style sources end with the end token (truncated one token earlier); generation from
    # text appends it the same way.
    ended = Seq2SeqLM(model.backbone, tokenizer, source_length=3, target_length=4, source_end_token=True)
    features, _, _ = next(iter(ended.dataset([("to be or not", "be"), ("be", "to")], batch_size=2)))
    assert features["encoder_token_ids"].numpy().tolist() == [[5, 6, 3], [6, 3, 0]]
    expected = model.generate([5, 6, 3], max_new_tokens=3, jit_compile=False)
    words = tokenizer.get_vocabulary()
    assert ended.generate("to be or not", max_new_tokens=3, jit_compile=False) == " ".join(
        words[i] for i in expected if i != 3)


def test_label_smoothing_loss_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5)).astype("float32")
    labels = rng.integers(0, 5, (2, 3))
    weights = np.array([[1, 1, 0], [1, 0, 0]], "float32")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = 0.9 * np.eye(5)[labels] + 0.1 / 5
    expected = (-(target * log_probs).sum(-1) * weights).sum() / weights.sum()
    loss = seq2seq_module.SmoothedSparseCrossEntropy(0.1)
    assert abs(float(loss(labels, logits, weights)) - expected) < 1e-5


def shakespeare_lines():
    """The distinct short lines of Shakespeare's works (3 to 6 words of letters), lower-cased, in order."""
    lines = []
    for example in keras_lm.data.load("shakespeare", split="train"):
        for line in example["text"].numpy().decode("utf-8").splitlines():
            words = line.strip().lower().replace(",", "").replace(".", "").split()
            if 3 <= len(words) <= 6 and all(w.isalpha() for w in words):
                lines.append(" ".join(words))
    return list(dict.fromkeys(lines))


@pytest.mark.slow  # long: run with -m slow
def test_fit_learns_to_reverse_the_words_of_shakespeare_lines():
    # The task: a line of Shakespeare in, its words in reverse order out ("keep him out" ->
    # "out him keep"). Lines made of the 300 most frequent words (a word-level WordPiece
    # vocabulary); the last 32 such lines are held out and only ever decoded.
    lines = shakespeare_lines()
    counts = collections.Counter(word for line in lines for word in line.split())
    words = sorted(word for word, _ in counts.most_common(300))
    known = [line for line in lines if all(word in words for word in line.split())]
    train, held_out = known[:-32], known[-32:]
    assert len(train) >= 1000
    tokenizer = word_piece(words)
    backbone = Transformer("tiny", vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, hidden_dim=64,
                           num_heads=4, intermediate_dim=128, dropout=0.0)
    model = Seq2SeqLM(backbone, tokenizer, source_length=8, target_length=8, label_smoothing=0.1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))

    def reversed_exactly():
        outputs = model.generate(held_out, max_new_tokens=8, jit_compile=False)
        return np.mean([output.split() == line.split()[::-1] for line, output in zip(held_out, outputs)])

    before = reversed_exactly()
    targets = [" ".join(line.split()[::-1]) for line in train]
    history = model.fit(train, targets, batch_size=32, epochs=6, verbose=0)  # strings as x and y
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0] and history.history["accuracy"][-1] > 0.8
    after = reversed_exactly()  # about 0.65 on this machine
    assert before == 0.0 and after >= 0.3, (before, after)


def hf_t5(directory, randomize_every_parameter):
    """A random-weight transformers T5 v1.0 (every parameter random), saved to ``directory``."""
    import transformers

    config = transformers.T5Config(vocab_size=151, d_model=32, d_kv=6, d_ff=48, num_layers=2, num_decoder_layers=3,
                                   num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                                   feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0,
                                   eos_token_id=None, attn_implementation="eager")
    model = transformers.T5ForConditionalGeneration(config).eval()
    randomize_every_parameter(model, seed=0, is_norm_scale=lambda name: name.endswith("layer_norm.weight"))
    model.save_pretrained(directory)
    return model


def test_t5_greedy_generation_matches_transformers(tmp_path, randomize_every_parameter):
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    reference = hf_t5(tmp_path, randomize_every_parameter)
    model = Seq2SeqLM(T5.from_hf(tmp_path), source_length=16, target_length=16, decoder_start_token_id=0)
    sources = [[5, 17, 42, 99, 150, 7], [33, 3, 50, 7, 8, 61, 2, 9, 10, 11, 12], [20, 21]]
    ours = model.generate(sources, max_new_tokens=16, jit_compile=False)
    ids = np.zeros((3, 11), "int64")
    mask = np.zeros((3, 11), "int64")
    for i, source in enumerate(sources):
        ids[i, :len(source)], mask[i, :len(source)] = source, 1
    with torch.no_grad():
        expected = reference.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                      max_new_tokens=16, do_sample=False, num_beams=1, decoder_start_token_id=0,
                                      cache=EncoderDecoderCache(DynamicCache(), DynamicCache())).numpy()
    assert expected.shape == (3, 17)
    assert ours == expected[:, 1:].tolist()
    assert len({tuple(row) for row in ours}) == 3


@pytest.mark.slow  # long: run with -m slow
def test_keras_round_trip_gives_identical_generation(tmp_path):
    tokenizer = word_piece(["to", "be", "or", "not", "that", "is", "the", "question"])
    backbone = tiny_transformer(vocabulary_size=tokenizer.vocabulary_size(), seed=7)
    model = Seq2SeqLM(backbone, tokenizer, source_length=8, target_length=6, label_smoothing=0.1)
    model.compile()
    pairs = [("to be or not", "not or be to"), ("that is the question", "question the is that"), ("be", "be")]
    path = str(tmp_path / "seq2seq.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Seq2SeqLM and restored.get_config() == model.get_config()
    assert (restored.decoder_start_token_id, restored.end_token_id, restored.label_smoothing) == (2, 3, 0.1)
    texts = ["to be or not to be", "that is the question"]
    for sampler in ("greedy", "beam"):
        expected = model.generate(texts, sampler=sampler, jit_compile=False)
        assert all(isinstance(t, str) for t in expected)
        assert restored.generate(texts, sampler=sampler, jit_compile=False) == expected
    assert restored.generate([[5, 6, 7]], jit_compile=False) == model.generate([[5, 6, 7]], jit_compile=False)
    # Compiled on load (the loss with its smoothing, the metrics): the same evaluation.
    expected = model.evaluate(pairs, verbose=0, return_dict=True)
    assert restored.evaluate(pairs, verbose=0, return_dict=True) == pytest.approx(expected, abs=1e-6)
    assert restored.loss.label_smoothing == 0.1 and set(expected) == {"loss", "accuracy"}


@pytest.mark.parametrize("module", [seq2seq_module, beam_search_module], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow  # long: run with -m slow
def test_a_functional_task_built_first_does_not_break_seq2seq_lm(tmp_path):
    # Building a functional task makes keras rewrite its base classes into keras' Functional; a
    # Seq2SeqLM (a subclassed model) built or loaded afterwards in the same process must still work.
    words = ["to", "be", "or", "not"]
    backbone = keras_lm.applications.Bert(None, vocabulary_size=9, num_layers=1, hidden_dim=16, num_heads=2,
                                          max_sequence_length=8)
    keras_lm.tasks.Classifier(backbone, num_classes=2)
    model = Seq2SeqLM(tiny_transformer(vocabulary_size=9), word_piece(words), source_length=8, target_length=6)
    model.compile()
    model.fit([("to be", "be to")], epochs=1, verbose=0)
    model.save(str(tmp_path / "model.keras"))
    restored = keras.saving.load_model(str(tmp_path / "model.keras"))
    assert restored.generate("to be", jit_compile=False) == model.generate("to be", jit_compile=False)
