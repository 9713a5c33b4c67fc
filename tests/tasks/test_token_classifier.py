"""TokenClassifier: word/sub-word alignment equal to Hugging Face's, head import with parity against
BertForTokenClassification (every parameter random), the TFDS conll2003 schema, learning on real text,
and the other starting points (.keras file, exported SavedModel)."""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.applications import CheckpointError
from keras_lm.evaluation.tagging import entity_scores
from keras_lm.tasks.token_classifier import TokenClassifier, tag_names_from_info
from keras_lm.tokenizers.word_alignment import WordAligner, split_words

LENGTH = 24
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# Varied sentences: punctuation inside and around words, accents, digits, a word of deleted
# characters only, unknown characters, a very long word, and one sentence longer than LENGTH tokens.
SENTENCES = [
    ["Mr.", "Smith", "went", "to", "Washington", "D.C.", "!"],
    ["Café", "Ångström", "naïve", "co-operate", "it's", "1999", "films"],
    ["\u200b", "a", "東京", "😀", "x" * 120, "ok"],
    ["the", "movie", "is", "a", "great", "cinematic", "experience"] * 4,
    ["single"],
]


def word_piece_vocabulary():
    """Specials, single characters (and their ## continuations), and whole words and pieces, so that
    the test sentences split into one, several or unknown pieces."""
    characters = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,!'-$()") + ["東"]
    words = ["mr", "smith", "went", "to", "washington", "the", "movie", "is", "great", "cafe", "naive", "co",
             "operate", "it", "film", "ok", "single", "##s", "##ing", "##ton", "##ive", "##ema", "cinem", "##tic",
             "exper", "##ience", "19", "##99", "angstrom", "king", "long", "live", "dead"]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters,
            *("##" + c for c in characters if c.isalnum()), *words]


@pytest.fixture(scope="module")
def hf_bert_dir(tmp_path_factory, randomize_every_parameter):
    """A saved BertForTokenClassification (every parameter random) with its fast tokenizer's files."""
    import transformers

    directory = tmp_path_factory.mktemp("bert_ner")
    vocab_file = directory / "vocab.txt"
    vocabulary = word_piece_vocabulary()
    vocab_file.write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=LENGTH)
    tokenizer.save_pretrained(str(directory))
    config = transformers.BertConfig(
        vocab_size=len(vocabulary), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, num_labels=len(TAGS),
        id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)},
    )
    model = transformers.BertForTokenClassification(config).eval()
    randomize_every_parameter(model, seed=3, is_norm_scale=lambda name: name.endswith("LayerNorm.weight"))
    model.save_pretrained(str(directory))
    return directory


def hf_encoding(directory, sentences):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    encoding = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=LENGTH,
                         padding="max_length")
    word_ids = [[-1 if w is None else w for w in encoding.word_ids(i)] for i in range(len(sentences))]
    return np.array(encoding["input_ids"]), np.array(word_ids)


def test_alignment_equals_hf_word_ids_and_first_piece_labels(hf_bert_dir):
    preprocessor = keras_lm.tokenizers.BertPreprocessor.from_hf(str(hf_bert_dir), sequence_length=LENGTH)
    aligner = WordAligner(preprocessor)
    labels = [[(3 * i + j) % len(TAGS) for j in range(len(s))] for i, s in enumerate(SENTENCES)]
    out = aligner(tf.ragged.constant(SENTENCES), tf.ragged.constant(labels))
    token_ids, word_ids = hf_encoding(hf_bert_dir, SENTENCES)
    np.testing.assert_array_equal(out["token_ids"].numpy(), token_ids)
    np.testing.assert_array_equal(out["word_ids"].numpy(), word_ids)
    np.testing.assert_array_equal(out["padding_mask"].numpy(), token_ids != 0)
    # Hugging Face's recipe (tokenize_and_align_labels): the label at each word's first piece, -100 elsewhere.
    for row, sentence_labels in enumerate(labels):
        previous, expected = None, []
        for word in word_ids[row]:
            expected.append(-100 if word < 0 or word == previous else sentence_labels[word])
            previous = word
        expected = np.array(expected)
        weights = out["label_weights"].numpy()[row]
        np.testing.assert_array_equal(weights, (expected != -100).astype("float32"))
        np.testing.assert_array_equal(out["labels"].numpy()[row][expected != -100], expected[expected != -100])
    # The zero-width space tokenizes to nothing; the repeated sentence is cut at LENGTH - 2 tokens.
    tagged = [len(set(w for w in row if w >= 0)) for row in word_ids]
    np.testing.assert_array_equal(out["untagged_words"].numpy(), [len(s) - t for s, t in zip(SENTENCES, tagged)])
    assert out["untagged_words"].numpy()[2] == 1 and out["untagged_words"].numpy()[3] > 0
    # Inside tf.data (graph mode) the same packing.
    dataset = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(SENTENCES)).batch(5).map(aligner)
    np.testing.assert_array_equal(next(iter(dataset))["token_ids"].numpy(), token_ids)


def test_byte_pair_words_are_tokenized_with_a_prefix_space():
    texts = tf.data.Dataset.from_tensor_slices(["the king is dead long live the king"] * 20)
    tokenizer = keras_lm.tokenizers.BytePair.train(texts, vocabulary_size=300)
    aligner = WordAligner(tokenizer, sequence_length=16, word_prefix=" ", start_id=1, end_id=2, pad_id=0)
    words = [["the", "king", "lives"], ["dead"]]
    out = aligner(tf.ragged.constant(words))
    for row, sentence in enumerate(words):
        pieces = [tokenizer(" " + w).numpy().tolist() for w in sentence]
        expected = [1] + sum(pieces, []) + [2]
        expected_words = [-1] + sum(([i] * len(p) for i, p in enumerate(pieces)), []) + [-1]
        assert out["token_ids"].numpy()[row].tolist() == expected + [0] * (16 - len(expected))
        assert out["word_ids"].numpy()[row].tolist() == expected_words + [-1] * (16 - len(expected))


def test_split_words_splits_like_berts_basic_tokenizer():
    import transformers

    texts = ["Mr. O'Neil paid $5,000 (cash)!", "東京タワー is  tall…", "naïve\tcafé\nnow"]
    ours = [[w.decode() for w in row] for row in split_words(tf.constant(texts)).to_list()]
    basic = transformers.models.bert.tokenization_bert.BasicTokenizer(do_lower_case=False, strip_accents=False) \
        if hasattr(transformers.models.bert.tokenization_bert, "BasicTokenizer") else None
    if basic is not None:
        assert ours == [basic.tokenize(t) for t in texts]
    assert ours[0] == ["Mr", ".", "O", "'", "Neil", "paid", "$", "5", ",", "000", "(", "cash", ")", "!"]
    assert ours[1][:2] == ["東", "京"]


def torch_logits(directory, token_ids, mask):
    import torch
    import transformers

    model = transformers.BertForTokenClassification.from_pretrained(str(directory)).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(token_ids, dtype=torch.long),
                     attention_mask=torch.tensor(mask.astype("int64"))).logits.numpy()


def test_from_hf_imports_the_head_with_parity_and_tags_like_hf(hf_bert_dir):
    tagger = TokenClassifier.from_hf(str(hf_bert_dir), sequence_length=LENGTH)
    assert tagger.tag_names == TAGS and tagger.num_classes == len(TAGS)
    token_ids, word_ids = hf_encoding(hf_bert_dir, SENTENCES)
    mask = token_ids != 0
    expected = torch_logits(hf_bert_dir, token_ids, mask)
    actual = tagger({"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": mask},
                    training=False).numpy()
    difference = np.abs(actual - expected)[mask].max()
    assert difference <= 1e-4, difference
    assert np.abs(expected).max() > 0.5
    # End to end: predict_tags = HF's argmax read at each word's first piece ("O" for words with none).
    predicted = expected.argmax(-1)
    reference = []
    for row, sentence in enumerate(SENTENCES):
        first = {}
        for position, word in enumerate(word_ids[row]):
            if word >= 0 and word not in first:
                first[word] = TAGS[predicted[row, position]]
        reference.append([first.get(i, "O") for i in range(len(sentence))])
    assert tagger.predict_tags(SENTENCES) == reference


def test_from_hf_fresh_head_and_clear_errors(hf_bert_dir):
    import transformers

    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
    backbone_only = transformers.BertModel(config, add_pooling_layer=False)
    tagger = TokenClassifier.from_hf(backbone_only, num_classes=["O", "B-X", "I-X"])
    assert tagger.num_classes == 3 and tagger.preprocessor is None
    with pytest.raises(ValueError, match="no token-classification head: pass num_classes"):
        TokenClassifier.from_hf(backbone_only)
    sentiment = transformers.BertForSequenceClassification(
        transformers.BertConfig(**config.to_dict() | {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}))
    with pytest.raises(ValueError, match="no token-classification head"):  # its labels are no tags
        TokenClassifier.from_hf(sentiment)
    tagging = transformers.BertForTokenClassification(config)
    state = {name: value for name, value in tagging.state_dict().items() if name != "classifier.bias"}
    with pytest.raises(CheckpointError, match="'classifier.weight' but no 'classifier.bias'"):
        TokenClassifier.from_hf(state, config=config)
    state = dict(tagging.state_dict())
    state["classifier.weight"] = state["classifier.weight"][:, :8]
    with pytest.raises(CheckpointError, match=re.escape("'classifier.weight' has shape (2, 8)")):
        TokenClassifier.from_hf(state, config=config)
    with pytest.raises(CheckpointError, match="has 5 tags .* num_classes=3"):
        TokenClassifier.from_hf(str(hf_bert_dir), num_classes=3)
    with pytest.raises(CheckpointError, match="model_type='gpt2'"):
        TokenClassifier.from_hf({"w": np.zeros(2)}, config={"model_type": "gpt2"})
    broken = dict(tagging.state_dict())
    del broken["bert.encoder.layer.0.output.dense.bias"]
    with pytest.raises(CheckpointError, match="bert.encoder.layer.0.output.dense.bias"):
        TokenClassifier.from_hf(broken, config=config)


def conll_mock(num_examples=6):
    import tensorflow_datasets as tfds

    return tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE)


def consistent_lengths(example):
    """Mocked conll2003 examples draw each sequence's length independently: keep the common prefix."""
    length = tf.minimum(tf.size(example["tokens"]), tf.size(example["ner"]))
    return {**example, "tokens": example["tokens"][:length], "ner": example["ner"][:length]}


@pytest.fixture(scope="module")
def small_vocabulary():
    letters = list("abcdefghij")
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *("##" + c for c in letters)]


@pytest.mark.slow  # long: run with -m slow
def test_conll2003_schema_tag_names_from_info_and_a_fit_step(small_vocabulary):
    import tensorflow_datasets as tfds

    with conll_mock():
        examples, info = tfds.load("conll2003", split="train", with_info=True)
        names = tag_names_from_info(info)
        assert names == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
        assert tag_names_from_info(info, "chunks")[:2] == info.features["chunks"].feature.names[:2]
        preprocessor = keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(small_vocabulary), 32)
        backbone = keras_lm.applications.Bert(None, vocabulary_size=len(small_vocabulary), num_layers=1,
                                              hidden_dim=32, num_heads=2, max_sequence_length=32)
        tagger = TokenClassifier(backbone, names, preprocessor)
        tagger.compile(optimizer=keras.optimizers.Adam(1e-3))
        batches = tagger.dataset(examples.map(consistent_lengths), batch_size=3)
        features, labels, weights = next(iter(batches))
        assert sorted(features) == ["padding_mask", "segment_ids", "token_ids"]
        assert labels.shape == weights.shape == features["token_ids"].shape
        history = tagger.fit(batches, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        with pytest.raises(ValueError, match=r"one label per word; words per sentence vs labels per sentence: "
                                             r"19 6 41 vs 5 31 18\."):
            tagger.evaluate(tagger.dataset(examples, batch_size=3), verbose=0)
        pos = TokenClassifier(backbone, tag_names_from_info(info, "pos"), preprocessor)
        assert pos.num_classes == 47
        pos_batch = next(iter(pos.dataset(examples.map(lambda ex: {**ex, "pos": ex["pos"][:1], "tokens": ex["tokens"][:1]}),
                                          batch_size=2, tags_key="pos")))
        first = next(iter(examples))
        assert pos_batch[1].numpy()[0, 1] == first["pos"].numpy()[0]  # the first word's tag at its first piece
    with pytest.raises(ValueError, match=r"tag ids must lie in \[0, 9\); got 12\."):
        bad = tf.data.Dataset.from_tensors((tf.constant(["ab", "cd"]), tf.constant([0, 12])))
        tagger.fit(tagger.dataset(bad), epochs=1, verbose=0)


def shakespeare_name_task():
    """Names of characters in Shakespeare's dialogue, tagged B-PER / I-PER.

    The closed list comes from the corpus itself: the speaker lines of four plays ("MACBETH.",
    "LADY MACBETH.", "BANQUO.") name their characters; a word of those names is a name word when
    the dialogue never writes it in lower case (which drops "lady", "doctor", "act", ...). A
    dialogue line's capitalized name words are PER entities, consecutive ones one entity (IOB2).
    Sentences: the first 400 dialogue lines that mention a name, plus as many that do not.
    """
    common = {"king", "queen", "lady", "lord", "duke", "first", "second", "third", "of", "the", "and",
              "all", "both", "young", "old", "servant", "messenger", "ghost", "earl", "prince", "sir"}
    lines, names = [], set()
    for example in keras_lm.data.load("shakespeare", split="validation").take(4):
        text = example["text"].numpy().decode("utf-8")
        for line in text.splitlines():
            speaker = re.fullmatch(r"([A-Z][A-Z' ]+)\.", line.strip())
            if speaker:
                names |= {w.lower() for w in speaker.group(1).split() if w.lower() not in common and len(w) > 2}
            elif line.strip():
                lines.append(line.strip())
    sentences = [[w.decode("utf-8") for w in row] for row in split_words(tf.constant(lines)).to_list()]
    lower_case = {w for words in sentences for w in words if w[:1].islower()}
    names -= lower_case
    tagged = []
    for words in sentences:
        tags, inside = [], False
        for word in words:
            name = word.lower() in names and word[:1].isupper()
            tags.append(("I-PER" if inside else "B-PER") if name else "O")
            inside = name
        tagged.append((words, tags))
    with_names = [s for s in tagged if "B-PER" in s[1]][:400]
    without = [s for s in tagged if "B-PER" not in s[1]][: len(with_names)]
    rng = np.random.default_rng(0)
    data = with_names + without
    rng.shuffle(data)
    return data, sorted(names)


@pytest.mark.slow  # long: run with -m slow
def test_learns_to_tag_character_names_in_shakespeare():
    """Real text: Shakespeare dialogue lines whose character names (from the plays' own speaker lines)
    are tagged; a tiny BERT with a WordPiece vocabulary trained on the same lines learns it."""
    data, names = shakespeare_name_task()
    assert len(names) > 20 and len(data) == 800
    assert {"macbeth", "banquo", "bolingbroke"} <= set(names) and not {"lady", "doctor", "act"} & set(names)
    split = len(data) * 4 // 5
    train, test = data[:split], data[split:]
    texts = tf.data.Dataset.from_tensor_slices([" ".join(words) for words, _ in train])
    tokenizer = keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=600)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=24)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=tokenizer.vocabulary_size(), num_layers=2,
                                          hidden_dim=64, num_heads=2, max_sequence_length=24)
    tags = ["O", "B-PER", "I-PER"]
    tagger = TokenClassifier(backbone, tags, preprocessor)

    def examples(rows):
        words = tf.ragged.constant([w for w, _ in rows])
        ids = tf.ragged.constant([[tags.index(t) for t in s] for _, s in rows])
        return tf.data.Dataset.from_tensor_slices((words, ids))

    before = tagger.evaluate_entities(examples(test), scheme="IOB2")
    tagger.compile(optimizer=keras.optimizers.Adam(2e-3))
    tagger.fit(tagger.dataset(examples(train), batch_size=32, shuffle=1000, seed=0), epochs=4, verbose=0)
    after = tagger.evaluate_entities(examples(test), scheme="IOB2")
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    predicted = tagger.predict_tags([w for w, _ in test])
    assert after.f1 == pytest.approx(f1_score([s for _, s in test], predicted, mode="strict", scheme=IOB2), abs=1e-12)
    # Baselines: the untrained tagger, and the majority tag ("O" everywhere) whose entity F1 is 0.
    assert entity_scores([s for _, s in test], [["O"] * len(s) for _, s in test]).f1 == 0.0
    assert before.f1 < 0.2
    assert after.f1 > 0.75 and after.f1 > before.f1 + 0.5, (before, after)


def test_keras_file_round_trip_and_from_saved_model(tmp_path, small_vocabulary):
    preprocessor = keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(small_vocabulary), 16)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=len(small_vocabulary), num_layers=1, hidden_dim=32,
                                          num_heads=2, max_sequence_length=16)
    tagger = TokenClassifier(backbone, ["O", "B-X", "I-X"], preprocessor)
    words = [["abc", "de", "fghij"], ["j"], []]
    expected = tagger.predict_tags(words)
    assert [len(t) for t in expected] == [3, 1, 0]
    path = str(tmp_path / "tagger.keras")
    tagger.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, TokenClassifier) and reloaded.tag_names == ["O", "B-X", "I-X"]
    assert reloaded.predict_tags(words) == expected
    backbone.save(str(tmp_path / "backbone.keras"))
    from_file = TokenClassifier.from_keras_file(str(tmp_path / "backbone.keras"), 3, preprocessor=preprocessor)
    assert from_file.count_params() == tagger.count_params()

    exported = keras_lm.export.encoder(backbone, preprocessor, str(tmp_path / "hub"))
    from_export = TokenClassifier.from_saved_model(exported, ["O", "B-X", "I-X"])
    direct = tagger.aligner(tf.ragged.constant(words[:2]))
    packed = from_export.aligner(tf.ragged.constant(words[:2]))  # each word packed by the preprocess SavedModel
    for name in ("token_ids", "word_ids", "padding_mask"):
        np.testing.assert_array_equal(packed[name].numpy(), direct[name].numpy())
    from_export.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = tf.data.Dataset.from_tensor_slices((tf.ragged.constant(words[:2]), tf.ragged.constant([[0, 1, 2], [1]])))
    from_export.fit(from_export.dataset(data, batch_size=2), epochs=1, verbose=0)
    assert [len(t) for t in from_export.predict_tags(words)] == [3, 1, 0]
