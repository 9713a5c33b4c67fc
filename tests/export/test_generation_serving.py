"""Generation serving export of a causal LM: prompts in, generated text out, in a fresh process."""
import numpy as np
import pytest
import tensorflow as tf

import keras_lm

MAX_NEW = 10
CONTEXT = 48
PADDED_VOCABULARY = 512  # the backbone's rows; the tokenizer has 500 tokens
PROMPTS = ["To be, or not to be", "KING HENRY. My lord", "O"]


@pytest.fixture(scope="module")
def tokenizer():
    works = keras_lm.data.load("shakespeare", split="train").take(3)
    return keras_lm.tokenizers.BytePair.train(works, vocabulary_size=500)


def _spread_weights(model, seed=0):
    """Larger random matrices, so greedy choices are far from ties and the text varies."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if len(weight.shape) >= 2:
            weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))


@pytest.fixture(scope="module")
def causal_lm(tokenizer):
    """A GPT-2 whose vocabulary is padded past the tokenizer's, with padded rows that would win."""
    assert tokenizer.vocabulary_size() == 500
    backbone = keras_lm.applications.Gpt2(
        "tiny", vocabulary_size=PADDED_VOCABULARY, hidden_dim=32, num_heads=2, max_sequence_length=CONTEXT
    )
    _spread_weights(backbone)
    lm = keras_lm.pretraining.CausalLM(backbone, tokenizer, start_token_id=tokenizer.end_token_id)
    # Make the end-of-text token the greedy choice wherever the third token row 0 generates would be:
    # rows then stop at different points.
    free = lm.generate([tokenizer(PROMPTS[0]).numpy().tolist()], max_new_tokens=MAX_NEW, stop_token_ids=[])[0]
    stop_like = free[-MAX_NEW + 2]
    table = backbone.token_embedding.embeddings
    table.assign(tf.tensor_scatter_nd_update(table, [[tokenizer.end_token_id]], [1.1 * table[stop_like]]))
    # Padded rows (ids 500..511, no text) scaled copies of the tokens greedy decoding picks: without
    # the restriction to the tokenizer's vocabulary they would be generated instead.
    picked = sorted(set(free[-MAX_NEW:]))[: PADDED_VOCABULARY - 500]
    padded = list(range(500, 500 + len(picked)))
    table.assign(tf.tensor_scatter_nd_update(table, [[i] for i in padded], tf.gather(table, picked) * 1.5))
    return lm


@pytest.fixture(scope="module")
def export_dir(causal_lm, tmp_path_factory):
    return keras_lm.export.serving(causal_lm, str(tmp_path_factory.mktemp("generation") / "serving" / "1"))


@pytest.fixture(scope="module")
def served(export_dir):
    """The export loaded once in this process (TF2 loader)."""
    return tf.saved_model.load(export_dir)


def _in_memory_new_tokens(lm, prompts, max_new_tokens):
    """New tokens (stop token included) of in-memory greedy generation, row by row."""
    end = lm.tokenizer.end_token_id
    rows = [lm.tokenizer(tf.constant(p if isinstance(p, bytes) else p.encode("utf-8"))).numpy().tolist()
            for p in prompts]
    prepared = lm._prepare(rows, max_new_tokens)
    generated = lm.generate(rows, max_new_tokens=max_new_tokens, stop_token_ids=[end])
    return [g[len(p):] for g, p in zip(generated, prepared)]


@pytest.mark.slow  # long: run with -m slow
def test_greedy_text_equals_in_memory_generate_with_both_loaders(causal_lm, export_dir, generate_in_fresh_process):
    hostile = ["", "x y z " * 100, b"\xff\xfe\xc3\x28 broken utf-8", "tab\tbell\x07 nul\x00"]
    prompts = PROMPTS + hostile
    expected = _in_memory_new_tokens(causal_lm, prompts, MAX_NEW)
    end = causal_lm.tokenizer.end_token_id
    assert any(row[-1] == end and len(row) < MAX_NEW for row in expected)  # some row stops early
    assert any(end not in row for row in expected)  # and some run to max_new_tokens
    texts = causal_lm.generate(PROMPTS, max_new_tokens=MAX_NEW)
    result = generate_in_fresh_process(export_dir, prompts, max_new_tokens=MAX_NEW)
    for loader in ("eager", "session"):
        outputs = result[loader]
        assert outputs["length"] == [len(row) for row in expected]
        assert [ids[:n] for ids, n in zip(outputs["token_ids"], outputs["length"])] == expected
        assert all(set(ids[n:]) <= {0} for ids, n in zip(outputs["token_ids"], outputs["length"]))
        for prompt, text, served in zip(PROMPTS, texts, outputs["text"]):
            assert text == prompt + served.decode("utf-8")  # the continuation only, stop token dropped
        assert all(t.decode("utf-8") is not None for t in outputs["text"])  # valid UTF-8 throughout


def test_sample_signature_is_seeded_and_its_limits_reduce_to_greedy(causal_lm, export_dir, served,
                                                                     generate_in_fresh_process):
    loaded = served
    sample = loaded.signatures["sample"]

    def run(temperature, top_k, top_p, seed, prompts=PROMPTS):
        return sample(prompts=tf.constant(prompts), max_new_tokens=tf.constant(MAX_NEW),
                      temperature=tf.constant(temperature), top_k=tf.constant(top_k), top_p=tf.constant(top_p),
                      seed=tf.constant(seed, tf.int64))["token_ids"].numpy().tolist()

    greedy = loaded.signatures["serving_default"](prompts=tf.constant(PROMPTS),
                                                  max_new_tokens=tf.constant(MAX_NEW))["token_ids"].numpy().tolist()
    assert run(0.0, 0, 1.0, 1) == greedy  # temperature 0 is greedy
    assert run(1.0, 1, 1.0, 1) == greedy  # top-1 is greedy
    assert run(1.0, 0, 1e-6, 1) == greedy  # the smallest nucleus is the top token
    hot = run(5.0, 0, 1.0, 7)
    assert hot != greedy and run(5.0, 0, 1.0, 8) != hot
    result = generate_in_fresh_process(export_dir, PROMPTS, "sample", max_new_tokens=MAX_NEW, temperature=5.0,
                                       top_k=0, top_p=1.0, seed=7)
    for loader in ("eager", "session"):  # the same seed gives the same text in any process
        assert result[loader]["token_ids"] == hot
    top_3 = np.array(run(5.0, 3, 1.0, 3, prompts=PROMPTS[:1]))
    assert top_3.shape == (1, MAX_NEW)


@pytest.mark.slow  # long: run with -m slow
def test_hostile_requests_get_answers_or_clear_errors(export_dir, served, generate_in_fresh_process):
    empty_batch = generate_in_fresh_process(export_dir, [], max_new_tokens=MAX_NEW)
    for loader in ("eager", "session"):
        assert empty_batch[loader]["text"] == [] and empty_batch[loader]["length"] == []
    loaded = served
    serve = loaded.signatures["serving_default"]
    none = serve(prompts=tf.constant(PROMPTS), max_new_tokens=tf.constant(0))
    assert none["text"].numpy().tolist() == [b""] * 3 and none["length"].numpy().tolist() == [0] * 3
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"max_new_tokens must be in \[0, {CONTEXT}\)"):
        serve(prompts=tf.constant(PROMPTS), max_new_tokens=tf.constant(CONTEXT))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_new_tokens must be >= 0"):
        serve(prompts=tf.constant(PROMPTS), max_new_tokens=tf.constant(-1))


def test_export_needs_a_tokenizer_that_fits_the_backbone(causal_lm, tmp_path):
    bare = keras_lm.tasks.CausalLM(causal_lm.backbone)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        keras_lm.export.serving(bare, str(tmp_path / "a"))
    small = keras_lm.applications.Gpt2("tiny", vocabulary_size=300, hidden_dim=32, num_heads=2,
                                       max_sequence_length=CONTEXT)
    with pytest.raises(ValueError, match="500 tokens but the backbone embeds only 300"):  # refused at construction
        keras_lm.tasks.CausalLM(small, causal_lm.tokenizer)
    mismatched = keras_lm.tasks.CausalLM(small)
    mismatched.preprocessor = causal_lm.tokenizer  # attached after construction: the export refuses it
    with pytest.raises(ValueError, match="500 tokens but the backbone embeds only 300"):
        keras_lm.export.serving(mismatched, str(tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- the `sample` signature against numpy ---------------------------------------------------------
DRAWS = 512


def _reference_probabilities(lm, prompt, temperature):
    """float64 softmax(logits / T) of the token after ``prompt`` over the tokenizer's 500 ids (whole sequence)."""
    ids = np.array([lm.tokenizer(tf.constant(prompt)).numpy()], "int32")
    hidden = lm.backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})["sequence_output"]
    logits = np.asarray(lm.backbone.logits(hidden))[0, -1, :500].astype("float64")
    scaled = np.exp((logits - logits.max()) / temperature)
    return scaled / scaled.sum()


def _top_k_set(probabilities, k):
    order = np.argsort(-probabilities)
    assert probabilities[order[k - 1]] > 1.001 * probabilities[order[k]]  # no near-tie at the cut
    return order[:k]


def _nucleus(probabilities, p, among=None):
    """The most likely tokens (of ``among``, renormalized) whose preceding cumulative probability is < p."""
    among = np.arange(len(probabilities)) if among is None else np.asarray(among)
    order = among[np.argsort(-probabilities[among])]
    ordered = probabilities[order] / probabilities[order].sum()
    before = np.cumsum(ordered) - ordered
    assert np.min(np.abs(before - p)) > 1e-3  # no token sits at the boundary
    return order[before < p]


def _assert_draws_fit(draws, allowed, probabilities):
    """Every draw lies in ``allowed``; the counts fit ``probabilities`` renormalized over it (chi-square)."""
    outside = sorted(set(draws.tolist()) - set(allowed.tolist()))
    assert not outside, f"drew {outside}, outside the allowed set {sorted(allowed.tolist())}"
    expected = np.zeros_like(probabilities)
    expected[allowed] = probabilities[allowed] / probabilities[allowed].sum() * len(draws)
    observed = np.bincount(draws, minlength=len(probabilities)).astype("float64")
    big = expected >= 5  # one bin per such token, the rest pooled
    small = (expected > 0) & ~big
    bins = [(observed[big], expected[big])]
    if expected[small].sum() > 0:
        bins.append(([observed[small].sum()], [expected[small].sum()]))
    observed_bins = np.concatenate([np.asarray(o, "float64") for o, _ in bins])
    expected_bins = np.concatenate([np.asarray(e, "float64") for _, e in bins])
    if expected_bins[-1] < 5 and len(expected_bins) > 1:  # a pooled bin too small: merge it
        observed_bins = np.append(observed_bins[:-2], observed_bins[-2:].sum())
        expected_bins = np.append(expected_bins[:-2], expected_bins[-2:].sum())
    assert len(expected_bins) >= 3
    statistic = float(np.sum((observed_bins - expected_bins) ** 2 / expected_bins))
    degrees = len(expected_bins) - 1
    h = 2.0 / (9.0 * degrees)  # Wilson-Hilferty: the chi-square quantile at 1 - 1e-5 (z = 4.265)
    critical = degrees * (1.0 - h + 4.265 * np.sqrt(h)) ** 3
    assert statistic < critical, (statistic, critical, observed_bins.tolist(), np.round(expected_bins, 1).tolist())


SAMPLE_CASES = {
    # name: (temperature, top_k, top_p, allowed(probabilities))
    "top_k": (0.5, 5, 1.0, lambda q: _top_k_set(q, 5)),
    "top_p": (0.5, 0, 0.5, lambda q: _nucleus(q, 0.5)),
    "temperature": (0.5, 0, 1.0, lambda q: np.arange(len(q))),
    "top_k_then_top_p": (0.5, 8, 0.6, lambda q: _nucleus(q, 0.6, among=_top_k_set(q, 8))),
}


@pytest.mark.parametrize("case", sorted(SAMPLE_CASES))
def test_sample_signature_draws_follow_numpy(causal_lm, served, case):
    temperature, top_k, top_p, allowed_of = SAMPLE_CASES[case]
    sample = served.signatures["sample"]
    outputs = sample(prompts=tf.constant([PROMPTS[0]] * DRAWS), max_new_tokens=tf.constant(1),
                     temperature=tf.constant(temperature), top_k=tf.constant(top_k), top_p=tf.constant(top_p),
                     seed=tf.constant(5, tf.int64))
    draws = outputs["token_ids"].numpy()[:, 0]
    probabilities = _reference_probabilities(causal_lm, PROMPTS[0], temperature)
    allowed = allowed_of(probabilities)
    assert probabilities[allowed].sum() < 0.7 or case == "temperature"  # the filter matters
    _assert_draws_fit(draws, allowed, probabilities)
    if case == "temperature":  # the draws do not fit temperature 1: the test sees the temperature
        with pytest.raises(AssertionError):
            _assert_draws_fit(draws, allowed, _reference_probabilities(causal_lm, PROMPTS[0], 1.0))


BAD_SCALARS = [
    ("temperature", float("nan"), "temperature must be a finite number >= 0"),
    ("temperature", float("inf"), "temperature must be a finite number >= 0"),
    ("temperature", -1.0, "temperature must be a finite number >= 0"),
    ("top_k", -5, "top_k must be >= 0"),
    ("top_p", 0.0, "top_p must be > 0 and <= 1"),
    ("top_p", 1.5, "top_p must be > 0 and <= 1"),
    ("top_p", float("nan"), "top_p must be > 0 and <= 1"),
]


def test_sample_signature_rejects_bad_scalars_and_keeps_serving(served):
    sample = served.signatures["sample"]
    good = {"temperature": tf.constant(1.0), "top_k": tf.constant(0), "top_p": tf.constant(1.0)}
    request = dict(prompts=tf.constant(PROMPTS), max_new_tokens=tf.constant(3), seed=tf.constant(1, tf.int64))
    for name, value, message in BAD_SCALARS:
        bad = dict(good, **{name: tf.constant(value, good[name].dtype)})
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            sample(**request, **bad)
    assert sample(**request, **good)["token_ids"].shape == (3, 3)  # the same process still serves


def test_padded_vocabulary_ids_are_never_generated(causal_lm, served):
    ids = np.array([causal_lm.tokenizer(tf.constant(PROMPTS[0])).numpy()], "int32")
    hidden = causal_lm.backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})["sequence_output"]
    assert np.argmax(np.asarray(causal_lm.backbone.logits(hidden))[0, -1]) >= 500  # a padded id would win
    in_memory = causal_lm.generate(ids.tolist(), max_new_tokens=MAX_NEW, stop_token_ids=[])[0]
    assert max(in_memory) < 500
    greedy = served.signatures["serving_default"](prompts=tf.constant(PROMPTS), max_new_tokens=tf.constant(MAX_NEW))
    hot = served.signatures["sample"](prompts=tf.constant(PROMPTS * 20), max_new_tokens=tf.constant(MAX_NEW),
                                      temperature=tf.constant(3.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
                                      seed=tf.constant(3, tf.int64))
    assert greedy["token_ids"].numpy().max() < 500 and hot["token_ids"].numpy().max() < 500
