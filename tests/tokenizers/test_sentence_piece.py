"""SentencePiece: T5's id layout, training on Shakespeare, ids of the sentencepiece library and of
Hugging Face's T5 tokenizer, in-graph use, saving and loading, clear errors."""
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from hf_strings import MULTILINGUAL, corpus_lines, corpus_text, varied_strings
from keras_lm.tokenizers.sentence_piece import SentencePiece

VOCABULARY_SIZE, NUM_SENTINELS = 1000, 100
FIXED = ["To be, or not to be: that is the question.", "A horse! A horse! My kingdom for a horse!",
         "Now is the winter of our discontent", "O Romeo, Romeo! wherefore art thou Romeo?"]


@pytest.fixture(scope="module")
def shakespeare_text():
    """A Shakespeare work, multilingual text, and every printable ASCII character (so that none is unknown)."""
    return corpus_text() + "\n" + MULTILINGUAL * 3 + "".join(map(chr, range(32, 127)))


@pytest.fixture(scope="module")
def trained_proto(shakespeare_text):
    """The model SentencePiece.train learns from Shakespeare (bytes: the tf-text kernel does not outlive
    a test, whose teardown clears the Keras session)."""
    return SentencePiece.train([shakespeare_text], VOCABULARY_SIZE, num_sentinels=NUM_SENTINELS, seed=0).base_proto


@pytest.fixture
def tokenizer(trained_proto):
    return SentencePiece(trained_proto, num_sentinels=NUM_SENTINELS)


@pytest.fixture(scope="module")
def processor(trained_proto):
    """The sentencepiece library's own processor on the trained model (without the sentinels)."""
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_proto=trained_proto)


@pytest.fixture(scope="module")
def hf_directory(tmp_path_factory, trained_proto):
    """A T5 tokenizer directory as Hugging Face writes it: spiece.model, tokenizer.json, tokenizer_config.json."""
    import transformers

    directory = tmp_path_factory.mktemp("t5")
    (directory / "spiece.model").write_bytes(trained_proto)
    transformers.T5Tokenizer.from_pretrained(str(directory), extra_ids=NUM_SENTINELS).save_pretrained(str(directory))
    return directory


def test_training_gives_t5_layout(tokenizer, processor, capsys):
    assert tokenizer.vocabulary_size() == VOCABULARY_SIZE and processor.vocab_size() == VOCABULARY_SIZE - NUM_SENTINELS
    assert (tokenizer.pad_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2)
    assert [tokenizer.id_to_token(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert tokenizer.sentinel_ids == list(range(999, 899, -1))
    assert tokenizer.sentinel_id(0) == 999 and tokenizer.sentinel_id(99) == 900
    assert tokenizer.id_to_token(999) == "<extra_id_0>" and tokenizer.id_to_token(900) == "<extra_id_99>"
    assert tokenizer.id_to_token(899) == processor.id_to_piece(899)  # the last learned piece
    with pytest.raises(ValueError, match=r"Sentinel index must lie in \[0, 100\); got 100"):
        tokenizer.sentinel_id(100)


def test_exact_ids_equal_the_sentencepiece_library(tokenizer, processor):
    ids = tokenizer(tf.constant(FIXED))
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32
    assert ids.to_list() == [processor.encode(text) for text in FIXED]
    pieces = [tokenizer.id_to_token(i) for i in tokenizer("the king").numpy().tolist()]
    assert pieces == ["▁the", "▁king"]
    scalar = tokenizer(FIXED[0])
    assert scalar.shape.rank == 1 and scalar.numpy().tolist() == processor.encode(FIXED[0])


def test_training_is_deterministic(shakespeare_text, capsys):
    lines = shakespeare_text.splitlines()[:400]
    sampled = [SentencePiece.train(lines, 300, num_sentinels=10, seed=s, max_sentences=150).base_proto for s in (0, 0, 1)]
    assert sampled[0] == sampled[1] != sampled[2]  # the seed picks the sampled lines
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and out[0] == (
        "SentencePiece.train: 309 lines (a sample of 150) -> unigram model of 290 pieces + 10 sentinels"
    )
    assert SentencePiece.train(lines, 300, num_sentinels=10, seed=0).base_proto != sampled[0]  # all lines


def test_training_from_a_dataset_lowercase_and_bpe():
    texts = tf.data.Dataset.from_tensor_slices({"text": [corpus_text(20_000), "Another DOCUMENT\n\nwith Lines"]})
    lower = SentencePiece.train(texts, 300, num_sentinels=4, lowercase=True)
    assert lower("THE KING").numpy().tolist() == lower("the king").numpy().tolist()
    bpe = SentencePiece.train(texts, 300, num_sentinels=4, model_type="bpe")
    assert bpe.vocabulary_size() == 300 and bpe.sentinel_ids == [299, 298, 297, 296]
    assert bpe.detokenize(bpe("the king is dead")).numpy() == b"the king is dead"


def test_round_trip_on_shakespeare_lines(tokenizer):
    lines = corpus_lines(100)
    assert len(lines) == 100
    texts = tokenizer.detokenize(tokenizer(tf.constant(lines))).numpy().tolist()
    assert [t.decode("utf-8") for t in texts] == [" ".join(line.split()) for line in lines]


def test_special_tokens_in_text_and_detokenize(tokenizer):
    a, b = tokenizer("a").numpy().tolist(), tokenizer("b").numpy().tolist()
    assert tokenizer("a <extra_id_0> b").numpy().tolist() == a + [999] + b
    assert tokenizer("a<extra_id_99>b</s><pad><unk>").numpy().tolist() == a + [900] + b + [1, 0, 2]
    assert 999 not in tokenizer("a <extra_id_100> b").numpy().tolist()  # not a sentinel of this tokenizer
    text = tokenizer.detokenize([*tokenizer("the king").numpy().tolist(), 999, 1, 0, 0])
    assert text.numpy() == b"the king<extra_id_0>"  # sentinel as text, </s> and <pad> dropped
    batch = tokenizer.detokenize(tf.ragged.constant([[998], [], tokenizer("long live").numpy().tolist()]))
    assert batch.numpy().tolist() == [b"<extra_id_1>", b"", b"long live"]
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 1000\)"):
        tokenizer.detokenize([5, 1000])


def test_batches_eos_and_sequence_length(tokenizer, processor):
    texts = ["the king", "", "long live the king is dead"]
    expected = [processor.encode(t) for t in texts]
    assert tokenizer(texts).to_list() == expected
    assert tokenizer(tf.constant([], tf.string)).to_list() == []
    with_eos = SentencePiece(tokenizer.base_proto, num_sentinels=NUM_SENTINELS, add_eos=True)
    assert with_eos(texts).to_list() == [e + [1] for e in expected]
    assert tokenizer.with_eos(tokenizer(texts)).to_list() == [e + [1] for e in expected]
    assert tokenizer.with_eos(tokenizer("the king")).numpy().tolist() == expected[0] + [1]
    dense = SentencePiece(tokenizer.base_proto, num_sentinels=NUM_SENTINELS, sequence_length=5, add_eos=True)
    out = dense(texts)
    assert out.shape == (3, 5) and out.dtype == tf.int32
    assert out.numpy().tolist() == [(e + [1] + [0] * 5)[:5] for e in expected]
    with pytest.raises(ValueError, match=r"with_eos takes one sequence or a ragged batch"):
        tokenizer.with_eos(out)
    ids = tokenizer(tf.constant([b"\xff\xfe the", b"nul\x00king"])).to_list()
    assert ids[0][-len(expected[0][:1]):] == processor.encode("the") and ids[1] == processor.encode("nul\x00king")


FRESH_PROCESS_LOAD = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the SentencePiece ops)
loaded = tf.saved_model.load(sys.argv[1])
texts = json.loads(sys.argv[2])
print("RESULT " + json.dumps({
    "ids": loaded.tokenize(tf.constant(texts)).numpy().tolist(),
    "text": [t.decode("utf-8") for t in loaded.detokenize(tf.constant([[999, 1, 0]], tf.int32)).numpy()],
}))
"""


def test_in_graph_tf_function_dataset_and_saved_model(tokenizer, processor, tmp_path, run_in_fresh_process):
    expected = [processor.encode(t) + [999] for t in FIXED]
    texts = [t + "<extra_id_0>" for t in FIXED]
    graph = tf.function(lambda s: tokenizer(s), input_signature=[tf.TensorSpec([None], tf.string)])
    assert graph(tf.constant(texts)).to_list() == expected
    mapped = tf.data.Dataset.from_tensor_slices(texts).map(tokenizer)
    assert [x.tolist() for x in mapped.as_numpy_iterator()] == expected
    batched = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tokenizer)
    assert [row for batch in batched for row in batch.to_list()] == expected

    module = tf.Module()
    module.tokenizer = tokenizer
    module.tokenize = tf.function(
        lambda s: tokenizer(s).to_tensor(), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    module.detokenize = tf.function(
        lambda ids: tokenizer.detokenize(ids), input_signature=[tf.TensorSpec([None, None], tf.int32)]
    )
    tf.saved_model.save(module, str(tmp_path / "saved"))
    output = run_in_fresh_process(FRESH_PROCESS_LOAD, str(tmp_path / "saved"), json.dumps(texts))
    result = json.loads(output.splitlines()[-1][len("RESULT "):])
    width = max(map(len, expected))
    assert result["ids"] == [e + [0] * (width - len(e)) for e in expected]
    assert result["text"] == ["<extra_id_0>"]


def test_save_model_config_and_keras_file(tokenizer, processor, tmp_path):
    import sentencepiece

    path = tokenizer.save_model(tmp_path)
    assert path == str(tmp_path / "spiece.model")
    assert sentencepiece.SentencePieceProcessor(model_file=path).encode(FIXED[0]) == processor.encode(FIXED[0])
    from_file = SentencePiece(path, num_sentinels=NUM_SENTINELS)
    assert from_file(FIXED).to_list() == tokenizer(FIXED).to_list()

    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    assert type(restored) is SentencePiece and restored.num_sentinels == NUM_SENTINELS
    assert restored.base_proto == tokenizer.base_proto
    assert restored(FIXED).to_list() == tokenizer(FIXED).to_list()
    assert SentencePiece.from_config(tokenizer.get_config()).get_vocabulary() == tokenizer.get_vocabulary()

    layer = SentencePiece(tokenizer.base_proto, num_sentinels=NUM_SENTINELS, sequence_length=16)
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, layer(inputs))
    texts = tf.constant([FIXED[0] + " <extra_id_3>", "long live"])
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(reloaded(texts), model(texts))
    assert 996 in reloaded(texts).numpy()[0].tolist()

    from_assets = SentencePiece(num_sentinels=NUM_SENTINELS)  # no model yet: keras-hub's asset path
    tokenizer.save_assets(str(tmp_path))
    from_assets.load_assets(str(tmp_path))
    assert from_assets(FIXED).to_list() == tokenizer(FIXED).to_list()


def test_from_hf_equals_t5_tokenizer(hf_directory, tokenizer):
    import transformers

    strings = varied_strings() + [
        "a <extra_id_0> b", "x<extra_id_1>y", "<extra_id_99><extra_id_100>", "</s> <pad> <unk>", "a</s>b",
        "\x00<extra_id_3>\x00", "  <extra_id_5>  spaced  ", "Cæsar <extra_id_2>, Œdipus ﬁne",
    ]
    assert len(strings) >= 200
    ours = SentencePiece.from_hf(hf_directory)
    assert ours.base_proto == tokenizer.base_proto and ours.num_sentinels == NUM_SENTINELS
    ids = ours(tf.constant(strings)).to_list()
    with_eos = SentencePiece.from_hf(hf_directory, add_eos=True)(tf.constant(strings)).to_list()
    for reference_class in (transformers.T5TokenizerFast, transformers.T5Tokenizer):
        reference = reference_class.from_pretrained(str(hf_directory))
        assert len(reference) == ours.vocabulary_size()
        assert reference.convert_tokens_to_ids(ours.sentinel_tokens) == ours.sentinel_ids
        mismatches = [(s, r, o) for s, o in zip(strings, ids) if (r := reference(s, add_special_tokens=False)["input_ids"]) != o]
        assert not mismatches, mismatches[:5]
        assert [reference(s)["input_ids"] for s in strings] == with_eos


def test_from_hf_sentinel_count(trained_proto, tmp_path):
    """Only spiece.model: transformers' default of 100 sentinels; extra_ids=10 saved in the config: 10."""
    import transformers

    texts = ["a <extra_id_0> b <extra_id_9>", "<extra_id_10> <extra_id_99>", FIXED[0]]
    for extra_ids in (None, 10):
        directory = tmp_path / f"extra_ids_{extra_ids}"
        directory.mkdir()
        (directory / "spiece.model").write_bytes(trained_proto)
        if extra_ids is not None:
            transformers.T5Tokenizer.from_pretrained(str(directory), extra_ids=extra_ids).save_pretrained(str(directory))
        reference = transformers.T5Tokenizer.from_pretrained(str(directory))
        ours = SentencePiece.from_hf(directory)
        assert ours.num_sentinels == (extra_ids or 100) and ours.vocabulary_size() == len(reference)
        assert ours(texts).to_list() == [reference(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_from_hf_errors(hf_directory, tmp_path):
    only_json = tmp_path / "only_json"
    only_json.mkdir()
    shutil.copy(hf_directory / "tokenizer.json", only_json)
    with pytest.raises(FileNotFoundError, match=r"expected spiece\.model \(found tokenizer\.json\)"):
        SentencePiece.from_hf(only_json)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(hf_directory, corrupt)
    (corrupt / "spiece.model").write_bytes(b"not a sentencepiece model \xff\x00")
    with pytest.raises(ValueError, match=r"corrupt.spiece\.model is not a SentencePiece model"):
        SentencePiece.from_hf(corrupt)
    with pytest.raises(ValueError, match=r"model file .*corrupt.spiece\.model is not a SentencePiece model"):
        SentencePiece(str(corrupt / "spiece.model"))
    with pytest.raises(ValueError, match=r"^The SentencePiece proto \(bytes\) is not a SentencePiece model"):
        SentencePiece(b"\x0a\x03abc")

    moved = tmp_path / "moved"
    shutil.copytree(hf_directory, moved)
    config = json.loads((moved / "tokenizer_config.json").read_text())
    config["extra_ids"] = 50  # the sentinel ids in tokenizer.json then sit elsewhere than T5's layout
    (moved / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"extra_ids=50"):
        SentencePiece.from_hf(moved)

    with pytest.raises(FileNotFoundError, match=r"SentencePiece model file not found: .*missing\.model"):
        SentencePiece(str(tmp_path / "missing.model"))
    with pytest.raises(ValueError, match=r"already contains the sentinel pieces"):
        SentencePiece(_with_piece(hf_directory / "spiece.model", "<extra_id_7>"), num_sentinels=10)


def _with_piece(path, piece: str) -> bytes:
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(path.read_bytes())
    model.pieces.add(piece=piece, score=0.0, type=4)
    return model.SerializeToString()


def test_training_errors(shakespeare_text):
    with pytest.raises(ValueError, match=r"leaves 2 ids after the 100 sentinels"):
        SentencePiece.train([shakespeare_text], 102)
    with pytest.raises(ValueError, match=r"Vocabulary size is smaller than required_chars"):
        SentencePiece.train([shakespeare_text], 150)  # the text has more distinct characters
    with pytest.raises(ValueError, match=r"Vocabulary size too high .*Please set it to a value <="):
        SentencePiece.train(["the king is dead", "long live the king"], 200, num_sentinels=10)
    with pytest.raises(ValueError, match=r"the corpus is empty"):
        SentencePiece.train(["", " \n\t"], 200)
    with pytest.raises(ValueError, match=r"the corpus is empty"):
        SentencePiece.train(tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string)), 200)
    with pytest.raises(ValueError, match=r"model_type must be 'unigram' or 'bpe'"):
        SentencePiece.train(["the king"], 200, model_type="word")


def test_docstring_examples_run():
    import doctest

    import keras_lm.tokenizers.sentence_piece as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0
