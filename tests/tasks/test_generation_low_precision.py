"""Generation with bfloat16 or int8 weights (`CausalLM.generate(weight_dtype=...)`) against float32."""
import keras
import keras_hub
import numpy as np
import pytest

import keras_lm
from keras_lm.applications import Gpt2
from keras_lm.tasks import CausalLM
from keras_lm.tasks.quantized_decoding import decoding_backbone

# Stated bounds: max |logit - float32 logit| as a fraction of float32's largest |logit|, on Shakespeare
# bytes with the random models below (measured over 4 seeds: bfloat16 0.9-1.2%, int8 2.1-2.7%).
RELATIVE_LOGIT_BOUND = {"bfloat16": 0.025, "int8": 0.05}
LOW_PRECISION = ("bfloat16", "int8")


def _random_gpt2(seed=0, std=0.05, vocabulary_size=256):
    """A small GPT-2 with every weight random (biases and LayerNorm scales too)."""
    backbone = Gpt2(None, vocabulary_size=vocabulary_size, num_layers=2, hidden_dim=64, num_heads=4, intermediate_dim=256,
                    max_sequence_length=128)
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        center = 1.0 if weight.path.endswith("gamma") else 0.0
        weight.assign((center + std * rng.standard_normal(weight.shape)).astype("float32"))
    return backbone


@pytest.fixture(scope="module")
def shakespeare_bytes():
    """Real token ids: 4 rows of 96 UTF-8 bytes of Shakespeare (keras-hub's ByteTokenizer ids)."""
    text = next(iter(keras_lm.data.load("shakespeare", split="validation")))["text"].numpy()
    ids = np.asarray(keras_hub.tokenizers.ByteTokenizer()(text.decode("utf-8")[5000:5000 + 4 * 96])).astype("int32")
    return ids[: 4 * 96].reshape(4, 96)


def _prefill_logits(backbone, ids):
    logits, _, _ = backbone.call_with_cache(ids, backbone.init_cache(*ids.shape), 0)
    return np.asarray(logits)


@pytest.mark.parametrize("weight_dtype", LOW_PRECISION)
def test_logits_stay_within_the_stated_bound_of_float32_on_real_text(weight_dtype, shakespeare_bytes):
    backbone = _random_gpt2()
    reference = _prefill_logits(backbone, shakespeare_bytes)
    low = decoding_backbone(backbone, weight_dtype)
    logits = _prefill_logits(low, shakespeare_bytes)
    difference = np.abs(logits - reference).max()
    assert difference <= RELATIVE_LOGIT_BOUND[weight_dtype] * np.abs(reference).max()
    assert difference > 0  # really another precision, not the float32 weights again
    # The copy reads low-precision variables only (the tied output projection included).
    kinds = {str(w.dtype) for w in low.weights}
    assert kinds == ({"bfloat16"} if weight_dtype == "bfloat16" else {"int8", "float32"})
    if weight_dtype == "int8":
        assert str(low.token_embedding._embeddings.dtype) == "int8"
        dense = [layer for layer in low._flatten_layers() if isinstance(layer, keras.layers.Dense)]
        assert len(dense) == 4 * 2 and all(str(layer._kernel.dtype) == "int8" for layer in dense)
    # The backbone itself is untouched.
    assert {str(w.dtype) for w in backbone.weights} == {"float32"}
    np.testing.assert_array_equal(_prefill_logits(backbone, shakespeare_bytes), reference)


@pytest.mark.slow  # long: run with -m slow
@pytest.mark.parametrize("weight_dtype", LOW_PRECISION)
def test_greedy_tokens_equal_float32_wherever_float32_is_not_a_near_tie(weight_dtype, shakespeare_bytes):
    """32 greedy steps from real prompts. Where float32's top-2 logits are further apart than twice
    the largest logit difference, no rounding can change the choice: there the low-precision token
    must be float32's (teacher-forced), and free-running decoding must follow float32 up to the
    first step that is not decisive."""
    backbone = _random_gpt2()
    lm = CausalLM(backbone)
    prompts = shakespeare_bytes[:, :16]
    expected = np.asarray(lm.generate(prompts, max_new_tokens=32, weight_dtype="float32"))
    got = np.asarray(lm.generate(prompts, max_new_tokens=32, weight_dtype=weight_dtype))
    reference = _prefill_logits(backbone, expected)[:, 15:-1]  # the logits that chose each new token
    low = _prefill_logits(decoding_backbone(backbone, weight_dtype), expected)[:, 15:-1]
    difference = np.abs(low - reference).max()
    assert difference <= RELATIVE_LOGIT_BOUND[weight_dtype] * np.abs(reference).max()
    top_two = np.sort(reference, axis=-1)[..., -2:]
    decisive = top_two[..., 1] - top_two[..., 0] > 2 * difference
    assert decisive.mean() > 0.3  # the check covers a good part of the steps
    np.testing.assert_array_equal(np.argmax(reference, -1), expected[:, 16:])
    np.testing.assert_array_equal(np.argmax(low, -1)[decisive], expected[:, 16:][decisive])
    for row in range(len(prompts)):
        first_undecided = int(np.argmin(decisive[row])) if not decisive[row].all() else 32
        np.testing.assert_array_equal(got[row, 16:16 + first_undecided], expected[row, 16:16 + first_undecided])
    print(f"{weight_dtype}: max |logit difference| {difference:.4f}, decisive steps {decisive.mean():.2f}, "
          f"teacher-forced tokens as float32 {np.mean(np.argmax(low, -1) == expected[:, 16:]):.3f}, "
          f"free-running new tokens as float32 {np.mean(got[:, 16:] == expected[:, 16:]):.3f}")
    assert np.mean(np.argmax(low, -1) == expected[:, 16:]) >= 0.9


@pytest.mark.slow  # long: run with -m slow
@pytest.mark.parametrize("weight_dtype", LOW_PRECISION)
def test_left_padded_batch_gives_the_tokens_of_one_prompt_at_a_time(weight_dtype, shakespeare_bytes):
    lm = CausalLM(_random_gpt2(seed=1))
    rows = [shakespeare_bytes[0, :5].tolist(), shakespeare_bytes[1, :12].tolist(), shakespeare_bytes[2, :9].tolist()]
    width = max(map(len, rows))
    token_ids = np.array([[0] * (width - len(r)) + r for r in rows], "int32")
    padding_mask = np.array([[0] * (width - len(r)) + [1] * len(r) for r in rows], "int32")
    batched = lm.generate({"token_ids": token_ids, "padding_mask": padding_mask}, max_new_tokens=10,
                          weight_dtype=weight_dtype, jit_compile=True)
    for row, ids, mask in zip(rows, batched["token_ids"], batched["padding_mask"]):
        alone = lm.generate(row, max_new_tokens=10, weight_dtype=weight_dtype, jit_compile=True)
        assert ids[mask == 1].tolist() == alone


@pytest.mark.slow  # long: run with -m slow
def test_one_trace_per_bucket_and_weight_dtype_and_copies_follow_new_weights(shakespeare_bytes):
    backbone = _random_gpt2(seed=2)
    lm = CausalLM(backbone)
    prompts = shakespeare_bytes[:2, :10]
    first = lm.generate(prompts, max_new_tokens=8, weight_dtype="int8")
    assert lm.generate_trace_count == 1
    assert lm.generate(shakespeare_bytes[:2, :12], max_new_tokens=6, weight_dtype="int8") is not None
    assert lm.generate_trace_count == 1  # same buckets: no retrace
    lm.generate(prompts, max_new_tokens=8, weight_dtype="bfloat16")
    assert lm.generate_trace_count == 2  # another weight precision is another function
    # New float32 weights (e.g. after fit): the int8 copy is refreshed in place, without retracing.
    other = _random_gpt2(seed=3)
    backbone.set_weights(other.get_weights())
    refreshed = lm.generate(prompts, max_new_tokens=8, weight_dtype="int8")
    assert lm.generate_trace_count == 2
    assert refreshed == CausalLM(other).generate(prompts, max_new_tokens=8, weight_dtype="int8")
    assert refreshed != first


def test_unknown_weight_dtype_is_one_clear_error():
    lm = CausalLM(_random_gpt2())
    with pytest.raises(ValueError, match="weight_dtype must be one of 'float32', 'bfloat16', 'int8'.*'float16'"):
        lm.generate([1, 2, 3], max_new_tokens=2, weight_dtype="float16")


@pytest.mark.parametrize("weight_dtype", LOW_PRECISION)
def test_untied_output_projection_of_a_llama_style_decoder_is_low_precision_too(weight_dtype, shakespeare_bytes):
    backbone = keras_lm.models.Decoder(
        vocabulary_size=256, num_layers=2, num_heads=4, num_key_value_heads=2, hidden_dim=64, intermediate_dim=128,
        max_sequence_length=128, position_embedding="rotary", normalization="rms_norm", feed_forward="gated",
        activation="silu", use_bias=False, tie_word_embeddings=False)
    rng = np.random.default_rng(4)
    for weight in backbone.weights:
        center = 1.0 if "norm" in weight.path else 0.0
        weight.assign((center + 0.05 * rng.standard_normal(weight.shape)).astype("float32"))
    low = decoding_backbone(backbone, weight_dtype)
    assert str(low.lm_head.weights[0].dtype) == ("bfloat16" if weight_dtype == "bfloat16" else "int8")
    reference = _prefill_logits(backbone, shakespeare_bytes)
    difference = np.abs(_prefill_logits(low, shakespeare_bytes) - reference).max()
    assert 0 < difference <= RELATIVE_LOGIT_BOUND[weight_dtype] * np.abs(reference).max()


@pytest.mark.slow  # two exports, each loaded in a fresh process with both loaders: about 35 s each
@pytest.mark.parametrize("weight_dtype", LOW_PRECISION)
def test_generation_export_keeps_the_low_precision_weights_and_tokens_in_a_fresh_process(
        weight_dtype, tmp_path, generate_in_fresh_process):
    import tensorflow as tf

    works = keras_lm.data.load("shakespeare", split="train").take(1)
    tokenizer = keras_lm.tokenizers.BytePair.train(works, vocabulary_size=300)
    lm = CausalLM(_random_gpt2(seed=5, vocabulary_size=300), tokenizer)
    prompts = ["To be, or not to be", "O Romeo, Romeo"]
    rows = [tokenizer(p).numpy().tolist() for p in prompts]  # (builds the tokenizer, as exports need)
    directory = keras_lm.export.generation_serving(lm, str(tmp_path / "serving" / "1"), weight_dtype=weight_dtype)
    # The exported graph runs without XLA: compare with in-memory decoding without XLA.
    expected = [lm.generate(rows, max_new_tokens=12, weight_dtype=weight_dtype, jit_compile=False,
                            stop_token_ids=[tokenizer.end_token_id])[i][len(row):] for i, row in enumerate(rows)]
    result = generate_in_fresh_process(directory, prompts, max_new_tokens=12)
    for loader in ("eager", "session"):
        lengths = result[loader]["length"]
        assert [ids[:n] for ids, n in zip(result[loader]["token_ids"], lengths)] == expected
    saved = {v.dtype for v in tf.saved_model.load(directory).variables}
    assert saved == ({tf.bfloat16} if weight_dtype == "bfloat16" else {tf.int8, tf.float32})
