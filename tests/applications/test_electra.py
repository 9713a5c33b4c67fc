"""Electra / ElectraGenerator: sizes, shared embeddings, and from_hf against transformers' torch ELECTRA.

Reference models are built from tiny configs whose embedding_size differs from hidden_size (so the
embedding projection is exercised), with every parameter random (biases and LayerNorm scales too),
saved with save_pretrained next to an ElectraTokenizerFast on a WordPiece vocabulary trained on real
text. The generator checkpoint holds the discriminator's embeddings, as Google's pairs do.
"""
import doctest
import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.applications import CheckpointError
from keras_lm.applications.electra import Electra, ElectraGenerator
from keras_lm.pretraining.replaced_token_detection import ReplacedTokenDetection
from reference import randomize_every_parameter

LENGTH = 20
MASK_POSITIONS = np.array([[1, 5, 9, 18], [0, 3, 7, 12], [2, 4, 5, 6]], "int32")
SHARED = dict(embedding_size=24, max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12,
              hidden_act="gelu")
DISCRIMINATOR = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, **SHARED)
GENERATOR = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **SHARED)
STRINGS = [
    "", " ", "Hello world", "hello  world", "To be, or not to be: that is the question.",
    "The KING and the King", "ALL CAPS SENTENCE!", "Café naïve Ångström Zoë", "RÉSUMÉ déjà vu",
    "e\u0301 combining acute", "漢字かな交じり文", "中文，标点！", "Москва — столица", "emoji 😀👍🏽 ok",
    "!!!???", "...", "$5.00", "a--b", "(x) [y] {z} <a/>", "¿Qué? ¡Sí!", "no-break\u00a0space",
    "zero\u200bwidth\u200bspace", "nul\x00byte", "tab\tbell\x07", "x" * 150, "a" * 101,
    "pneumonoultramicroscopicsilicovolcanoconiosis", "I'm sure you're right, we've seen they'll say it.",
    "[CLS] special [SEP] tokens [MASK] in text [PAD] [UNK]", "first line\nsecond line", "3.14159 -42 1e-7",
    "https://example.com/a?b=c&d=e", "Don't! I'll go. It's 100% true.",
]


def is_norm_scale(name):
    return name.endswith("LayerNorm.weight")


def random_electra(model_class, seed, **config):
    import transformers

    model = model_class(transformers.ElectraConfig(**config))
    randomize_every_parameter(model.eval(), seed=seed, is_norm_scale=is_norm_scale)
    return model


def padded_inputs(vocabulary_size, seed=0):
    """Three rows of ids: one full, two right-padded; two segments in each."""
    rng = np.random.default_rng(seed)
    mask = np.ones((3, LENGTH), "int32")
    mask[1, 14:] = 0
    mask[2, 7:] = 0
    segments = (np.arange(LENGTH) >= 9).astype("int32")[None].repeat(3, 0)
    return {"token_ids": rng.integers(0, vocabulary_size, (3, LENGTH)).astype("int32"),
            "segment_ids": segments * mask, "padding_mask": mask}


def torch_outputs(model, data):
    """Last hidden states of the encoder and the head's logits (RTD [B, T] or MLM at MASK_POSITIONS)."""
    import torch

    inputs = {"input_ids": torch.tensor(data["token_ids"], dtype=torch.long),
              "token_type_ids": torch.tensor(data["segment_ids"], dtype=torch.long),
              "attention_mask": torch.tensor(data["padding_mask"])}
    base = getattr(model, "electra", model)
    with torch.no_grad():
        hidden = base(**inputs).last_hidden_state.numpy()
        logits = model(**inputs).logits.numpy() if base is not model else None
    if logits is not None and logits.ndim == 3:
        logits = np.take_along_axis(logits, MASK_POSITIONS[:, :, None], 1)
    return {"sequence_output": hidden, "logits": logits}


def assert_close(actual, expected, key):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (key, actual.shape, expected.shape)
    difference = np.abs(actual - expected).max()
    assert difference <= 1e-4, (key, difference)
    assert np.abs(expected).max() > 0.5, key  # not a degenerate comparison


@pytest.fixture(scope="module")
def vocabulary():
    """A real WordPiece vocabulary (under 1,000 tokens) trained on 600 movie_snippets sentences."""
    texts = keras_lm.data.load("movie_snippets", split="train").map(lambda ex: ex["text"]).take(600)
    return keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=1000).get_vocabulary()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, vocabulary):
    """An ElectraForPreTraining and an ElectraForMaskedLM sharing embeddings, saved with an
    ElectraTokenizerFast, and their reference outputs on padded inputs."""
    import torch
    import transformers

    size = len(vocabulary)
    discriminator = random_electra(transformers.ElectraForPreTraining, seed=0, vocab_size=size, **DISCRIMINATOR)
    generator = random_electra(transformers.ElectraForMaskedLM, seed=1, vocab_size=size, **GENERATOR)
    with torch.no_grad():
        for name, parameter in discriminator.electra.embeddings.named_parameters():
            generator.electra.embeddings.get_parameter(name).copy_(parameter)
    vocab_file = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    tokenizer = transformers.ElectraTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    directories = {}
    for name, model in (("discriminator", discriminator), ("generator", generator)):
        directory = tmp_path_factory.mktemp(name)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(str(directory))
        directories[name] = directory
    data = padded_inputs(size)
    return {"directories": directories, "data": data, "models": {"discriminator": discriminator, "generator": generator},
            "reference": {"discriminator": torch_outputs(discriminator, data),
                          "generator": torch_outputs(generator, data)}}


# --- sizes and shared embeddings ---


def test_sizes_follow_the_paper():
    assert dict(Electra.sizes["small"]) == {"num_layers": 12, "hidden_dim": 256, "num_heads": 4,
                                            "intermediate_dim": 1024, "embedding_dim": 128}
    assert dict(Electra.sizes["base"])["embedding_dim"] == 768
    assert dict(Electra.sizes["large"])["num_layers"] == 24
    generators = {name: (table["hidden_dim"], table["num_heads"], table["intermediate_dim"], table["embedding_dim"])
                  for name, table in ElectraGenerator.sizes.items()}
    assert generators == {"tiny": (32, 1, 128, 64), "small": (64, 1, 256, 128), "base": (256, 4, 1024, 768),
                          "large": (256, 4, 1024, 1024)}


def test_generator_shares_the_discriminator_embedding_variables():
    discriminator = Electra("tiny", vocabulary_size=300, max_sequence_length=32)
    generator = discriminator.generator()
    for name in ("token_embedding", "position_embedding", "segment_embedding"):
        assert getattr(generator, name) is getattr(discriminator, name)
        assert getattr(generator, name).embeddings is getattr(discriminator, name).embeddings
    assert generator.get_layer("embeddings_layer_norm") is discriminator.get_layer("embeddings_layer_norm")
    assert generator.get_layer("embedding_projection").kernel.shape == (64, 32)
    same_width = Electra("tiny", vocabulary_size=50, embedding_dim=128, max_sequence_length=8)
    assert "embedding_projection" not in [layer.name for layer in same_width.layers]
    with pytest.raises(ValueError, match=r"cannot have vocabulary_size=999 \(the discriminator's is 300\)"):
        ElectraGenerator("tiny", vocabulary_size=999, discriminator=discriminator)


def test_keras_file_round_trip(tmp_path):
    discriminator = Electra("tiny", vocabulary_size=300, max_sequence_length=32, name="disc")
    data = padded_inputs(300)
    path = str(tmp_path / "electra.keras")
    discriminator.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Electra and restored.get_config() == discriminator.get_config()
    np.testing.assert_array_equal(restored(data)["sequence_output"], discriminator(data)["sequence_output"])


# --- from_hf parity ---


def test_reference_checkpoints_are_random_everywhere(checkpoints):
    for model in checkpoints["models"].values():
        for name, parameter in model.named_parameters():
            values = parameter.detach().numpy()
            assert np.abs(values - (1.0 if is_norm_scale(name) else 0.0)).max() > 0.05, name


def test_discriminator_matches_electra_for_pretraining(checkpoints):
    discriminator = Electra.from_hf(checkpoints["directories"]["discriminator"])
    reference = checkpoints["reference"]["discriminator"]
    assert (discriminator.hidden_dim, discriminator.embedding_dim) == (64, 24)
    assert discriminator.untrained_layers == ("pooler",)
    assert_close(discriminator(checkpoints["data"])["sequence_output"], reference["sequence_output"], "sequence")


def test_pretraining_heads_match_rtd_and_masked_lm_logits(checkpoints):
    directories, data = checkpoints["directories"], checkpoints["data"]
    model = ReplacedTokenDetection.from_hf(directories["discriminator"], directories["generator"], max_predictions=4)
    assert model.generator.token_embedding.embeddings is model.discriminator.token_embedding.embeddings
    outputs = model({**data, "mask_positions": MASK_POSITIONS})
    assert_close(outputs["rtd"], checkpoints["reference"]["discriminator"]["logits"], "rtd logits")
    assert_close(outputs["mlm"], checkpoints["reference"]["generator"]["logits"], "mlm logits")
    generated = model.generator(data)["sequence_output"]
    assert_close(generated, checkpoints["reference"]["generator"]["sequence_output"], "generator sequence")


def test_generator_alone_and_electra_model_layout(checkpoints, tmp_path):
    """ElectraGenerator.from_hf without a discriminator; an ElectraModel (no prefix) from a state dict."""
    import transformers

    generator = ElectraGenerator.from_hf(checkpoints["directories"]["generator"])
    assert generator.hidden_dim == 32 and generator.size is None
    assert_close(generator(checkpoints["data"])["sequence_output"],
                 checkpoints["reference"]["generator"]["sequence_output"], "generator sequence")
    plain = random_electra(transformers.ElectraModel, seed=3, vocab_size=500, **DISCRIMINATOR)
    data = padded_inputs(500, seed=3)
    reference = torch_outputs(plain, data)
    imported = Electra.from_hf({k: v for k, v in plain.state_dict().items()}, config=plain.config)
    assert_close(imported(data)["sequence_output"], reference["sequence_output"], "ElectraModel")
    plain.save_pretrained(tmp_path)
    assert_close(Electra.from_hf(tmp_path)(data)["sequence_output"], reference["sequence_output"], "from folder")


def test_sequence_classification_checkpoint_imports_its_backbone():
    import transformers

    model = random_electra(transformers.ElectraForSequenceClassification, seed=4, vocab_size=400, num_labels=3,
                           **DISCRIMINATOR)
    data = padded_inputs(400, seed=4)
    electra = Electra.from_hf(model)
    assert_close(electra(data)["sequence_output"], torch_outputs(model, data)["sequence_output"], "classifier body")


def test_word_piece_from_hf_equals_electra_tokenizer_fast(checkpoints, vocabulary):
    import transformers

    directory = checkpoints["directories"]["discriminator"]
    hf = transformers.AutoTokenizer.from_pretrained(str(directory))
    assert hf.is_fast and isinstance(hf, transformers.ElectraTokenizerFast)
    lines = [ex["text"].numpy().decode() for ex in keras_lm.data.load("movie_snippets", split="test").take(40)]
    texts = STRINGS + lines
    expected = [hf(text, add_special_tokens=False)["input_ids"] for text in texts]
    tokenizer = keras_lm.tokenizers.WordPiece.from_hf(directory)
    assert tokenizer(tf.constant(texts)).to_list() == expected
    assert sum(len(ids) for ids in expected) > 500 and any(hf.unk_token_id in ids for ids in expected)


# --- errors ---


def test_missing_tensor_is_named(checkpoints, tmp_path):
    from safetensors.numpy import load_file, save_file

    source = checkpoints["directories"]["discriminator"]
    state = load_file(str(source / "model.safetensors"))
    del state["electra.encoder.layer.1.output.dense.bias"]
    (tmp_path / "config.json").write_text((source / "config.json").read_text())
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"has no 'electra\.encoder\.layer\.1\.output\.dense\.bias'"):
        Electra.from_hf(tmp_path)


def test_shape_mismatch_is_named(checkpoints, tmp_path):
    from safetensors.numpy import load_file, save_file

    source = checkpoints["directories"]["discriminator"]
    state = load_file(str(source / "model.safetensors"))
    state["electra.embeddings_project.weight"] = state["electra.embeddings_project.weight"][:, :20]
    (tmp_path / "config.json").write_text((source / "config.json").read_text())
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"'electra\.embeddings_project\.weight' .* has shape \(64, 20\), but "
                                              r"a 2-layer ELECTRA .* needs \(64, 24\)"):
        Electra.from_hf(tmp_path)


def test_unknown_layouts_and_configs_are_one_clear_error(checkpoints):
    import transformers

    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(CheckpointError, match=r"not an ELECTRA checkpoint layout: expected one "
                                              r"'embeddings\.word_embeddings\.weight'.*'transformer\.wte\.weight'"):
        Electra.from_hf(gpt2.state_dict(), config={"model_type": "electra", "vocab_size": 50, **DISCRIMINATOR})
    with pytest.raises(CheckpointError, match=r"model_type='bert'.*Bert\.from_hf"):
        Electra.from_hf({}, config={"model_type": "bert", "vocab_size": 50, **DISCRIMINATOR})
    directories = checkpoints["directories"]
    with pytest.raises(CheckpointError, match=r"no replaced-token-detection head.*"
                                              r"'electra\.discriminator_predictions\.dense\.weight'"
                                              r"|'discriminator_predictions\.dense\.weight' is missing"):
        ReplacedTokenDetection.from_hf(directories["generator"], directories["generator"])
    with pytest.raises(CheckpointError, match=r"'generator_predictions\.dense\.weight' is missing"):
        ReplacedTokenDetection.from_hf(directories["discriminator"], directories["discriminator"])


def test_extra_encoder_tensor_is_refused(checkpoints):
    model = checkpoints["models"]["discriminator"]
    state = {name: value for name, value in model.state_dict().items()}
    state["electra.encoder.layer.2.output.dense.bias"] = state["electra.encoder.layer.1.output.dense.bias"]
    with pytest.raises(CheckpointError, match=r"has no place for: 'electra\.encoder\.layer\.2\.output\.dense\.bias'"):
        Electra.from_hf(state, config=model.config)


def test_generator_with_other_embeddings_cannot_share_them(checkpoints):
    import transformers

    vocabulary_size = checkpoints["models"]["discriminator"].config.vocab_size
    other = random_electra(transformers.ElectraForMaskedLM, seed=9, vocab_size=vocabulary_size, **GENERATOR)
    discriminator = Electra.from_hf(checkpoints["directories"]["discriminator"])
    with pytest.raises(CheckpointError, match=r"'electra\.embeddings\.word_embeddings\.weight' in the "
                                              r"ElectraForMaskedLM model differs from the discriminator's"):
        ElectraGenerator.from_hf(other, discriminator=discriminator)


def test_docstring_examples():
    result = doctest.testmod(importlib.import_module("keras_lm.applications.electra"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
