"""seq2seq_lm_from_hf: a T5 checkpoint directory (weights + SentencePiece tokenizer) as a Seq2SeqLM whose greedy
answers on strings equal transformers' generate + batch_decode(skip_special_tokens=True).

Each checkpoint is a random-weight transformers T5 (v1.0 and v1.1; every parameter random) saved with
save_pretrained, with a T5 tokenizer built from a SentencePiece model trained here on Shakespeare.
"""
import doctest
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
import keras_lm.tasks.seq2seq_hf as seq2seq_hf_module
from keras_lm.tasks.seq2seq_hf import PlainTextSentencePiece, seq2seq_lm_from_hf
from keras_lm.tasks.seq2seq_lm import Seq2SeqLM
from keras_lm.tokenizers.sentence_piece import SentencePiece

VOCABULARY_SIZE, NUM_SENTINELS = 400, 20
# A padded batch of different lengths (6 to 41 tokens with </s>).
TEXTS = ["Now is the winter of our discontent made glorious summer by this sun of York;",
         "To be, or not to be",
         "O Romeo, Romeo! wherefore art thou Romeo? Deny thy father and refuse thy name.",
         "A horse!"]


@pytest.fixture(scope="module")
def spiece_model():
    """A SentencePiece model trained on a Shakespeare work (the serialized bytes, without sentinels)."""
    work = next(iter(keras_lm.data.load("shakespeare", split="train")))
    text = work["text"].numpy().decode("utf-8")[:300_000]
    return SentencePiece.train([text], VOCABULARY_SIZE, num_sentinels=NUM_SENTINELS, seed=0).base_proto


def save_t5_checkpoint(directory, spiece_model, variant, randomize_every_parameter):
    """A random-weight transformers T5 of ``variant`` and its T5 tokenizer, saved to ``directory``."""
    import transformers

    (directory / "spiece.model").write_bytes(spiece_model)
    tokenizer = transformers.T5Tokenizer.from_pretrained(str(directory), extra_ids=NUM_SENTINELS)
    tokenizer.save_pretrained(str(directory))
    gated = variant == "v1.1"
    config = transformers.T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=20,
        feed_forward_proj="gated-gelu" if gated else "relu", tie_word_embeddings=not gated,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, attn_implementation="eager",
    )
    config.tie_word_embeddings = not gated  # transformers 5 forces True; v1.1 keeps its own lm_head
    model = transformers.T5ForConditionalGeneration(config).eval()
    model.set_input_embeddings(model.shared)  # one input embedding for both stacks, in every variant
    randomize_every_parameter(model, seed=1 if gated else 0, is_norm_scale=lambda name: name.endswith("layer_norm.weight"))
    model.save_pretrained(str(directory))
    return model, transformers.AutoTokenizer.from_pretrained(str(directory))


@pytest.mark.parametrize("variant", ["v1.0", "v1.1"])
def test_greedy_strings_equal_transformers(tmp_path, spiece_model, variant, randomize_every_parameter):
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    reference, hf_tokenizer = save_t5_checkpoint(tmp_path, spiece_model, variant, randomize_every_parameter)
    model = seq2seq_lm_from_hf(tmp_path, source_length=64, target_length=16)
    assert isinstance(model, Seq2SeqLM) and model.backbone.variant == variant
    assert (model.decoder_start_token_id, model.end_token_id, model.source_end_token) == (0, 1, True)
    assert model.tokenizer.vocabulary_size() == len(hf_tokenizer) == VOCABULARY_SIZE

    inputs = hf_tokenizer(TEXTS, return_tensors="pt", padding=True)
    lengths = inputs["attention_mask"].sum(axis=1).tolist()
    assert len(set(lengths)) == len(TEXTS) and min(lengths) <= 8 < 30 <= max(lengths)  # padded, different lengths
    with torch.no_grad():
        # An explicit cache: transformers sizes its default one by num_layers, not num_decoder_layers.
        generated = reference.generate(**inputs, max_new_tokens=16, do_sample=False, num_beams=1,
                                       cache=EncoderDecoderCache(DynamicCache(), DynamicCache()))
    expected = hf_tokenizer.batch_decode(generated, skip_special_tokens=True)
    ours = model.generate(TEXTS, max_new_tokens=16, sampler="greedy", jit_compile=False)
    assert ours == expected
    assert len(set(expected)) == len(TEXTS) and all(expected)  # the sources matter; something was written
    # Compiled with XLA (the default for a batch): the same strings; one source alone: its own answer.
    assert model.generate(TEXTS, max_new_tokens=16, sampler="greedy", jit_compile=True) == expected
    assert model.generate(TEXTS[1], max_new_tokens=16, jit_compile=False) == expected[1]
    # The ids too (transformers pads finished rows with 0 after </s>; ours stop there).
    ids = model.generate([[int(t) for t, m in zip(row, mask) if m] for row, mask in
                          zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist())],
                         max_new_tokens=16, jit_compile=False)
    for row, reference_row in zip(ids, generated[:, 1:].tolist()):
        assert row == reference_row[:len(row)] and all(t == 0 for t in reference_row[len(row):])


def test_detokenize_drops_special_tokens_as_transformers(tmp_path, spiece_model):
    import transformers

    (tmp_path / "spiece.model").write_bytes(spiece_model)
    transformers.T5Tokenizer.from_pretrained(str(tmp_path), extra_ids=NUM_SENTINELS).save_pretrained(str(tmp_path))
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    ours = PlainTextSentencePiece.from_hf(tmp_path)
    rows = np.random.default_rng(0).integers(0, VOCABULARY_SIZE, (200, 12)).tolist()
    rows += [[0, 1, 2], [ours.sentinel_id(0), 5, ours.sentinel_id(19), 6, 2, 1]]
    expected = reference.batch_decode(rows, skip_special_tokens=True)
    assert [t.decode("utf-8") for t in ours.detokenize(tf.ragged.constant(rows)).numpy()] == expected
    dense = ours.detokenize(tf.constant(rows[:200])).numpy()  # [batch, length]
    assert [t.decode("utf-8") for t in dense] == expected[:200]
    assert ours.detokenize(tf.constant(rows[-1])).numpy().decode("utf-8") == expected[-1]  # one sequence
    plain = SentencePiece.from_hf(tmp_path).detokenize(tf.ragged.constant(rows[-1:])).numpy()[0].decode("utf-8")
    assert "<extra_id_0>" in plain and "<extra_id_0>" not in expected[-1]
    assert ours(TEXTS).to_list() == reference(TEXTS, add_special_tokens=False)["input_ids"]
    restored = keras.layers.deserialize(keras.layers.serialize(ours))
    assert type(restored) is PlainTextSentencePiece
    assert restored.detokenize(tf.ragged.constant(rows)).numpy().tolist() == ours.detokenize(
        tf.ragged.constant(rows)).numpy().tolist()


def test_keras_file_round_trip(tmp_path, spiece_model, randomize_every_parameter):
    (tmp_path / "hf").mkdir()
    save_t5_checkpoint(tmp_path / "hf", spiece_model, "v1.1", randomize_every_parameter)
    model = Seq2SeqLM.from_hf(str(tmp_path / "hf"), source_length=32, target_length=8)  # the same loader
    path = str(tmp_path / "t5.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.tokenizer) is PlainTextSentencePiece and restored.source_end_token
    assert restored.generate(TEXTS, jit_compile=False) == model.generate(TEXTS, jit_compile=False)


def test_clear_errors(tmp_path, spiece_model, randomize_every_parameter):
    complete = tmp_path / "complete"
    complete.mkdir()
    save_t5_checkpoint(complete, spiece_model, "v1.0", randomize_every_parameter)

    no_spiece = tmp_path / "no_spiece"
    shutil.copytree(complete, no_spiece)
    (no_spiece / "spiece.model").unlink()
    with pytest.raises(FileNotFoundError, match=r"no spiece\.model in .*no_spiece.*SentencePiece model"):
        seq2seq_lm_from_hf(no_spiece)

    no_weights = tmp_path / "no_weights"
    shutil.copytree(complete, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no weights in .*no_weights.*model\.safetensors"):
        seq2seq_lm_from_hf(no_weights)

    with pytest.raises(FileNotFoundError, match=r"is not a directory"):
        seq2seq_lm_from_hf(tmp_path / "missing")

    not_t5 = tmp_path / "not_t5"
    shutil.copytree(complete, not_t5)
    (not_t5 / "config.json").write_text((not_t5 / "config.json").read_text().replace('"t5"', '"bart"'))
    with pytest.raises(ValueError, match=r"model_type='bart'"):
        seq2seq_lm_from_hf(not_t5)


def test_docstring_examples():
    result = doctest.testmod(seq2seq_hf_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
