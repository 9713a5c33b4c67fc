"""BytePair.from_hf: exactly the ids of Hugging Face's fast byte-level BPE tokenizers.

Each tokenizer is trained here with the `tokenizers` library on Shakespeare plus multilingual text and
saved as tokenizer.json, in the shapes real checkpoints use: GPT-2 (ByteLevel regex), RoBERTa-like
(prefix space), Llama 3 (Split pattern + ByteLevel, ignore_merges), Qwen2 (NFC + its pattern), SmolLM
(Digits + ByteLevel), GPT-4o's pattern, and GPT-2's vocab.json + merges.txt files.
"""
import json
import shutil

import pytest
import tensorflow as tf

from hf_strings import MULTILINGUAL, corpus_text, varied_strings
from keras_lm.tokenizers import BytePair
from keras_lm.tokenizers.byte_pair_split import PATTERNS

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _pre_tokenizer(style):
    from tokenizers import Regex, pre_tokenizers

    def split(pattern):
        return pre_tokenizers.Split(Regex(PATTERNS[pattern]), behavior="isolated", invert=False)

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return {
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        "prefix_space": pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        "llama3": pre_tokenizers.Sequence([split("llama3"), byte_level]),
        "qwen2": pre_tokenizers.Sequence([split("qwen2"), byte_level]),
        "o200k": pre_tokenizers.Sequence([split("o200k"), byte_level]),
        "smollm": pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        ),
    }[style]


STYLES = ["gpt2", "prefix_space", "llama3", "qwen2", "o200k", "smollm"]


def train_byte_level_bpe(style: str, text: str, vocabulary_size: int = 1000):
    """A `tokenizers.Tokenizer` of the given style trained on `text`, with special tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = _pre_tokenizer(style)
    tokenizer.decoder = decoders.ByteLevel()
    if style == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_size, min_frequency=2, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([text, MULTILINGUAL * 3], trainer)
    if style == "llama3":  # Llama 3 sets ignore_merges, and has added tokens past the BPE vocabulary
        spec = json.loads(tokenizer.to_str())
        spec["model"]["ignore_merges"] = True
        tokenizer = Tokenizer.from_str(json.dumps(spec))
        tokenizer.add_special_tokens(["<|eot_id|>", "<|reserved_special_token_0|>"])
    return tokenizer


@pytest.fixture(scope="module")
def text():
    return corpus_text()


@pytest.fixture(scope="module")
def strings():
    texts = varied_strings() + ["<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n", "a<|eot_id|>b"]
    assert len(texts) >= 200
    return texts


@pytest.fixture(scope="module")
def saved(tmp_path_factory, text):
    """style -> a directory holding that style's tokenizer.json and tokenizer_config.json."""
    import transformers

    directories = {}
    for style in STYLES:
        directory = tmp_path_factory.mktemp(style)
        tokenizer = train_byte_level_bpe(style, text)
        transformers.PreTrainedTokenizerFast(
            tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
        ).save_pretrained(str(directory))
        directories[style] = directory
    return directories


def _expected(directory, texts):
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(directory / "tokenizer.json"))
    return [encoding.ids for encoding in reference.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("style", STYLES)
def test_ids_equal_the_hf_fast_tokenizer_on_varied_strings(saved, strings, style):
    expected = _expected(saved[style], strings)
    tokenizer = BytePair.from_hf(saved[style])
    got = tokenizer(tf.constant([t.encode("utf-8") for t in strings])).to_list()
    mismatches = {text: (ours, theirs) for text, ours, theirs in zip(strings, got, expected) if ours != theirs}
    assert mismatches == {}
    assert tokenizer.end_token == "<|endoftext|>" and tokenizer.end_token_id == 0
    flat = [i for ids in expected for i in ids]
    assert len(flat) > 3000 and len(set(flat)) > 500  # many different merged tokens
    specials = {tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    assert specials <= set(flat)  # special tokens written in the text are single ids
    # detokenize gives the text back (with the space add_prefix_space put in front)
    text = "Hello  world\n\nit's 12345"
    prefix = " " if style == "prefix_space" else ""
    assert tokenizer.detokenize(tokenizer(text)).numpy().decode() == prefix + text


def test_the_settings_read_from_each_style(saved):
    settings = {
        style: (t.split_pattern, t.split_digits, t.normalization, t.add_prefix_space, t.ignore_merges)
        for style, t in ((style, BytePair.from_hf(saved[style])) for style in STYLES)
    }
    assert settings == {
        "gpt2": ("gpt2", None, None, False, False),
        "prefix_space": ("gpt2", None, None, True, False),
        "llama3": ("llama3", None, None, False, True),
        "qwen2": ("qwen2", None, "NFC", False, False),
        "o200k": ("o200k", None, None, False, False),
        "smollm": ("gpt2", "individual", None, False, False),
    }
    llama3 = BytePair.from_hf(saved["llama3"])
    assert llama3.token_to_id("<|reserved_special_token_0|>") == llama3.vocabulary_size() - 1 == 1001


def test_ids_equal_transformers_auto_tokenizer(saved, strings):
    import transformers

    for style in ("gpt2", "llama3"):
        auto = transformers.AutoTokenizer.from_pretrained(str(saved[style]))
        expected = [auto(text, add_special_tokens=False)["input_ids"] for text in strings]
        assert BytePair.from_hf(saved[style])(tf.constant([t.encode() for t in strings])).to_list() == expected


def test_vocab_json_and_merges_txt_directory(saved, strings, tmp_path):
    """GPT-2's original file pair with tokenizer_config.json, as transformers' GPT2Tokenizer reads it."""
    import transformers
    from tokenizers import Tokenizer

    directory = tmp_path / "gpt2_files"
    directory.mkdir()
    Tokenizer.from_file(str(saved["gpt2"] / "tokenizer.json")).model.save(str(directory))
    config = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "bos_token": "<|endoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    auto = transformers.AutoTokenizer.from_pretrained(str(directory))
    expected = [auto(text, add_special_tokens=False)["input_ids"] for text in strings]
    tokenizer = BytePair.from_hf(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["merges.txt", "tokenizer_config.json", "vocab.json"]
    assert tokenizer(tf.constant([t.encode() for t in strings])).to_list() == expected
    # <|im_start|> is in vocab.json but not declared special here: it is text, as for transformers
    assert len(tokenizer("<|im_start|>").numpy()) > 1


@pytest.mark.parametrize("ignore_merges", [True, False])
def test_ignore_merges_takes_whole_word_tokens(tmp_path, ignore_merges):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocabulary = {"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "bc": 5, "abc": 6}
    merges = [("b", "c"), ("a", "b"), ("ab", "c")]  # "abc" merges to a + bc, never to abc
    reference = Tokenizer(models.BPE(vocabulary, merges, ignore_merges=ignore_merges))
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    reference.add_special_tokens(["<|endoftext|>"])
    reference.save(str(tmp_path / "tokenizer.json"))
    texts = ["abc", "abcab", "ab", "cab<|endoftext|>abc"]
    expected = [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]
    assert expected[0] == ([6] if ignore_merges else [1, 5])
    assert BytePair.from_hf(tmp_path)(texts).to_list() == expected


def test_works_in_tf_data_and_a_saved_model_loaded_in_a_fresh_process(saved, strings, tmp_path,
                                                                       run_in_fresh_process):
    tokenizer = BytePair.from_hf(saved["llama3"])
    texts = [t.encode("utf-8") for t in strings]
    expected = _expected(saved["llama3"], strings)
    mapped = tf.data.Dataset.from_tensor_slices(texts).map(tokenizer)
    assert [x.tolist() for x in mapped.as_numpy_iterator()] == expected

    module = tf.Module()
    module.tokenizer = tokenizer
    module.tokenize = tf.function(
        lambda text: tokenizer(text).to_tensor(default_value=-1), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    tf.saved_model.save(module, str(tmp_path / "tokenizer"))
    (tmp_path / "texts.json").write_text(json.dumps(strings))
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


def test_config_round_trip_keeps_the_settings(saved, strings):
    import keras

    tokenizer = BytePair.from_hf(saved["qwen2"])
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    assert (restored.split_pattern, restored.normalization) == ("qwen2", "NFC")
    texts = tf.constant([t.encode() for t in strings[:60]])
    assert restored(texts).to_list() == tokenizer(texts).to_list()


# -- errors ----------------------------------------------------------------------------------------------------

def _edited_copy(source, destination, edit):
    shutil.copytree(source, destination)
    spec = json.loads((destination / "tokenizer.json").read_text())
    edit(spec)
    (destination / "tokenizer.json").write_text(json.dumps(spec))
    return destination


def test_what_cannot_be_reproduced_is_a_clear_error(saved, tmp_path):
    import transformers

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no tokenizer in .*empty.*expected tokenizer\.json or "
                                                 r"vocab\.json \+ merges\.txt \(found no files\)"):
        BytePair.from_hf(empty)

    word_piece = tmp_path / "word_piece"
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    transformers.BertTokenizer(vocab=str(tmp_path / "vocab.txt")).save_pretrained(str(word_piece))
    with pytest.raises(ValueError, match=r"holds a WordPiece model, not BPE \(use WordPiece\.from_hf"):
        BytePair.from_hf(word_piece)

    def unknown_pattern(spec):
        spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+(?=\s)|\s+"

    with pytest.raises(ValueError, match=r"splits words with the pattern '\\\\p\{L\}\+\(\?=\\\\s\)\|\\\\s\+', which "
                                         r"keras_lm cannot reproduce exactly"):
        BytePair.from_hf(_edited_copy(saved["llama3"], tmp_path / "pattern", unknown_pattern))

    def metaspace(spec):
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}

    with pytest.raises(ValueError, match=r"pre-tokenizers \['Metaspace'\]; byte-level BPE needs ByteLevel last"):
        BytePair.from_hf(_edited_copy(saved["gpt2"], tmp_path / "metaspace", metaspace))

    def byte_fallback(spec):
        spec["model"]["byte_fallback"] = True

    with pytest.raises(ValueError, match="sets model.byte_fallback=True"):
        BytePair.from_hf(_edited_copy(saved["gpt2"], tmp_path / "byte_fallback", byte_fallback))

    def lstrip(spec):
        spec["added_tokens"][1]["lstrip"] = True

    with pytest.raises(ValueError, match=r"added token '<\|im_start\|>' .* sets lstrip"):
        BytePair.from_hf(_edited_copy(saved["gpt2"], tmp_path / "lstrip", lstrip))
