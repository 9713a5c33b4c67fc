"""SentenceEncoder: embeddings equal transformers' BertModel + mean/CLS pooling + L2 norm, in memory and served."""

import keras
import numpy as np
import pytest

import keras_lm
from keras_lm.tasks import SentenceEncoder

SENTENCES = [
    "The king is dead.",
    "Long live the king, and may his reign be long and peaceful!",
    "A gripping film.",
    "Dull, lifeless and far too long; the plot is thin but the cast is charming.",
    "Rain.",
    "The queen said that the film was beautifully acted, though the ending dragged on and on.",
]
SEQUENCE_LENGTH = 48


def _vocabulary():
    """A BERT vocab.txt: specials, the sentences' words, then single characters and ## continuations."""
    words = sorted({w.strip(".,;!").lower() for s in SENTENCES for w in s.split()} - {""} - {"peaceful", "dragged"})
    characters = sorted(set("abcdefghijklmnopqrstuvwxyz"))
    tokens = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(".,;!") + characters
              + ["##" + c for c in characters] + ["##ful", "##ed"] + words)
    return list(dict.fromkeys(tokens))  # single-letter words are characters already


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, randomize_every_parameter):
    """A transformers BertModel with every parameter random, saved with its vocab.txt."""
    import transformers

    vocabulary = _vocabulary()
    directory = tmp_path_factory.mktemp("hf_bert")
    (directory / "vocab.txt").write_text("".join(token + "\n" for token in vocabulary), encoding="utf-8")
    config = transformers.BertConfig(vocab_size=len(vocabulary), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                     hidden_act="gelu")
    model = transformers.BertModel(config).eval()
    randomize_every_parameter(model, seed=0, is_norm_scale=lambda n: n.endswith("LayerNorm.weight"))
    model.save_pretrained(directory)
    tokenizer = transformers.BertTokenizer.from_pretrained(directory)
    return model, tokenizer, directory


@pytest.fixture(scope="module")
def keras_parts(checkpoint):
    _, _, directory = checkpoint
    bert = keras_lm.applications.Bert.from_hf(str(directory))
    tokenizer = keras_lm.tokenizers.WordPiece(str(directory / "vocab.txt"))
    return bert, keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=SEQUENCE_LENGTH)


def _reference(checkpoint, pooling, normalize, texts=SENTENCES, use_mask=True):
    """transformers last_hidden_state -> pooling over the attention mask -> F.normalize."""
    import torch

    model, tokenizer, _ = checkpoint
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**tokens).last_hidden_state
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = tokens["attention_mask"].unsqueeze(-1).float() if use_mask else torch.ones_like(hidden[..., :1])
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return pooled.numpy(), tokens


def test_same_token_ids_as_the_transformers_tokenizer(checkpoint, keras_parts):
    _, preprocessor = keras_parts
    _, tokens = _reference(checkpoint, "cls", False)
    lengths = tokens["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) == len(SENTENCES)  # every sentence has its own length
    packed = preprocessor(SENTENCES)
    width = tokens["input_ids"].shape[1]
    assert packed["token_ids"].numpy()[:, :width].tolist() == tokens["input_ids"].tolist()
    assert not packed["token_ids"].numpy()[:, width:].any()


def test_mean_pooled_normalized_embeddings_equal_transformers(checkpoint, keras_parts):
    bert, preprocessor = keras_parts
    encoder = SentenceEncoder(bert, preprocessor)
    expected, _ = _reference(checkpoint, "mean", True)
    embeddings = encoder.encode(SENTENCES, batch_size=4)  # two batches, trimmed to different widths
    assert embeddings.shape == (len(SENTENCES), 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)
    # The padding really is excluded: averaging over the padded width would give other vectors.
    unmasked, _ = _reference(checkpoint, "mean", True, use_mask=False)
    assert np.abs(unmasked - expected).max() > 1e-2


@pytest.mark.parametrize("pooling,normalize", [("cls", True), ("cls", False), ("mean", False)])
def test_cls_pooling_and_unnormalized_embeddings_equal_transformers(checkpoint, keras_parts, pooling, normalize):
    bert, preprocessor = keras_parts
    encoder = SentenceEncoder(bert, preprocessor, pooling=pooling, normalize=normalize)
    expected, _ = _reference(checkpoint, pooling, normalize)
    np.testing.assert_allclose(encoder.encode(SENTENCES, batch_size=3), expected, atol=1e-4)
    if not normalize:
        assert np.abs(np.linalg.norm(expected, axis=1) - 1.0).max() > 0.1  # normalization would be visible


def test_serving_export_answers_like_encode_in_a_fresh_process(keras_parts, tmp_path, load_in_fresh_process):
    bert, preprocessor = keras_parts
    encoder = SentenceEncoder(bert, preprocessor)
    directory = keras_lm.export.serving(encoder, str(tmp_path / "serving" / "1"))
    texts = SENTENCES + ["", "Café 東京 😀 unknown wörds", "long " * 200]
    expected = encoder.encode(texts)
    result = load_in_fresh_process(directory, texts)
    for loader in ("eager", "session"):
        assert sorted(result[loader]) == ["embedding"]
        np.testing.assert_allclose(np.array(result[loader]["embedding"]), expected, atol=1e-5)


@pytest.mark.slow  # long: run with -m slow
def test_from_saved_model_and_keras_files_give_the_same_embeddings(keras_parts, tmp_path):
    bert, preprocessor = keras_parts
    encoder = SentenceEncoder(bert, preprocessor, pooling="cls")
    expected = encoder.encode(SENTENCES)

    hub = keras_lm.export.encoder(bert, preprocessor, str(tmp_path / "hub"))
    reloaded = SentenceEncoder.from_saved_model(hub, pooling="cls")
    np.testing.assert_allclose(reloaded.encode(SENTENCES), expected, atol=1e-5)

    path = str(tmp_path / "sentence_encoder.keras")
    encoder.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, SentenceEncoder) and (restored.pooling, restored.normalize) == ("cls", True)
    np.testing.assert_allclose(restored.encode(SENTENCES), expected, atol=1e-6)

    backbone_path = str(tmp_path / "bert.keras")
    bert.save(backbone_path)
    from_file = SentenceEncoder.from_keras_file(backbone_path, preprocessor=preprocessor, pooling="cls")
    np.testing.assert_allclose(from_file.encode(SENTENCES), expected, atol=1e-6)


def test_wrong_inputs_get_one_clear_error(keras_parts):
    bert, preprocessor = keras_parts
    with pytest.raises(ValueError, match="Unknown pooling 'max'"):
        SentenceEncoder(bert, preprocessor, pooling="max")
    with pytest.raises(TypeError, match="encoder backbone"):
        SentenceEncoder(keras_lm.applications.Gpt2("tiny", vocabulary_size=100))
    with pytest.raises(ValueError, match="needs a preprocessor"):
        SentenceEncoder(bert).encode(SENTENCES)
    encoder = SentenceEncoder(bert, preprocessor)
    with pytest.raises(ValueError, match="not a single string"):
        encoder.encode("The king is dead.")
    assert encoder.encode([]).shape == (0, 32)
    with pytest.raises(ValueError, match="does not belong|tokens but the backbone"):
        SentenceEncoder(keras_lm.applications.Bert("tiny", vocabulary_size=10), preprocessor)


def test_docstring_examples_run():
    import doctest

    import keras_lm.tasks.sentence_encoder as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
