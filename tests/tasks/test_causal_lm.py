import doctest

import keras
import keras_hub
import numpy as np
import pytest

import keras_lm
import keras_lm.tasks.causal_lm as causal_lm_module
import keras_lm.tasks.prompt_completion as prompt_completion_module
from keras_lm.applications import Gpt2, Llama
from keras_lm.tasks import CausalLM


def tiny_gpt2(**overrides):
    return Gpt2("tiny", **{"vocabulary_size": 256, "hidden_dim": 32, "num_heads": 2, "max_sequence_length": 64,
                           **overrides})


def tiny_llama(**overrides):
    return Llama("tiny", **{"vocabulary_size": 256, "hidden_dim": 32, "num_heads": 4, "max_sequence_length": 64,
                            **overrides})


def spread_weights(model, seed=0):
    """Larger random weights, so greedy choices are far from ties."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
    return model


def uncached_greedy(backbone, prompt, steps):
    """Greedy decoding by recomputing the whole sequence at every step (no cache, no compilation)."""
    ids = list(prompt)
    for _ in range(steps):
        x = np.array([ids], "int32")
        hidden = backbone({"token_ids": x, "padding_mask": np.ones_like(x)})["sequence_output"]
        ids.append(int(np.argmax(np.asarray(backbone.logits(hidden))[0, -1])))
    return ids


@pytest.mark.parametrize("make_backbone", [tiny_gpt2, tiny_llama], ids=["gpt2", "llama"])
def test_cached_generation_equals_uncached_recomputation(make_backbone):
    backbone = spread_weights(make_backbone())
    lm = CausalLM(backbone)
    prompts = [[5, 17, 42], [99, 3, 150, 7, 8, 61, 2, 9, 10], [200]]
    generated = lm.generate(prompts, max_new_tokens=12, jit_compile=True)
    for prompt, tokens in zip(prompts, generated):
        assert tokens == uncached_greedy(backbone, prompt, 12)
    # The same without XLA, and one prompt at a time.
    assert lm.generate(prompts, max_new_tokens=12, jit_compile=False) == generated
    assert lm.generate(prompts[1], max_new_tokens=12) == generated[1]


def test_mixed_bfloat16_generation_matches_its_own_recomputation():
    backbone = spread_weights(tiny_llama(dtype="mixed_bfloat16"))
    generated = CausalLM(backbone).generate([[5, 17, 42]], max_new_tokens=6)
    assert generated[0] == uncached_greedy(backbone, [5, 17, 42], 6)


def test_left_and_right_padded_batches_give_the_same_answers():
    lm = CausalLM(spread_weights(tiny_gpt2()))
    prompts = [[5, 17, 42], [99, 3, 150, 7, 8]]
    expected = lm.generate(prompts, max_new_tokens=6)
    right = {"token_ids": np.array([[5, 17, 42, 0, 0], [99, 3, 150, 7, 8]]),
             "padding_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}
    left = {"token_ids": np.array([[0, 0, 5, 17, 42], [99, 3, 150, 7, 8]]),
            "padding_mask": np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])}
    for padded in (right, left):
        out = lm.generate(padded, max_new_tokens=6)
        assert out["token_ids"][0, :9].tolist() == expected[0] and out["padding_mask"][0].sum() == 9
        assert out["token_ids"][1].tolist() == expected[1] and out["padding_mask"][1].sum() == 11


def test_not_retraced_for_prompts_in_the_same_bucket():
    lm = CausalLM(spread_weights(tiny_gpt2()))
    # Buckets: batch 2, prompt <= 16, total <= 16 positions.
    calls = [
        ([[1, 2, 3], [4, 5, 6, 7, 8]], 5),
        ([[9, 9], [10, 11, 12, 13, 14, 15]], 7),
        ([[30], [31, 32]], 14),
        ([[20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31], [3]], 3),
    ]
    for prompts, new_tokens in calls:
        lm.generate(prompts, max_new_tokens=new_tokens, jit_compile=True)
    assert lm.generate_trace_count == 1
    lm.generate([[1] * 20, [2]], max_new_tokens=4, jit_compile=True)  # a longer prompt: one new trace
    assert lm.generate_trace_count == 2
    lm.generate([[3] * 18, [4, 5]], max_new_tokens=10, jit_compile=True)  # back in that bucket
    assert lm.generate_trace_count == 2


def test_stop_tokens_end_rows_independently():
    backbone = spread_weights(tiny_gpt2())
    lm = CausalLM(backbone)
    prompts = [[5, 17, 42], [99, 3, 150]]
    free = lm.generate(prompts, max_new_tokens=10)
    stop = free[0][5]  # the third generated token of row 0
    stopped = lm.generate(prompts, max_new_tokens=10, stop_token_ids=[stop])
    assert stopped[0] == free[0][: free[0].index(stop, 3) + 1]
    row1_stop = [i for i in range(3, 13) if free[1][i] == stop]
    assert stopped[1] == (free[1][: row1_stop[0] + 1] if row1_stop else free[1])


@pytest.mark.slow  # long: run with -m slow
def test_samplers():
    lm = CausalLM(spread_weights(tiny_gpt2()))
    prompts = [[5, 17, 42], [99, 3, 150, 7]]
    greedy = lm.generate(prompts, max_new_tokens=6)
    one_beam = keras_hub.samplers.BeamSampler(num_beams=1)
    assert lm.generate(prompts, max_new_tokens=6, sampler=one_beam, jit_compile=False) == greedy
    top_1 = keras_hub.samplers.TopKSampler(k=1)
    assert lm.generate(prompts, max_new_tokens=6, sampler=top_1, jit_compile=False) == greedy
    for name, jit_compile in (("beam", True), ("top_p", True), ("top_k", False), ("temperature", False)):
        sampled = lm.generate(prompts, max_new_tokens=6, sampler=name, jit_compile=jit_compile)
        assert [len(s) for s in sampled] == [9, 10]
        assert all(0 <= t < 256 for s in sampled for t in s)
        assert [s[:len(p)] for s, p in zip(sampled, prompts)] == prompts
    # A hot temperature departs from greedy.
    hot = keras_hub.samplers.RandomSampler(temperature=50.0, seed=3)
    assert lm.generate(prompts, max_new_tokens=6, sampler=hot, jit_compile=False) != greedy
    with pytest.raises(ValueError, match="Unknown sampler 'nucleus'"):
        lm.generate(prompts, sampler="nucleus")
    with pytest.raises(ValueError, match="contrastive"):
        lm.generate(prompts, sampler="contrastive")


def test_strings_with_a_byte_tokenizer():
    tokenizer = keras_hub.tokenizers.ByteTokenizer(lowercase=False)
    lm = CausalLM(spread_weights(tiny_llama()), tokenizer)
    text = lm.generate("To be", max_new_tokens=5)
    assert isinstance(text, str)
    ids = lm.generate(list(b"To be"), max_new_tokens=5)
    assert text == bytes(ids).decode("utf-8", errors="replace")
    batch = lm.generate(["To be", "or not to be, that"], max_new_tokens=4)
    assert batch[0] == lm.generate("To be", max_new_tokens=4)
    assert batch[1].startswith("or not to be, that")
    assert isinstance(lm.generate(b"\xff\xfe broken \xc3", max_new_tokens=3), str)  # invalid UTF-8


def test_hostile_prompts():
    lm = CausalLM(spread_weights(tiny_gpt2()))
    with pytest.raises(ValueError, match="Empty prompt"):
        lm.generate([[]], max_new_tokens=3)
    starting = CausalLM(lm.backbone, start_token_id=7)
    assert starting.generate([[]], max_new_tokens=3)[0][0] == 7
    long_prompt = list(range(1, 101))  # longer than the 64-token context
    out = lm.generate(long_prompt, max_new_tokens=4)
    assert out[:60] == long_prompt[-60:] and len(out) == 64
    with pytest.raises(ValueError, match="max_new_tokens=64 leaves no room"):
        lm.generate([[1]], max_new_tokens=64)
    with pytest.raises(ValueError, match="max_new_tokens"):
        lm.generate([[1]], max_new_tokens=0)
    with pytest.raises(ValueError, match="Token id 300 is outside"):
        lm.generate([[1, 300]], max_new_tokens=2)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        lm.generate("hello", max_new_tokens=2)
    with pytest.raises(TypeError, match="prompts"):
        lm.generate(3.5)


def test_fit_on_shakespeare_lowers_the_loss():
    text = next(iter(keras_lm.data.load("shakespeare", split="train")))["text"].numpy()[:20_000]
    ids = np.frombuffer(text, np.uint8).astype("int32")
    windows = ids[: (len(ids) // 65) * 65].reshape(-1, 65)
    features = {"token_ids": windows[:, :-1], "padding_mask": np.ones_like(windows[:, :-1])}
    lm = CausalLM(tiny_gpt2())
    lm.compile(optimizer=keras.optimizers.Adam(3e-3))
    assert lm(features["token_ids"][:2]).dtype == "float32"
    history = lm.fit(features, windows[:, 1:], batch_size=32, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[0] > 4.0 and losses[-1] < losses[0] - 1.0  # starts near ln(256) = 5.5


def test_sample_weight_masks_positions():
    lm = CausalLM(tiny_gpt2())
    lm.compile()
    ids = np.random.default_rng(0).integers(0, 256, (4, 9)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones_like(ids[:, :-1])}
    weights = np.zeros((4, 8), "float32")
    weights[:, :3] = 1.0
    masked = lm.evaluate(x, ids[:, 1:], sample_weight=weights, verbose=0, return_dict=True)["loss"]
    logits = np.asarray(lm(x))[:, :3]
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    expected = -np.take_along_axis(log_probs, ids[:, 1:4, None], -1).sum() / weights.size
    assert abs(masked - expected) < 1e-4


def test_keras_round_trip_with_tokenizer(tmp_path):
    tokenizer = keras_hub.tokenizers.ByteTokenizer()
    lm = CausalLM(spread_weights(tiny_llama()), tokenizer, start_token_id=1)
    path = str(tmp_path / "lm.keras")
    lm.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is CausalLM and restored.start_token_id == 1
    assert isinstance(restored.backbone, Llama)
    assert restored.generate("hello", max_new_tokens=5) == lm.generate("hello", max_new_tokens=5)
    from_file = CausalLM.from_keras_file(path, tokenizer)  # the backbone of a saved CausalLM
    assert from_file.generate("hello", max_new_tokens=5) == lm.generate("hello", max_new_tokens=5)


def test_rejects_a_non_decoder_backbone():
    with pytest.raises(TypeError, match="decoder backbone"):
        CausalLM(keras_lm.applications.Bert("tiny", vocabulary_size=50))


@pytest.mark.parametrize("module", [causal_lm_module, prompt_completion_module], ids=["causal_lm", "prompt_completion"])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_prompt_completion_batches_mask_the_prompt_and_truncate():
    import tensorflow as tf

    pairs = tf.data.Dataset.from_tensor_slices((["ab", "abcdef"], ["cd", "g"]))
    tokenizer = keras_hub.tokenizers.ByteTokenizer()
    masked = next(iter(keras_lm.tasks.prompt_completion_dataset(pairs, tokenizer, 5, end_token_id=0, shuffle=False)))
    features, labels, weights = (np.asarray(t) if not isinstance(t, dict) else t for t in masked)
    np.testing.assert_array_equal(features["token_ids"], [[97, 98, 99, 100, 0], [97, 98, 99, 100, 101]])
    np.testing.assert_array_equal(labels, [[98, 99, 100, 0, 0], [98, 99, 100, 101, 102]])
    np.testing.assert_array_equal(features["padding_mask"], [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    # Row 1: "b" is a prompt label (weight 0); "c", "d", end are completion labels; the last is padding.
    # Row 2 is cut to 6 tokens: every label is still prompt, so nothing is trained on.
    np.testing.assert_array_equal(weights, [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0]])
    unmasked = next(iter(keras_lm.tasks.prompt_completion_dataset(pairs, tokenizer, 5, mask_prompt=False,
                                                                  end_token_id=0, shuffle=False)))
    np.testing.assert_array_equal(unmasked[2], [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    with pytest.raises(ValueError, match="'prompt' and 'completion'"):
        keras_lm.tasks.prompt_completion_dataset(tf.data.Dataset.from_tensor_slices({"text": ["a"]}), tokenizer, 5)


@pytest.mark.slow  # long: run with -m slow
def test_instruction_fine_tuning_learns_the_completion_of_real_reviews():
    import tensorflow as tf

    reviews = keras_lm.data.load("movie_snippets", split="train").filter(
        lambda example: tf.strings.length(example["text"]) < 60).take(256)
    pairs = reviews.map(lambda example: (
        tf.strings.join(["Review: ", example["text"], "\nSentiment:"]),
        tf.where(example["label"] == 1, " positive", " negative"),
    ))
    lm = CausalLM(tiny_gpt2(max_sequence_length=96), keras_hub.tokenizers.ByteTokenizer())
    lm.compile(optimizer=keras.optimizers.Adam(3e-3))
    data = lm.fine_tuning_dataset(pairs, sequence_length=96, batch_size=32, end_token_id=0, seed=0).cache()
    _, _, weights = next(iter(data))
    assert 0 < float(tf.reduce_mean(weights)) < 0.2  # only the ~10 completion labels of ~60-byte rows
    history = lm.fit(data, epochs=15, verbose=0)
    losses = history.history["loss"]
    # Completion bytes are nearly determined once the first letter is chosen: the loss collapses.
    assert losses[-1] < 0.3 * losses[0], losses
    answer = lm.generate("Review: A gripping, beautifully acted film.\nSentiment:", max_new_tokens=9)
    assert answer.endswith((" positive", " negative")), answer


def test_a_tokenizer_larger_than_the_backbone_is_refused_at_construction():
    with pytest.raises(ValueError, match="The tokenizer has 256 tokens but the backbone embeds only 200"):
        CausalLM(tiny_gpt2(vocabulary_size=200), keras_hub.tokenizers.ByteTokenizer())


def test_a_padded_backbone_vocabulary_never_generates_ids_the_tokenizer_lacks():
    """Backbone rows 256..299 have no byte: generation keeps to the tokenizer's 256 ids."""
    backbone = spread_weights(tiny_gpt2(vocabulary_size=300))
    table = backbone.token_embedding.embeddings
    table.assign(np.concatenate([table.numpy()[:256], 3.0 * table.numpy()[:44]]))  # padded rows that would win
    prompt = [5, 17, 42]
    unrestricted = uncached_greedy(backbone, prompt, 6)
    assert max(unrestricted[3:]) >= 256
    lm = CausalLM(backbone, keras_hub.tokenizers.ByteTokenizer())
    restricted = list(prompt)
    for _ in range(6):  # greedy over the tokenizer's ids only, recomputing the whole sequence
        x = np.array([restricted], "int32")
        logits = np.asarray(backbone.logits(backbone({"token_ids": x, "padding_mask": np.ones_like(x)})["sequence_output"]))
        restricted.append(int(np.argmax(logits[0, -1, :256])))
    assert lm.generate(prompt, max_new_tokens=6, jit_compile=False) == restricted  # the sampling loop
    beam = lm.generate([prompt, [99, 3, 150]], max_new_tokens=6, sampler=keras_hub.samplers.BeamSampler(num_beams=3),
                       jit_compile=False)  # beam search has its own loop
    assert max(max(row) for row in beam) < 256


BAD_SAMPLERS = [
    (keras_hub.samplers.TopKSampler(k=-5), r"k must be an integer in \[1, 256\]"),
    (keras_hub.samplers.TopKSampler(k=0), r"k must be an integer in \[1, 256\]"),
    (keras_hub.samplers.TopKSampler(k=300), r"k must be an integer in \[1, 256\]"),
    (keras_hub.samplers.TopKSampler(k=2.5), r"k must be an integer"),
    (keras_hub.samplers.TopPSampler(p=0.0), r"p must be a number in \(0, 1\]"),
    (keras_hub.samplers.TopPSampler(p=1.5), r"p must be a number in \(0, 1\]"),
    (keras_hub.samplers.TopPSampler(p=float("nan")), r"p must be a number in \(0, 1\]"),
    (keras_hub.samplers.TopPSampler(p=0.5, k=-1), r"k must be an integer in \[1, 256\]"),
    (keras_hub.samplers.RandomSampler(temperature=float("nan")), "temperature must be a finite number > 0"),
    (keras_hub.samplers.RandomSampler(temperature=float("inf")), "temperature must be a finite number > 0"),
    (keras_hub.samplers.RandomSampler(temperature=0.0), "temperature must be a finite number > 0.*greedy"),
    (keras_hub.samplers.TopKSampler(k=5, temperature=-1.0), "temperature must be a finite number > 0"),
    (keras_hub.samplers.BeamSampler(num_beams=0), r"num_beams must be an integer in \[1, 256\]"),
]


@pytest.mark.parametrize("sampler, message", BAD_SAMPLERS, ids=[f"{type(s).__name__}-{i}" for i, (s, _) in
                                                               enumerate(BAD_SAMPLERS)])
def test_bad_sampler_parameters_get_one_clear_error_before_any_work(sampler, message):
    lm = CausalLM(tiny_gpt2())
    with pytest.raises(ValueError, match=message):
        lm.generate([[1, 2, 3]], max_new_tokens=2, sampler=sampler)
    assert lm.generate_trace_count == 0


def test_a_sampler_with_a_non_integer_seed_is_refused():
    sampler = keras_hub.samplers.RandomSampler(seed=3)
    sampler.seed = "three"
    with pytest.raises(ValueError, match="seed must be None or an integer"):
        CausalLM(tiny_gpt2()).generate([[1, 2]], max_new_tokens=2, sampler=sampler)
