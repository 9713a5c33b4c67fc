"""WordPiece.from_hf / BertPreprocessor.from_hf: exactly the ids of Hugging Face's fast BERT tokenizer.

The vocabularies are trained here (the `tokenizers` library's BERT WordPiece trainer on Shakespeare plus
text in the scripts the test strings use) and saved with transformers' `BertTokenizer.save_pretrained`
(tokenizer.json + tokenizer_config.json); keras_lm reads that directory.
"""
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from hf_strings import MULTILINGUAL, corpus_text, varied_strings
from keras_lm.tokenizers import BertPreprocessor, WordPiece
from keras_lm.tokenizers.bert_normalization import bert_normalize, split_bert_words


@pytest.fixture(scope="module")
def hf_directories(tmp_path_factory):
    """{"uncased": dir, "cased": dir}: a BERT tokenizer saved by transformers, vocabulary trained on real text."""
    import transformers
    from tokenizers import BertWordPieceTokenizer

    text = corpus_text()
    directories = {}
    for case, lowercase in (("uncased", True), ("cased", False)):
        directory = tmp_path_factory.mktemp(case)
        trainer = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=None)
        trainer.train_from_iterator([text, MULTILINGUAL * 3], vocab_size=1000, min_frequency=2, show_progress=False)
        vocab_dir = tmp_path_factory.mktemp(f"{case}_vocab")
        trainer.save_model(str(vocab_dir))
        hf = transformers.BertTokenizer(vocab=str(vocab_dir / "vocab.txt"), do_lower_case=lowercase)
        assert len(hf) == 1000
        hf.save_pretrained(str(directory))
        directories[case] = directory
    return directories


@pytest.fixture(scope="module")
def strings():
    texts = varied_strings()
    assert len(texts) >= 200
    return texts


def _hf_ids(directory, texts):
    """Ids of transformers' AutoTokenizer, checked equal to the raw `tokenizers` Tokenizer's."""
    import transformers
    from tokenizers import Tokenizer

    auto = transformers.AutoTokenizer.from_pretrained(str(directory))
    expected = [auto(text, add_special_tokens=False)["input_ids"] for text in texts]
    fast = Tokenizer.from_file(str(directory / "tokenizer.json"))
    assert [e.ids for e in fast.encode_batch(texts, add_special_tokens=False)] == expected
    return expected


@pytest.mark.parametrize("case", ["uncased", "cased"])
def test_ids_equal_the_hf_fast_tokenizer_on_varied_strings(hf_directories, strings, case):
    directory = hf_directories[case]
    expected = _hf_ids(directory, strings)
    tokenizer = WordPiece.from_hf(directory)
    assert (tokenizer.lowercase, tokenizer.strip_accents, tokenizer.clean_text) == (case == "uncased",) * 2 + (True,)
    got = tokenizer(tf.constant([t.encode("utf-8") for t in strings])).to_list()
    mismatches = {text: (ours, theirs) for text, ours, theirs in zip(strings, got, expected) if ours != theirs}
    assert mismatches == {}
    # A comparison that means something: pieces, unknown words and special tokens all occur.
    vocabulary = tokenizer.get_vocabulary()
    pieces = [vocabulary[i] for ids in expected for i in ids]
    assert len(pieces) > 2000 and pieces.count("[UNK]") > 20 and sum(p.startswith("##") for p in pieces) > 100
    assert {"[MASK]", "[CLS]", "[SEP]"} <= set(pieces)
    assert tokenizer("x" * 101).numpy().tolist() == [tokenizer.unk_id]  # longer than max_input_chars_per_word
    assert len(tokenizer("é" * 60).numpy()) >= 1 and tokenizer("é" * 60).numpy().tolist() == expected[strings.index("é" * 60)]


def test_cased_and_uncased_differ_where_they_should(hf_directories):
    uncased, cased = (WordPiece.from_hf(hf_directories[case]) for case in ("uncased", "cased"))
    for text in ("Café", "The KING"):
        assert [uncased.id_to_token(i) for i in uncased(text).numpy()] != [cased.id_to_token(i) for i in cased(text).numpy()]
    assert [uncased.id_to_token(i) for i in uncased("CAFÉ").numpy()] == [uncased.id_to_token(i) for i in uncased("cafe").numpy()]


def test_vocab_txt_directory_without_tokenizer_json(hf_directories, strings, tmp_path):
    """The slow tokenizer's files: vocab.txt + tokenizer_config.json (do_lower_case) only."""
    import transformers

    for case in ("uncased", "cased"):
        source, directory = hf_directories[case], tmp_path / case
        directory.mkdir()
        config = json.loads((source / "tokenizer_config.json").read_text())
        json.dump({k: config[k] for k in ("do_lower_case", "tokenizer_class", "unk_token", "sep_token", "pad_token",
                                          "cls_token", "mask_token")}, open(directory / "tokenizer_config.json", "w"))
        vocabulary = WordPiece.from_hf(source).get_vocabulary()
        (directory / "vocab.txt").write_text("".join(f"{token}\n" for token in vocabulary), encoding="utf-8")
        auto = transformers.AutoTokenizer.from_pretrained(str(directory))
        expected = [auto(text, add_special_tokens=False)["input_ids"] for text in strings]
        tokenizer = WordPiece.from_hf(directory)
        assert tokenizer.get_vocabulary() == vocabulary
        assert tokenizer(tf.constant([t.encode() for t in strings])).to_list() == expected


# Latin to CJK, and the blocks where the Unicode tables of `tokenizers` and TensorFlow differ.
SOME_CODE_POINTS = [
    *range(0x3400), *range(0xA700, 0xA900), *range(0xE000, 0xE010), *range(0xFFF0, 0x10000),
    *range(0x10500, 0x11FFF), *range(0x13400, 0x13460), *range(0x16000, 0x17000), *range(0x1CF00, 0x1CF50),
    *range(0x1E000, 0x1EA00), *range(0x2B800, 0x2B940),
]
EVERY_CODE_POINT = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def _assert_bert_words(code_points, lowercase, strip_accents):
    from tokenizers import normalizers, pre_tokenizers

    chunks = [" ".join(f"A{chr(c)}b" for c in code_points[i:i + 512]) for i in range(0, len(code_points), 512)]
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    expected = [[w.encode() for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(c))] for c in chunks]
    texts = tf.constant([c.encode("utf-8") for c in chunks])
    got = split_bert_words(bert_normalize(texts, lowercase, strip_accents, True, True)).to_list()
    first_bad = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e), None)
    assert first_bad is None, [(w, x) for w, x in zip(got[first_bad], expected[first_bad]) if w != x][:5]


CONFIGURATIONS = [(True, True), (False, False), (True, False), (False, True)]


@pytest.mark.parametrize("lowercase,strip_accents", CONFIGURATIONS)
def test_code_points_are_normalized_and_split_as_bert_does(lowercase, strip_accents):
    """About 30,000 code points, each between two letters: the words of Hugging Face's BertNormalizer +
    BertPreTokenizer, also where the Unicode versions differ (new marks, punctuation, capitals)."""
    _assert_bert_words(SOME_CODE_POINTS, lowercase, strip_accents)


@pytest.mark.slow
@pytest.mark.parametrize("lowercase,strip_accents", CONFIGURATIONS)
def test_every_code_point_is_normalized_and_split_as_bert_does(lowercase, strip_accents):
    """All 1,112,064 code points."""
    _assert_bert_words(EVERY_CODE_POINT, lowercase, strip_accents)


def test_works_in_tf_data_and_a_saved_model_loaded_in_a_fresh_process(hf_directories, strings, tmp_path,
                                                                       run_in_fresh_process):
    tokenizer = WordPiece.from_hf(hf_directories["uncased"])
    texts = [t.encode("utf-8") for t in strings]
    expected = tokenizer(tf.constant(texts)).to_list()
    mapped = tf.data.Dataset.from_tensor_slices(texts).map(tokenizer)
    assert [x.tolist() for x in mapped.as_numpy_iterator()] == expected

    module = tf.Module()
    module.tokenizer = tokenizer
    module.tokenize = tf.function(
        lambda text: tokenizer(text).to_tensor(default_value=-1), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    tf.saved_model.save(module, str(tmp_path / "tokenizer"))
    (tmp_path / "texts.json").write_text(json.dumps([t.decode("utf-8") for t in texts]))
    script = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the ops
texts = [t.encode("utf-8") for t in json.load(open(sys.argv[2]))]
ids = tf.saved_model.load(sys.argv[1]).tokenize(tf.constant(texts)).numpy().tolist()
print(json.dumps([[i for i in row if i != -1] for row in ids]))
"""
    output = run_in_fresh_process(script, str(tmp_path / "tokenizer"), str(tmp_path / "texts.json"))
    assert json.loads(output.strip().splitlines()[-1]) == expected


def test_config_round_trip_keeps_the_hf_behaviour(hf_directories, strings):
    import keras

    tokenizer = WordPiece.from_hf(hf_directories["cased"])
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    texts = tf.constant([t.encode() for t in strings])
    assert restored.clean_text and restored.special_tokens_in_strings
    assert restored(texts).to_list() == tokenizer(texts).to_list()


# -- BertPreprocessor.from_hf -------------------------------------------------------------------------------

def _random_texts(count, seed):
    rng = np.random.default_rng(seed)
    words = "the king is dead long live Café 東京 ok ! [MASK] naïve x".split()
    return [" ".join(rng.choice(words, size=n)) for n in rng.integers(0, 14, size=count)]


@pytest.mark.parametrize("sequence_length", [8, 9, 16])
def test_preprocessor_equals_hf_padding_and_longest_first_truncation(hf_directories, sequence_length):
    import transformers

    directory = hf_directories["uncased"]
    hf = transformers.AutoTokenizer.from_pretrained(str(directory))
    firsts, seconds = _random_texts(60, 1), _random_texts(60, 2)
    firsts[:4], seconds[:4] = ["a b c d e f g"] * 4, ["a b c d e f g", "h i", "a b c d e f g h i j", ""]
    preprocessor = BertPreprocessor.from_hf(directory, sequence_length=sequence_length)
    assert preprocessor.truncate == "longest_first"
    for args in ((firsts,), (firsts, seconds)):
        expected = hf(*args, padding="max_length", truncation=True, max_length=sequence_length)
        out = preprocessor(tuple(tf.constant(a) for a in args) if len(args) == 2 else tf.constant(args[0]))
        assert out["token_ids"].numpy().tolist() == expected["input_ids"]
        assert out["segment_ids"].numpy().tolist() == expected["token_type_ids"]
        assert out["padding_mask"].numpy().astype(int).tolist() == expected["attention_mask"]
    truncated = sum(len(hf(a, b, add_special_tokens=True)["input_ids"]) > sequence_length for a, b in zip(firsts, seconds))
    assert truncated >= 10  # the truncation is really exercised


def test_longest_first_differs_from_round_robin_on_equal_lengths(hf_directories):
    """Two 7-token segments in a 9-token budget: Hugging Face gives the extra token to the second one."""
    tokenizer = WordPiece.from_hf(hf_directories["uncased"])
    pair = (tf.constant(["a b c d e f g"]), tf.constant(["h i j k l m n"]))
    longest_first = BertPreprocessor(tokenizer, sequence_length=12, truncate="longest_first")(pair)
    round_robin = BertPreprocessor(tokenizer, sequence_length=12, truncate="round_robin")(pair)
    assert longest_first["segment_ids"].numpy().tolist() == [[0] * 6 + [1] * 6]
    assert round_robin["segment_ids"].numpy().tolist() == [[0] * 7 + [1] * 5]
    preprocessor = BertPreprocessor(tokenizer, sequence_length=12, truncate="longest_first")
    mapped = tf.data.Dataset.from_tensor_slices(pair).map(lambda a, b: preprocessor((a, b)))
    assert next(iter(mapped))["token_ids"].numpy().tolist() == longest_first["token_ids"].numpy()[0].tolist()


def test_preprocessor_sequence_length_defaults_to_model_max_length(hf_directories, tmp_path):
    source = hf_directories["cased"]
    with pytest.raises(ValueError, match="sets no model_max_length.*pass sequence_length="):
        BertPreprocessor.from_hf(source)
    shutil.copytree(source, tmp_path / "bert")
    config = json.loads((tmp_path / "bert" / "tokenizer_config.json").read_text())
    (tmp_path / "bert" / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 24}))
    assert BertPreprocessor.from_hf(tmp_path / "bert").sequence_length == 24


# -- errors ----------------------------------------------------------------------------------------------------

def test_missing_files_and_wrong_models_are_clear_errors(hf_directories, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"no tokenizer in .*empty.*expected tokenizer\.json or vocab\.txt"):
        WordPiece.from_hf(empty)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        WordPiece.from_hf(tmp_path / "nowhere")

    bpe = tmp_path / "bpe"
    bpe.mkdir()
    tokenizer = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    tokenizer.save(str(bpe / "tokenizer.json"))
    with pytest.raises(ValueError, match=r"holds a BPE model, not WordPiece \(use BytePair\.from_hf"):
        WordPiece.from_hf(bpe)

    no_mask = tmp_path / "no_mask"
    no_mask.mkdir()
    (no_mask / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
    with pytest.raises(ValueError, match=r"missing the special tokens \['\[MASK\]'\]"):
        WordPiece.from_hf(no_mask)

    other_normalizer = tmp_path / "other_normalizer"
    shutil.copytree(hf_directories["cased"], other_normalizer)
    spec = json.loads((other_normalizer / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "NFKC"}
    (other_normalizer / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="normalizer 'NFKC'; only BertNormalizer is supported"):
        WordPiece.from_hf(other_normalizer)
