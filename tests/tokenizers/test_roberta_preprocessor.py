"""RobertaPreprocessor against transformers' RobertaTokenizer (the tokenizers-backed fast tokenizer).

The reference tokenizer is built offline: a 1,000-token byte-level BPE trained with the `tokenizers`
library on Shakespeare (keras_lm.data), with RoBERTa's special tokens (<s>=0, <pad>=1, </s>=2,
<unk>=3, <mask> last), saved with save_pretrained into a temporary directory.
"""
import json

import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.tokenizers import BytePair
from keras_lm.tokenizers.roberta_preprocessor import RobertaPreprocessor

TEXTS = [
    "O Romeo, Romeo! wherefore art thou Romeo?",
    "Café naïve résumé — über Ångström",
    "I ❤️ 🤖 tokens 👍🏽 and 🇫🇷",
    "東京は日本の首都です。中文字符",
    "In 1599, 3.14159 and 1,000,000 ducats",
    "Wait—what?! (yes...) \"quoted\" 'single' #hash @at",
    "   three leading spaces",
    "trailing spaces   ",
    "",
    "multiple\nlines\tand\ttabs",
    "I'm sure we'll see; they'd've gone, can't you?",
    "Привет мир, Γειά σου κόσμε",
    "a <mask> in the text",
]


@pytest.fixture(scope="module")
def roberta_files(tmp_path_factory):
    """A RoBERTa tokenizer directory (tokenizer.json + tokenizer_config.json) and the HF tokenizer."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    corpus = keras_lm.data.load("shakespeare", split="train").take(2)
    texts = [example["text"].numpy().decode("utf-8")[:150_000] for example in corpus]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    bpe.train_from_iterator(texts, trainer)
    vocabulary = bpe.get_vocab()
    vocabulary["<mask>"] = len(vocabulary)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(bpe.to_str())["model"]["merges"]]
    reference = transformers.RobertaTokenizer(vocab=vocabulary, merges=merges, model_max_length=64)
    directory = tmp_path_factory.mktemp("roberta_tokenizer")
    reference.save_pretrained(directory)
    reloaded = transformers.AutoTokenizer.from_pretrained(directory)
    assert type(reloaded).__name__ == "RobertaTokenizer" and reloaded.is_fast
    assert (reloaded.pad_token_id, reloaded.cls_token_id, reloaded.sep_token_id, reloaded.mask_token_id) == (1, 0, 2, 1000)
    return directory, reloaded, vocabulary, merges


def hf_ids(reference, first, second=None, length=48):
    encoded = reference(first, second, padding="max_length", truncation=True, max_length=length)
    return np.array(encoded["input_ids"]), np.array(encoded["attention_mask"])


def test_single_texts_and_pairs_equal_the_fast_tokenizer(roberta_files):
    directory, reference, _, _ = roberta_files
    preprocessor = RobertaPreprocessor.from_hf(directory, sequence_length=48)
    assert (preprocessor.cls_id, preprocessor.pad_id, preprocessor.sep_id, preprocessor.mask_id) == (0, 1, 2, 1000)
    assert preprocessor.vocabulary_size() == 1001
    ids, mask = hf_ids(reference, TEXTS)
    assert (ids[:, 1:-1] > 3).sum() > 200  # real sub-words, not only bytes and specials
    outputs = preprocessor(tf.constant(TEXTS))
    np.testing.assert_array_equal(outputs["token_ids"].numpy(), ids)
    np.testing.assert_array_equal(outputs["padding_mask"].numpy(), mask.astype(bool))
    np.testing.assert_array_equal(outputs["segment_ids"].numpy(), np.zeros_like(ids))
    seconds = TEXTS[::-1]
    pair_ids, pair_mask = hf_ids(reference, TEXTS, seconds)
    assert ((pair_ids[:, :-1] == 2) & (pair_ids[:, 1:] == 2)).any(axis=1).all()  # <s> a </s></s> b </s>
    pairs = preprocessor((tf.constant(TEXTS), tf.constant(seconds)))
    np.testing.assert_array_equal(pairs["token_ids"].numpy(), pair_ids)
    np.testing.assert_array_equal(pairs["padding_mask"].numpy(), pair_mask.astype(bool))


def test_truncation_is_longest_first_like_hugging_face(roberta_files):
    directory, reference, _, _ = roberta_files
    long_text = "Now is the winter of our discontent made glorious summer by this sun of York; " * 3
    firsts = [long_text, "Short one.", long_text[:90], "", long_text]
    seconds = ["A brief reply.", long_text, long_text[:60], long_text, long_text[:100]]
    preprocessor = RobertaPreprocessor.from_hf(directory, sequence_length=20)
    single_ids, _ = hf_ids(reference, firsts, length=20)
    np.testing.assert_array_equal(preprocessor(tf.constant(firsts))["token_ids"].numpy(), single_ids)
    pair_ids, pair_mask = hf_ids(reference, firsts, seconds, length=20)
    pairs = preprocessor((tf.constant(firsts), tf.constant(seconds)))
    np.testing.assert_array_equal(pairs["token_ids"].numpy(), pair_ids)
    np.testing.assert_array_equal(pairs["padding_mask"].numpy(), pair_mask.astype(bool))


def test_vocab_and_merges_files_give_the_same_ids(roberta_files, tmp_path):
    """The slow-tokenizer files (vocab.json + merges.txt + tokenizer_config.json), read by both sides."""
    import transformers

    directory, _, vocabulary, merges = roberta_files
    (tmp_path / "vocab.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    preprocessor = RobertaPreprocessor.from_hf(tmp_path)
    assert preprocessor.sequence_length == 64  # model_max_length
    ids, _ = hf_ids(reference, TEXTS, TEXTS[::-1], length=64)
    np.testing.assert_array_equal(preprocessor((tf.constant(TEXTS), tf.constant(TEXTS[::-1])))["token_ids"].numpy(), ids)


@pytest.mark.slow  # long: run with -m slow
def test_tf_data_serving_graph_and_config_round_trip(roberta_files):
    directory, reference, _, _ = roberta_files
    preprocessor = RobertaPreprocessor.from_hf(directory, sequence_length=32)
    expected, _ = hf_ids(reference, TEXTS, TEXTS[::-1], length=32)
    dataset = tf.data.Dataset.from_tensor_slices((TEXTS, TEXTS[::-1])).map(lambda a, b: preprocessor((a, b)))
    rows = np.stack([row["token_ids"].numpy() for row in dataset])  # unbatched scalars inside tf.data
    np.testing.assert_array_equal(rows, expected)

    serve = tf.function(lambda texts: preprocessor(texts)["token_ids"],
                        input_signature=[tf.TensorSpec([None], tf.string)])
    np.testing.assert_array_equal(serve(tf.constant(TEXTS)).numpy(), hf_ids(reference, TEXTS, length=32)[0])

    restored = RobertaPreprocessor.from_config(preprocessor.get_config())
    assert (restored.sequence_length, restored.truncate, restored.pad_id) == (32, "longest_first", 1)
    np.testing.assert_array_equal(restored((tf.constant(TEXTS), tf.constant(TEXTS[::-1])))["token_ids"].numpy(), expected)


def test_masked_lm_masker_uses_the_special_ids(roberta_files):
    directory, _, _, _ = roberta_files
    preprocessor = RobertaPreprocessor.from_hf(directory, sequence_length=32)
    model = keras_lm.pretraining.MaskedLM(
        keras_lm.applications.Bert("tiny", vocabulary_size=1001, num_segments=1), max_predictions=5)
    masker = model.masker_for(preprocessor)
    assert (masker.mask_id, sorted(masker.unselectable_ids)) == (1000, [0, 1, 2])
    masked = masker(preprocessor(tf.constant(TEXTS[:4]))["token_ids"], seed=tf.constant([3, 4]))
    positions = masked["mask_positions"].numpy()[masked["mask_weights"].numpy() > 0]
    assert len(positions) > 0 and positions.min() > 0  # never <s>


def test_missing_special_tokens_are_named():
    tokenizer = BytePair({"<s>": 0, "</s>": 1, "a": 2}, [], end_token="</s>")
    with pytest.raises(ValueError, match="no pad_token='<pad>'"):
        RobertaPreprocessor(tokenizer, sequence_length=8)
    with pytest.raises(ValueError, match="at least 3"):
        RobertaPreprocessor(tokenizer, sequence_length=2, pad_token="a")
