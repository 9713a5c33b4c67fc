"""Generation serving export of a causal LM: prompts in, generated text out, in a fresh process."""
import numpy as np
import pytest
import tensorflow as tf

import keras_lm

MAX_NEW = 10
CONTEXT = 48
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
    backbone = keras_lm.applications.Gpt2(
        "tiny", vocabulary_size=tokenizer.vocabulary_size(), hidden_dim=32, num_heads=2, max_sequence_length=CONTEXT
    )
    _spread_weights(backbone)
    lm = keras_lm.pretraining.CausalLM(backbone, tokenizer, start_token_id=tokenizer.end_token_id)
    # Make the end-of-text token the greedy choice wherever the third token row 0 generates would be:
    # rows then stop at different points.
    free = lm.generate([tokenizer(PROMPTS[0]).numpy().tolist()], max_new_tokens=MAX_NEW, stop_token_ids=[])[0]
    stop_like = free[-MAX_NEW + 2]
    table = backbone.token_embedding.embeddings
    table.assign(tf.tensor_scatter_nd_update(table, [[tokenizer.end_token_id]], [1.1 * table[stop_like]]))
    return lm


@pytest.fixture(scope="module")
def export_dir(causal_lm, tmp_path_factory):
    return keras_lm.export.serving(causal_lm, str(tmp_path_factory.mktemp("generation") / "serving" / "1"))


def _in_memory_new_tokens(lm, prompts, max_new_tokens):
    """New tokens (stop token included) of in-memory greedy generation, row by row."""
    end = lm.tokenizer.end_token_id
    rows = [lm.tokenizer(tf.constant(p if isinstance(p, bytes) else p.encode("utf-8"))).numpy().tolist()
            for p in prompts]
    prepared = lm._prepare(rows, max_new_tokens)
    generated = lm.generate(rows, max_new_tokens=max_new_tokens, stop_token_ids=[end])
    return [g[len(p):] for g, p in zip(generated, prepared)]


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


def test_sample_signature_is_seeded_and_its_limits_reduce_to_greedy(causal_lm, export_dir,
                                                                     generate_in_fresh_process):
    loaded = tf.saved_model.load(export_dir)
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


def test_hostile_requests_get_answers_or_clear_errors(export_dir, generate_in_fresh_process):
    empty_batch = generate_in_fresh_process(export_dir, [], max_new_tokens=MAX_NEW)
    for loader in ("eager", "session"):
        assert empty_batch[loader]["text"] == [] and empty_batch[loader]["length"] == []
    loaded = tf.saved_model.load(export_dir)
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
    with pytest.raises(ValueError, match="500 tokens but the backbone only 300"):
        keras_lm.export.serving(keras_lm.tasks.CausalLM(small, causal_lm.tokenizer), str(tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
