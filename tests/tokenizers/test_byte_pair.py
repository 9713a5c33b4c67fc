"""BytePair: GPT-2's ids exactly as tiktoken computes them, training with HF tokenizers, in-graph use, saving."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.data.gpt2_bpe import gpt2_bpe_files
from keras_lm.tokenizers import BytePair
from keras_lm.tokenizers.byte_pair_split import split_words

# tiktoken's own GPT-2 pattern (tiktoken_ext/openai_public.py).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

VARIED = [
    "", " ", "  ", "\n", "Hello world", "hello  world", " leading space", "trailing space ",
    "   three leading", "three trailing   ", "a  b   c    d     e",
    # newlines, tabs, carriage returns, whitespace runs before words (GPT-2's lookahead)
    "first line\nsecond line", "para one\n\npara two", "a \n b", "a\n \nb", "\t\tindented\ttab\t",
    "windows\r\nline end", "  \n  \n", " \t\n x", "x\x0by\x0cz",
    # contractions, upper case (not split as contractions), quotes
    "I'm sure you're right, we've seen they'll say he'd do it's not what I'd've",
    "I'M YOU'RE WE'VE", "'s 't 're 've 'm 'll 'd", " 's", "  'sx", "rock 'n' roll", "\"quoted\" `tick`",
    # numbers and punctuation
    "12345 678,90 3.14159 -42 1e-7 2024-06-01 #1 $9.99 100%", "Hello!!! ...?? (x) [y] {z} <a/> a--b",
    # Unicode: accents, CJK, RTL, other scripts, combining marks, unusual spaces
    "café naïve résumé Ångström Øre", "e\u0301 (combining acute)", "東京は日本の首都です。", "中文，标点！",
    "שלום עולם", "مرحبا بالعالم ١٢٣", "Привет, мир", "नमस्ते दुनिया १२३ ६", "ǅungla ⅷ ½ ²",
    "non\u00a0breaking", "ideographic\u3000space", "thin\u2009space \u202f narrow", "x\x85y\u2028z",
    # emoji, including ZWJ sequences and skin tones
    "emoji 😀👍🏽 ok", "family 👨\u200d👩\u200d👧 flag 🇫🇷", "🙂🙂🙂",
    # control characters, NUL, private-use characters
    "a\x00b\x01c", "\x00", "bell\x07", "\uf8ff\uf8fe private",
    # the end-of-text special token written in the text
    "<|endoftext|>", "one<|endoftext|>two", "end <|endoftext|> start", "<|endoftext|><|endoftext|>",
]


def _require_gpt2_files():
    try:
        return gpt2_bpe_files()
    except FileNotFoundError as error:
        pytest.fail(f"{error} (tests never fetch data)")


@pytest.fixture(scope="module")
def gpt2():
    _require_gpt2_files()
    return BytePair.gpt2()


@pytest.fixture(scope="module")
def reference():
    """tiktoken's encoder built from the same two local files."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    encoder_json, vocab_bpe = _require_gpt2_files()
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(vocab_bpe), encoder_json_file=str(encoder_json))
    encoding = tiktoken.Encoding(
        "gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )
    return lambda text: encoding.encode(text, allowed_special="all")


def test_gpt2_vocabulary_and_known_ids(gpt2):
    assert gpt2.vocabulary_size() == 50257
    assert gpt2.end_token_id == 50256
    assert gpt2("Hello world").numpy().tolist() == [15496, 995]
    assert gpt2(["Hello world", "<|endoftext|>"]).to_list() == [[15496, 995], [50256]]
    assert gpt2("Hello world").dtype == tf.int32


def test_gpt2_ids_equal_tiktoken_on_varied_strings(gpt2, reference):
    ids = gpt2(tf.constant(VARIED)).to_list()
    mismatches = {text: (got, reference(text)) for text, got in zip(VARIED, ids) if got != reference(text)}
    assert mismatches == {}
    # The cases where a plain keras-hub BytePairTokenizer differs from GPT-2 (double newline
    # before a word, the Devanagari digit six it uses as a marker, NUL) are in the list.
    assert gpt2("para one\n\npara two").numpy().tolist() == reference("para one\n\npara two")
    assert 198 in reference("para one\n\npara two")


def test_gpt2_ids_equal_tiktoken_on_real_text_and_random_strings(gpt2, reference):
    works = keras_lm.data.load("shakespeare", split="validation")
    sonnets = next(w["text"].numpy().decode("utf-8") for w in works if b"Sonnets" in w["title"].numpy())
    excerpt = sonnets[:20_000]
    assert gpt2(excerpt).numpy().tolist() == reference(excerpt)
    rng = np.random.default_rng(0)
    alphabet = list(" \t\n\r\u00a0\u3000'sdtmlrevaZ09٣!?.,é東😀\x0b\x00-") + ["<|endoftext|>"]
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 14))) for _ in range(500)]
    assert gpt2(tf.constant(texts)).to_list() == [reference(t) for t in texts]


def test_word_split_matches_gpt2_regular_expression():
    import regex

    texts = [t for t in VARIED if "<|endoftext|>" not in t]
    got = split_words(tf.constant(texts)).to_list()
    assert [[w.decode("utf-8") for w in words] for words in got] == [regex.findall(GPT2_PATTERN, t) for t in texts]


def test_detokenize_round_trips_exactly(gpt2):
    ids = gpt2(tf.constant(VARIED))
    assert [t.decode("utf-8") for t in gpt2.detokenize(ids).numpy().tolist()] == VARIED
    assert gpt2.detokenize(gpt2("café 😀")).numpy().decode("utf-8") == "café 😀"
    # invalid UTF-8 becomes U+FFFD (like bytes.decode(errors="replace"))
    invalid = b"ok \xff\xfe bytes"
    assert gpt2.detokenize(gpt2(tf.constant(invalid))).numpy() == invalid.decode("utf-8", "replace").encode()


def test_detokenize_refuses_ids_outside_the_vocabulary_instead_of_dropping_them(gpt2):
    from keras_lm.tokenizers.text import TokenizerInputError

    size = gpt2.vocabulary_size()
    assert gpt2.detokenize(tf.constant([[64, size - 1]])).shape == (1,)
    for bad, span in (([64, size], f"64 to {size}"), ([-1, 64], "-1 to 64")):
        with pytest.raises(TokenizerInputError, match=rf"^BytePair.detokenize: .*\[0, {size}\).* from {span}\.$"):
            gpt2.detokenize(tf.constant([bad]))
    graph = tf.function(lambda ids: gpt2.detokenize(ids), input_signature=[tf.TensorSpec([None, None], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="BytePair.detokenize: token ids must lie in"):
        graph(tf.constant([[64, size + 7]]))


def test_in_tf_data_and_tf_function_and_saved_model(gpt2, tmp_path):
    texts = ["Hello world", "para one\n\npara two", "emoji 😀👍🏽 ok", ""]
    expected = gpt2(tf.constant(texts)).to_list()
    mapped = tf.data.Dataset.from_tensor_slices(texts).map(gpt2)
    assert [x.numpy().tolist() for x in mapped] == expected

    module = tf.Module()
    module.tokenizer = gpt2
    module.tokenize = tf.function(
        lambda x: gpt2(x).to_tensor(default_value=-1),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(module, str(tmp_path / "tokenizer"))
    reloaded = tf.saved_model.load(str(tmp_path / "tokenizer"))
    dense = reloaded.tokenize(tf.constant(texts)).numpy().tolist()
    assert [[i for i in row if i != -1] for row in dense] == expected


def test_sequence_length_pads_and_truncates(gpt2):
    tokenizer = BytePair.from_config({**gpt2.get_config(), "sequence_length": 4})
    assert tokenizer(["Hello world", "a b c d e f"]).numpy().tolist() == [[15496, 995, 0, 0], [64, 275, 269, 288]]


def test_gpt2_without_fetched_files_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_LM_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match=r"run `python -m keras_lm\.data\.prepare` first"):
        BytePair.gpt2()


def test_bad_vocabularies_and_merges_get_clear_errors(tmp_path):
    vocabulary = {"<|endoftext|>": 0, "a": 1, "b": 2, "ab": 3}
    assert BytePair(vocabulary, ["a b"])("abba").numpy().tolist() == [3, 2, 1]
    with pytest.raises(ValueError, match="Cannot find special token `'<\\|endoftext\\|>'`"):
        BytePair({"a": 0, "b": 1, "ab": 2}, ["a b"])
    with pytest.raises(ValueError, match="Invalid BPE merge rule 'a b c'"):
        BytePair(vocabulary, ["a b c"])
    with pytest.raises(ValueError, match="contains token 'a' or 'x' that is not in the vocabulary"):
        BytePair(vocabulary, ["a x"])
    with pytest.raises(FileNotFoundError, match="BytePair vocabulary file not found"):
        BytePair(tmp_path / "missing.json", ["a b"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        BytePair(tmp_path / "bad.json", ["a b"])
    with pytest.raises(TypeError, match="BytePair expects string inputs"):
        BytePair(vocabulary, ["a b"]).tokenize(tf.constant([1, 2]))


# -- training ----------------------------------------------------------------------------------

VOCABULARY_SIZE = 1000


@pytest.fixture(scope="module")
def shakespeare_train():
    return keras_lm.data.load("shakespeare", split="train")


@pytest.fixture(scope="module")
def trained(shakespeare_train):
    return BytePair.train(shakespeare_train, vocabulary_size=VOCABULARY_SIZE)


@pytest.fixture(scope="module")
def sample_lines(shakespeare_train):
    texts = [w["text"].numpy().decode("utf-8") for w in shakespeare_train.take(2)]
    lines = [line for text in texts for line in text.split("\n")]
    return lines[::10][:1500]


def test_trained_vocabulary_layout(trained):
    vocabulary = trained.vocabulary
    assert trained.vocabulary_size() == VOCABULARY_SIZE
    assert trained.end_token_id == 0 and vocabulary["<|endoftext|>"] == 0
    assert sorted(vocabulary.values()) == list(range(VOCABULARY_SIZE))
    assert len(trained.merges) == VOCABULARY_SIZE - 1 - 256


def test_trained_tokenizer_round_trips_real_lines_with_ids_in_range(trained, sample_lines):
    ids = trained(tf.constant(sample_lines))
    flat = ids.flat_values.numpy()
    assert flat.min() >= 0 and flat.max() < VOCABULARY_SIZE
    assert ids.flat_values.shape[0] < sum(len(line.encode()) for line in sample_lines) / 2  # it compresses
    assert [t.decode("utf-8") for t in trained.detokenize(ids).numpy().tolist()] == sample_lines


@pytest.fixture(scope="module")
def library_trained(shakespeare_train):
    """Hugging Face `tokenizers`' own byte-level BPE (GPT-2 split, no prefix space, the 256 byte
    tokens as initial alphabet), trained on the same documents with the same settings."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer(add_prefix_space=False)
    documents = (work["text"].numpy().decode("utf-8") for work in shakespeare_train)
    tokenizer.train_from_iterator(
        documents, vocab_size=VOCABULARY_SIZE, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False
    )
    return tokenizer


def test_trained_vocabulary_merges_and_ids_equal_the_tokenizers_library(trained, library_trained, sample_lines):
    model = json.loads(library_trained._tokenizer.to_str())["model"]
    assert library_trained.get_vocab() == trained.vocabulary
    assert [m if isinstance(m, str) else " ".join(m) for m in model["merges"]] == list(trained.merges)
    sample = sample_lines[:400] + ["  odd   spacing\n\nhere ", "unicode é 東 😀", "x<|endoftext|>y"]
    expected = [encoding.ids for encoding in library_trained.encode_batch(sample)]
    got = tf.data.Dataset.from_tensor_slices(sample).map(trained).as_numpy_iterator()
    assert [list(ids) for ids in got] == expected
    assert trained(tf.constant(sample)).to_list() == expected


def test_training_errors():
    texts = tf.data.Dataset.from_tensor_slices(["the king", "the kings"])
    with pytest.raises(ValueError, match="vocabulary_size=200 is too small"):
        BytePair.train(texts, vocabulary_size=200)
    with pytest.raises(ValueError, match="the dataset is empty"):
        BytePair.train(texts.take(0), vocabulary_size=300)
    with pytest.raises(ValueError, match="at least one special token"):
        BytePair.train(texts, vocabulary_size=300, special_tokens=())


def test_save_vocabulary_and_load_round_trip(trained, tmp_path, sample_lines):
    vocabulary_path, merges_path = trained.save_vocabulary(tmp_path / "bpe")
    assert json.loads(open(vocabulary_path, encoding="utf-8").read()) == trained.vocabulary
    assert open(merges_path, encoding="utf-8").readline() == "#version: 0.2\n"
    reloaded = BytePair.from_directory(tmp_path / "bpe")
    assert reloaded.vocabulary == trained.vocabulary and reloaded.merges == trained.merges
    assert reloaded(sample_lines[:50]).to_list() == trained(sample_lines[:50]).to_list()


def test_config_and_keras_file_of_a_model_holding_the_tokenizer(trained, tmp_path):
    clone = BytePair.from_config(trained.get_config())
    texts = ["Now is the winter of our discontent", "  made glorious\n\nsummer <|endoftext|>"]
    assert clone(texts).to_list() == trained(texts).to_list()

    tokenizer = BytePair.from_config({**trained.get_config(), "sequence_length": 12})
    inputs = keras.Input(shape=(), dtype="string")
    outputs = keras.layers.Embedding(tokenizer.vocabulary_size(), 4)(tokenizer(inputs))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded.layers[1], BytePair)
    np.testing.assert_array_equal(reloaded(tf.constant(texts)), model(tf.constant(texts)))
    assert reloaded.layers[1](texts).numpy().tolist() == tokenizer(texts).numpy().tolist()


@pytest.mark.parametrize("module_name", ["keras_lm.tokenizers.byte_pair", "keras_lm.tokenizers.byte_pair_split"])
def test_docstring_examples(module_name):
    import doctest
    import importlib

    _require_gpt2_files()
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
