"""Every head's from_hf on RoBERTa and ELECTRA checkpoints, through the one family table of hf_heads.

For each family and head, transformers' *For* model is built from a tiny config with EVERY parameter
random (biases, LayerNorm scales and the heads too), saved with save_pretrained (with the tokenizer
files where the head reads them: a byte-level BPE trained on Shakespeare for RoBERTa, a WordPiece
vocabulary trained on movie_snippets for ELECTRA) and imported with <Head>.from_hf(folder); logits
are compared with torch in eval mode. RoBERTa inputs are right-padded with <pad> (id 1), which no
real token uses, so per-token outputs are compared at the real tokens (transformers numbers
RoBERTa's positions from pad + 1, keras_lm from 0).
"""
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.applications import CheckpointError
from keras_lm.tasks.classifier import Classifier
from keras_lm.tasks.hf_heads import HF_ENCODER_FAMILIES, TASKS
from keras_lm.tasks.multiple_choice import MultipleChoice
from keras_lm.tasks.span_qa import SpanQA, decode_answers
from keras_lm.tasks.token_classifier import TokenClassifier
from keras_lm.tokenizers.question_context import QuestionContextPreprocessor, tokenize_with_offsets
from keras_lm.tokenizers.roberta_preprocessor import RobertaPreprocessor

FAMILIES = ("roberta", "electra")
LENGTH = 24
QA_LENGTH = 48
SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, hidden_act="gelu")
SETTINGS = {
    "roberta": dict(SHAPE, max_position_embeddings=66, type_vocab_size=1, layer_norm_eps=1e-5,
                    hidden_dropout_prob=0.15),
    "electra": dict(SHAPE, embedding_size=16, max_position_embeddings=64, summary_last_dropout=0.25),
}
PREFIX = {"roberta": "Roberta", "electra": "Electra"}
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
LABELS = {0: "negative", 1: "neutral", 2: "positive"}
SENTENCES = [
    ["Romeo", "loves", "Juliet", "in", "Verona", "."],
    ["The", "king's", "men", "came", ",", "in", "1599", "!"],
    ["Café", "naïve", "😀", "ok"],
    ["the", "movie", "is", "a", "great", "cinematic", "experience"] * 3,  # longer than the packed length
]
QUESTIONS = ["Who loves Juliet?", "What did the king say?"]
CONTEXTS = ["Romeo loves Juliet in Verona, said the Chorus in 1599.", "The king's men came; “Long live the king!”  Ok"]


def is_norm_scale(name):
    return name.endswith(("LayerNorm.weight", "layer_norm.weight"))


# -- tokenizers and checkpoints -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_tokenizers(tmp_path_factory):
    """family -> (transformers fast tokenizer, vocabulary size, folder it is saved in): RoBERTa's
    byte-level BPE (501 tokens trained with `tokenizers` on Shakespeare, RoBERTa's special tokens) and
    an ELECTRA WordPiece vocabulary (400 tokens) trained on movie_snippets."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    text = next(iter(keras_lm.data.load("shakespeare", split="train").take(1)))["text"].numpy().decode("utf-8")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator([text[:60_000]], trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2))
    vocabulary = bpe.get_vocab()
    vocabulary["<mask>"] = len(vocabulary)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(bpe.to_str())["model"]["merges"]]
    roberta = transformers.RobertaTokenizer(vocab=vocabulary, merges=merges, model_max_length=64)

    texts = keras_lm.data.load("movie_snippets", split="train").map(lambda example: example["text"]).take(400)
    words = keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=400).get_vocabulary()
    vocab_file = tmp_path_factory.mktemp("electra_vocabulary") / "vocab.txt"
    vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
    electra = transformers.ElectraTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=64)
    folders = {}
    for family, tokenizer in (("roberta", roberta), ("electra", electra)):
        folders[family] = tmp_path_factory.mktemp(f"{family}_tokenizer")
        tokenizer.save_pretrained(str(folders[family]))
    return {"roberta": (roberta, len(vocabulary), folders["roberta"]),
            "electra": (electra, len(words), folders["electra"])}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, hf_tokenizers, randomize_every_parameter):
    """(family, class suffix, **config) -> (the random transformers model, its saved folder), built once."""
    import transformers

    saved = {}

    def get(family, suffix, with_tokenizer=False, **extra):
        key = repr((family, suffix, with_tokenizer, sorted(extra.items())))
        if key not in saved:
            tokenizer, vocabulary_size, _ = hf_tokenizers[family]
            config_class = getattr(transformers, f"{PREFIX[family]}Config")
            model_class = getattr(transformers, PREFIX[family] + suffix)
            model = model_class(config_class(vocab_size=vocabulary_size, **{**SETTINGS[family], **extra})).eval()
            randomize_every_parameter(model, seed=len(saved), is_norm_scale=is_norm_scale)
            directory = tmp_path_factory.mktemp(f"{family}_{suffix}")
            model.save_pretrained(directory)
            if with_tokenizer:
                tokenizer.save_pretrained(str(directory))
            saved[key] = model, directory
        return saved[key]

    return get


def random_batch(family, vocabulary_size, lengths, length, seed=0):
    """Encoder inputs for rows of the given real lengths (any leading shape), right-padded.

    RoBERTa rows are <s> ... </s> <pad>...; their real tokens are never <pad>. ELECTRA rows have two
    segments."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    mask = np.arange(length) < lengths[..., None]
    ids = rng.integers(5, vocabulary_size, (*lengths.shape, length))
    if family == "roberta":
        ids[..., 0] = 0
        np.put_along_axis(ids, (lengths - 1)[..., None], 2, axis=-1)
        ids, segments = np.where(mask, ids, 1), np.zeros_like(ids)
    else:
        ids, segments = np.where(mask, ids, 0), (np.arange(length) >= lengths[..., None] // 2) & mask
    return {"token_ids": ids.astype("int32"), "segment_ids": segments.astype("int32"), "padding_mask": mask.astype("int32")}


def torch_outputs(model, batch, family):
    import torch

    inputs = {"input_ids": torch.tensor(batch["token_ids"], dtype=torch.long),
              "attention_mask": torch.tensor(batch["padding_mask"], dtype=torch.long)}
    if family == "electra":
        inputs["token_type_ids"] = torch.tensor(batch["segment_ids"], dtype=torch.long)
    with torch.no_grad():
        return model(**inputs)


def assert_close(actual, expected, where=None):
    actual, expected = np.asarray(actual), np.asarray(expected)
    if where is not None:
        actual, expected = actual[where], expected[where]
    difference = np.abs(actual - expected).max()
    assert difference <= 1e-4, difference
    assert np.abs(expected).max() > 0.5  # not a degenerate comparison


def test_one_table_holds_every_head_of_every_family():
    assert set(HF_ENCODER_FAMILIES) == {"bert", "roberta", "electra"}
    for name, family in HF_ENCODER_FAMILIES.items():
        assert set(family.heads) == set(TASKS), name
    assert HF_ENCODER_FAMILIES["roberta"].preprocessor is RobertaPreprocessor
    assert HF_ENCODER_FAMILIES["roberta"].word_prefix == " " and HF_ENCODER_FAMILIES["electra"].word_prefix == ""


# -- parity of every head --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_sequence_classification_logits_equal_transformers(family, checkpoint, hf_tokenizers, tmp_path):
    model, directory = checkpoint(family, "ForSequenceClassification", num_labels=3, id2label=LABELS,
                                  label2id={v: k for k, v in LABELS.items()}, classifier_dropout=0.2)
    classifier = Classifier.from_hf(str(directory))
    assert classifier.num_classes == 3 and classifier.label_names == ("negative", "neutral", "positive")
    assert classifier.dropout == pytest.approx(0.2)
    assert classifier.backbone.untrained_layers == ()  # classifier.dense is the pooler
    assert classifier.backbone.pooler_activation == ("tanh" if family == "roberta" else "gelu")
    batch = random_batch(family, hf_tokenizers[family][1], [LENGTH, 15, 6], LENGTH)
    expected = torch_outputs(model, batch, family).logits.numpy()
    assert_close(classifier(batch, training=False), expected)
    if family == "electra":  # the GELU pooler survives a .keras round trip
        classifier.save(tmp_path / "classifier.keras")
        restored = keras.saving.load_model(tmp_path / "classifier.keras")
        assert restored.backbone.get_config()["pooler_activation"] == "gelu"
        assert_close(restored(batch, training=False), expected)


def hf_word_encoding(tokenizer, sentences, length):
    encoding = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=length, padding="max_length")
    word_ids = [[-1 if w is None else w for w in encoding.word_ids(i)] for i in range(len(sentences))]
    return np.array(encoding["input_ids"]), np.array(encoding["attention_mask"]), np.array(word_ids)


@pytest.mark.parametrize("family", FAMILIES)
def test_token_classification_logits_and_tags_equal_transformers(family, checkpoint):
    import transformers

    model, directory = checkpoint(family, "ForTokenClassification", with_tokenizer=True, num_labels=len(TAGS),
                                  id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)})
    tagger = TokenClassifier.from_hf(str(directory), sequence_length=LENGTH)
    assert tagger.tag_names == TAGS and tagger.word_prefix == (" " if family == "roberta" else "")
    # transformers reads pre-split words for RoBERTa with a space before each (add_prefix_space=True)
    reference = transformers.AutoTokenizer.from_pretrained(str(directory), add_prefix_space=True) \
        if family == "roberta" else transformers.AutoTokenizer.from_pretrained(str(directory))
    token_ids, mask, word_ids = hf_word_encoding(reference, SENTENCES, LENGTH)
    aligned = tagger.aligner(tf.ragged.constant(SENTENCES))
    np.testing.assert_array_equal(aligned["token_ids"].numpy(), token_ids)
    np.testing.assert_array_equal(aligned["word_ids"].numpy(), word_ids)
    batch = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": mask}
    expected = torch_outputs(model, batch, family).logits.numpy()
    assert_close(tagger(batch, training=False), expected, where=mask == 1)
    predicted, tags = expected.argmax(-1), []
    for row, sentence in enumerate(SENTENCES):  # HF's argmax read at each word's first piece
        first = {}
        for position, word in enumerate(word_ids[row]):
            if word >= 0 and word not in first:
                first[word] = TAGS[predicted[row, position]]
        tags.append([first.get(i, "O") for i in range(len(sentence))])
    assert tagger.predict_tags(SENTENCES) == tags


@pytest.mark.parametrize("family", FAMILIES)
def test_question_answering_logits_and_pairs_equal_transformers(family, checkpoint):
    import transformers

    model, directory = checkpoint(family, "ForQuestionAnswering", with_tokenizer=True)
    qa = SpanQA.from_hf(str(directory), sequence_length=QA_LENGTH)
    assert qa.untrained_layers == () and qa.preprocessor.sequence_length == QA_LENGTH
    features = qa.preprocessor.pack(QUESTIONS, CONTEXTS)
    reference = transformers.AutoTokenizer.from_pretrained(str(directory))
    encoded = reference(QUESTIONS, CONTEXTS, padding="max_length", max_length=QA_LENGTH)
    assert features["token_ids"].numpy().tolist() == encoded["input_ids"]
    assert features["padding_mask"].numpy().astype(int).tolist() == encoded["attention_mask"]
    segments = encoded["token_type_ids"] if family == "electra" else np.zeros((2, QA_LENGTH), int).tolist()
    assert features["segment_ids"].numpy().tolist() == segments
    batch = {name: np.asarray(features[name]).astype("int32") for name in ("token_ids", "segment_ids", "padding_mask")}
    expected = torch_outputs(model, batch, family)
    outputs = qa(batch, training=False)
    for name in ("start_logits", "end_logits"):
        assert_close(outputs[name], getattr(expected, name).numpy(), where=batch["padding_mask"] == 1)
    for answer, context in zip(qa.predict_answers(QUESTIONS, CONTEXTS), CONTEXTS):
        assert context[answer["start"]: answer["end"]] == answer["text"]


@pytest.mark.parametrize("family", FAMILIES)
def test_multiple_choice_logits_equal_transformers(family, checkpoint, hf_tokenizers):
    model, directory = checkpoint(family, "ForMultipleChoice")
    choice = MultipleChoice.from_hf(str(directory), num_choices=3)
    # RobertaForMultipleChoice drops out with hidden_dropout_prob, ELECTRA's summary with summary_last_dropout
    assert choice.dropout == pytest.approx(0.15 if family == "roberta" else 0.25)
    batch = random_batch(family, hf_tokenizers[family][1], [[16, 9, 5], [12, 16, 7]], 16, seed=2)
    expected = torch_outputs(model, batch, family).logits.numpy()
    assert expected.shape == (2, 3)
    assert_close(choice(batch, training=False), expected)


# -- checkpoints without the head ------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_a_checkpoint_without_a_head_gives_fresh_heads_on_its_backbone(family, checkpoint, hf_tokenizers):
    model, directory = checkpoint(family, "Model" if family == "roberta" else "ForPreTraining")
    with pytest.raises(ValueError, match="no classification head.*pass num_classes"):
        Classifier.from_hf(str(directory))
    classifier = Classifier.from_hf(str(directory), num_classes=4)
    batch = random_batch(family, hf_tokenizers[family][1], [LENGTH, 10, 4], LENGTH, seed=3)
    reference = torch_outputs(getattr(model, "electra", model), batch, family)
    outputs = classifier.backbone(batch)
    assert_close(outputs["sequence_output"], reference.last_hidden_state.numpy(), where=batch["padding_mask"] == 1)
    if family == "roberta":  # RobertaModel has its pooler
        assert_close(outputs["pooled_output"], reference.pooler_output.numpy())
        assert classifier.backbone.untrained_layers == ()
    else:  # ELECTRA has none: the pooler starts untrained
        assert classifier.backbone.untrained_layers == ("pooler",)
    assert classifier(batch).shape == (3, 4)
    tagger = TokenClassifier.from_hf(str(directory), num_classes=["O", "B-X", "I-X"])
    assert tagger.num_classes == 3 and tagger.preprocessor is None
    qa = SpanQA.from_hf(str(directory))
    assert "qa_outputs" in qa.untrained_layers and qa.preprocessor is None
    choice = MultipleChoice.from_hf(str(directory), num_choices=2)
    assert choice(random_batch(family, hf_tokenizers[family][1], [[8, 5]], 8)).shape == (1, 2)


# -- errors ------------------------------------------------------------------------------------------------


def _state(model):
    return dict(model.state_dict())


@pytest.mark.parametrize("family", FAMILIES)
def test_unknown_families_and_broken_heads_are_one_error_naming_the_tensor(family, checkpoint):
    model, _ = checkpoint(family, "ForSequenceClassification", num_labels=3, id2label=LABELS,
                          label2id={v: k for k, v in LABELS.items()}, classifier_dropout=0.2)
    config = model.config.to_dict()
    for head in (Classifier, TokenClassifier, SpanQA, MultipleChoice):
        with pytest.raises(CheckpointError, match=f"{head.__name__}.from_hf cannot import the state dict: its config.json "
                           "has model_type='deberta'; supported model types: 'bert', 'roberta', 'electra'"):
            head.from_hf(_state(model), config={**config, "model_type": "deberta"})
    state = {k: v for k, v in _state(model).items() if k != "classifier.out_proj.bias"}
    with pytest.raises(CheckpointError, match="has no 'classifier.out_proj.bias'"):
        Classifier.from_hf(state, config=config)
    state = {k: v for k, v in _state(model).items() if k != "classifier.dense.weight"}
    with pytest.raises(CheckpointError, match="has no 'classifier.dense.weight'"):
        Classifier.from_hf(state, config=config)
    state = {**_state(model), "classifier.out_proj.weight": _state(model)["classifier.out_proj.weight"][:, :16]}
    with pytest.raises(CheckpointError, match=re.escape("'classifier.out_proj.weight' has shape (3, 16)")):
        Classifier.from_hf(state, config=config)
    state = {**_state(model), "classifier.dense.bias": _state(model)["classifier.dense.bias"][:8]}
    with pytest.raises(CheckpointError, match=re.escape("'classifier.dense.bias' in the state dict has shape (8,)")):
        Classifier.from_hf(state, config=config)
    backbone = f"{family}.encoder.layer.1.output.dense.weight"
    with pytest.raises(CheckpointError, match=re.escape(f"has no '{backbone}'")):
        Classifier.from_hf({k: v for k, v in _state(model).items() if k != backbone}, config=config)


def test_broken_token_qa_and_multiple_choice_heads_name_the_tensor(checkpoint):
    tagging, _ = checkpoint("roberta", "ForTokenClassification", with_tokenizer=True, num_labels=len(TAGS),
                            id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)})
    state = {k: v for k, v in _state(tagging).items() if k != "classifier.bias"}
    with pytest.raises(CheckpointError, match="'classifier.weight' but no 'classifier.bias'"):
        TokenClassifier.from_hf(state, config=tagging.config)
    answering, _ = checkpoint("electra", "ForQuestionAnswering", with_tokenizer=True)
    state = {**_state(answering), "qa_outputs.weight": _state(answering)["qa_outputs.weight"][:, :8]}
    with pytest.raises(CheckpointError, match=re.escape("'qa_outputs.weight' has shape (2, 8)")):
        SpanQA.from_hf(state, config=answering.config)
    choosing, _ = checkpoint("electra", "ForMultipleChoice")
    state = {k: v for k, v in _state(choosing).items() if k != "sequence_summary.summary.bias"}
    with pytest.raises(CheckpointError, match="has no 'sequence_summary.summary.bias'"):
        MultipleChoice.from_hf(state, config=choosing.config)
    state = {**_state(choosing), "sequence_summary.summary.weight": _state(choosing)["sequence_summary.summary.weight"][:4]}
    with pytest.raises(CheckpointError, match=re.escape("'sequence_summary.summary.weight' in the state dict has shape (4, 32)")):
        MultipleChoice.from_hf(state, config=choosing.config)
    with pytest.raises(CheckpointError, match="summary_type='mean'"):
        MultipleChoice.from_hf(_state(choosing), config={**choosing.config.to_dict(), "summary_type": "mean"})


# -- RoBERTa's question/context packing ----------------------------------------------------------------------

VARIED = ["Long live the king, said Ana's friend in 1599!  Ok", "", "  lead\n\nx\ty <mask> z\x00w end",
          "Café naïve résumé 東京 😀👍🏽 it's", "trailing  ", "I'm sure we'll see; they'd've gone"]


def test_byte_pair_offsets_give_the_tokenizers_ids_and_hold_transformers_spans(hf_tokenizers):
    reference, _, folder = hf_tokenizers["roberta"]
    tokenizer = RobertaPreprocessor.from_hf(folder, sequence_length=64).tokenizer
    pieces = tokenize_with_offsets(tokenizer, tf.constant(VARIED))
    assert pieces.ragged(pieces.ids).to_list() == tokenizer(tf.constant(VARIED)).to_list()
    encoded = reference(VARIED, add_special_tokens=False, return_offsets_mapping=True)
    starts, ends = pieces.ragged(pieces.starts).to_list(), pieces.ragged(pieces.ends).to_list()
    for row, text in enumerate(VARIED):
        assert pieces.ragged(pieces.ids).to_list()[row] == encoded["input_ids"][row]
        for (hf_start, hf_end), start, end in zip(encoded["offset_mapping"][row], starts[row], ends[row]):
            assert 0 <= start <= end <= len(text)
            if hf_end > hf_start:  # (pieces of spaces alone have empty spans, placed differently)
                assert start <= hf_start < hf_end <= end, (text, hf_start, hf_end, start, end)
            assert not text[start:end].startswith(" ")  # a word's leading space is left out


def test_roberta_answers_are_the_exact_characters_of_gold_spans(hf_tokenizers):
    """Real sentence pairs (movie_snippets contexts): every span from the first piece of a word to the
    last piece of a word up to two words on, chosen by token index in transformers' own encoding, is
    labelled at those tokens by `pack` and decodes to exactly the characters transformers' offsets give."""
    reference, _, folder = hf_tokenizers["roberta"]
    packer = QuestionContextPreprocessor.from_preprocessor(
        RobertaPreprocessor.from_hf(folder, sequence_length=192), max_question_length=24)
    assert (packer.cls_id, packer.sep_id, packer.pad_id, packer.separators) == (0, 2, 1, 2)
    rows = keras_lm.data.load("movie_snippets", split="train").take(3)
    contexts = [row["text"].numpy().decode("utf-8") for row in rows]
    questions, spans, ids = ["What does the review say?", "Which words?", "Who?"], [], []
    for index, (question, context) in enumerate(zip(questions, contexts)):
        encoded = reference(question, context, return_offsets_mapping=True)
        assert len(encoded["input_ids"]) <= 192  # one window each
        ids.append(encoded["input_ids"])
        sequence, word_ids, offsets = encoded.sequence_ids(), encoded.word_ids(), encoded["offset_mapping"]
        in_context = [p for p in range(len(sequence)) if sequence[p] == 1 and offsets[p][1] > offsets[p][0]]
        first = {word_ids[p]: p for p in reversed(in_context)}
        last = {word_ids[p]: p for p in in_context}
        for word in first:
            for other in (word, word + 1, word + 2):
                if other in last:
                    spans.append((index, first[word], last[other], offsets[first[word]][0], offsets[last[other]][1]))
    assert len(spans) > 60
    examples = [s[0] for s in spans]
    gold = [contexts[i][start:end] for i, _, _, start, end in spans]
    features = packer.pack([questions[i] for i in examples], [contexts[i] for i in examples],
                           answer_starts=[s[3] for s in spans], answer_texts=gold)
    assert features["token_ids"].shape[0] == len(spans)
    for row, index in enumerate(examples):  # transformers' pair encoding, so its token indices are ours
        assert features["token_ids"].numpy()[row, : len(ids[index])].tolist() == ids[index]
    np.testing.assert_array_equal(features["start_positions"].numpy(), [s[1] for s in spans])
    np.testing.assert_array_equal(features["end_positions"].numpy(), [s[2] for s in spans])
    positions = np.arange(192)
    start_logits = np.where(positions == np.array([s[1] for s in spans])[:, None], 10.0, -10.0).astype("float32")
    end_logits = np.where(positions == np.array([s[2] for s in spans])[:, None], 10.0, -10.0).astype("float32")
    answers = decode_answers(start_logits, end_logits, features, [contexts[i] for i in examples], max_answer_length=30)
    assert [a.decode("utf-8") for a in answers["answer"].numpy()] == gold
    assert answers["start"].numpy().tolist() == [s[3] for s in spans]
    assert answers["end"].numpy().tolist() == [s[4] for s in spans]


def test_question_context_packing_config_round_trip_and_bad_tokenizers(hf_tokenizers):
    _, _, folder = hf_tokenizers["roberta"]
    tokenizer = RobertaPreprocessor.from_hf(folder, sequence_length=32).tokenizer
    packer = QuestionContextPreprocessor(tokenizer, sequence_length=32, max_question_length=8, doc_stride=8)
    restored = QuestionContextPreprocessor.from_config(packer.get_config())
    features, again = packer.pack(QUESTIONS, CONTEXTS), restored.pack(QUESTIONS, CONTEXTS)
    for name in features:
        np.testing.assert_array_equal(features[name].numpy(), again[name].numpy())
    assert features["token_ids"].shape[0] > 2  # long contexts give several windows
    with pytest.raises(ValueError, match="sequence_length=12 leaves no room.*4 special tokens"):
        QuestionContextPreprocessor(tokenizer, sequence_length=12, max_question_length=8)
    with pytest.raises(ValueError, match=r"vocabulary has no \['<cls>'\]"):
        QuestionContextPreprocessor(tokenizer, sequence_length=32, max_question_length=8, start_token="<cls>")
    prefixed = keras_lm.tokenizers.BytePair.from_hf(folder, add_prefix_space=True)
    with pytest.raises(ValueError, match="add_prefix_space=True"):
        QuestionContextPreprocessor(prefixed, sequence_length=32, max_question_length=8)


# -- the pooler's activation ------------------------------------------------------------------------------------


def test_pooler_activation_is_configurable_and_old_configs_still_load():
    from keras_lm.layers import Pooler
    from keras_lm.models import Encoder

    pooler = Pooler(activation="gelu")
    assert Pooler.from_config(pooler.get_config()).get_config()["activation"] == "gelu"
    assert Pooler().get_config()["activation"] == "tanh"
    shape = dict(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
    default = Encoder(**shape)
    assert "pooler_activation" not in default.get_config()  # configs written before the option are unchanged
    gelu = Encoder(**shape, pooler_activation="gelu")
    assert gelu.get_config()["pooler_activation"] == "gelu"
    inputs = {"token_ids": np.array([[3, 7, 9]]), "segment_ids": np.zeros((1, 3), "int32"),
              "padding_mask": np.ones((1, 3), "int32")}
    hidden = np.asarray(gelu(inputs)["sequence_output"])[:, 0]
    kernel, bias = (np.asarray(w) for w in gelu.pooler.dense.weights)
    expected = np.asarray(keras.activations.gelu(hidden @ kernel + bias, approximate=False))
    np.testing.assert_allclose(np.asarray(gelu(inputs)["pooled_output"]), expected, atol=1e-6)
    restored = Encoder.from_config(gelu.get_config())
    assert restored.pooler_activation == "gelu" and Encoder.from_config(default.get_config()).pooler_activation == "tanh"


# -- serving --------------------------------------------------------------------------------------------------

LOAD_BOTH_WAYS = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops used by the graph)
import keras
directory, request = sys.argv[1], json.loads(sys.stdin.read())
questions, contexts = (tf.constant([t.encode("utf-8") for t in request[k]]) for k in ("questions", "contexts"))
def as_json(outputs):
    return {k: [t.decode("utf-8") for t in v.numpy().tolist()] if k == "answer" else v.numpy().tolist()
            for k, v in outputs.items()}
result = {"saved_model": as_json(tf.saved_model.load(directory).signatures["serving_default"](
    question=questions, context=contexts))}
result["tfsm_layer"] = as_json(keras.layers.TFSMLayer(directory, call_endpoint="serve")(questions, context=contexts))
print("RESULT " + json.dumps(result))
"""


@pytest.mark.slow
def test_roberta_span_qa_serving_answers_in_a_fresh_process(checkpoint, tmp_path):
    """SpanQA.from_hf(RobertaForQuestionAnswering folder) exported with span_qa_serving: the byte-level BPE
    packing runs in the SavedModel graph and answers as predict_answers, with both loaders."""
    import subprocess
    import sys

    from keras_lm.export.span_qa_serving import span_qa_serving

    _, directory = checkpoint("roberta", "ForQuestionAnswering", with_tokenizer=True)
    qa = SpanQA.from_hf(str(directory), sequence_length=QA_LENGTH, doc_stride=8)
    contexts = CONTEXTS + [CONTEXTS[0] * 3, ""]  # several windows; no context
    questions = QUESTIONS + ["Who?", "Who?"]
    expected = qa.predict_answers(questions, contexts)
    exported = span_qa_serving(qa, str(tmp_path / "qa" / "1"))
    process = subprocess.run([sys.executable, "-c", LOAD_BOTH_WAYS, exported], capture_output=True, text=True,
                             input=json.dumps({"questions": questions, "contexts": contexts}), timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads([line for line in process.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    for loader in ("saved_model", "tfsm_layer"):
        assert result[loader]["answer"] == [answer["text"] for answer in expected], loader
        assert result[loader]["start"] == [answer["start"] for answer in expected], loader
        assert result[loader]["end"] == [answer["end"] for answer in expected], loader
    assert expected[-1] == {"text": "", "start": 0, "end": 0, "score": float("-inf")}  # no context


def test_question_context_docstring_examples():
    import doctest

    import keras_lm.tokenizers.question_context as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
