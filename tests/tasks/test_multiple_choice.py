"""MultipleChoice: parity with transformers' BertForMultipleChoice, raw text, reloads, and learning a
real-text task (WordNet: which of four definitions fits a word and its part of speech)."""
import random

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_lm
from keras_lm.applications import CheckpointError
from keras_lm.tasks.multiple_choice import MultipleChoice

CONFIG = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
              max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu")
VOCABULARY_SIZE = 500


def random_bert(model_class, randomize_every_parameter, seed=0, **extra):
    import transformers

    model = model_class(transformers.BertConfig(vocab_size=VOCABULARY_SIZE, **CONFIG, **extra)).eval()
    randomize_every_parameter(model, seed=seed, is_norm_scale=lambda name: name.endswith("LayerNorm.weight"))
    return model


@pytest.fixture(scope="module")
def multiple_choice_checkpoint(tmp_path_factory, randomize_every_parameter):
    import transformers

    model = random_bert(transformers.BertForMultipleChoice, randomize_every_parameter, classifier_dropout=0.3)
    directory = tmp_path_factory.mktemp("bert_multiple_choice")
    model.save_pretrained(directory)
    return model, directory


def choice_inputs(batch=3, choices=4, length=20):
    rng = np.random.default_rng(5)
    lengths = rng.integers(6, length + 1, (batch, choices))
    mask = (np.arange(length)[None, None] < lengths[..., None]).astype("int32")
    segments = (np.arange(length)[None, None] >= rng.integers(2, 6, (batch, choices))[..., None]).astype("int32")
    return {"token_ids": rng.integers(0, VOCABULARY_SIZE, (batch, choices, length)).astype("int32") * mask,
            "segment_ids": segments * mask, "padding_mask": mask}


def test_logits_equal_transformers_bert_for_multiple_choice(multiple_choice_checkpoint):
    import torch

    model, directory = multiple_choice_checkpoint
    classifier_bias = model.classifier.bias.detach().numpy()
    assert abs(float(classifier_bias[0])) > 0.01  # the head (and every other parameter) is random
    data = choice_inputs()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(data["token_ids"], dtype=torch.long),
                         token_type_ids=torch.tensor(data["segment_ids"], dtype=torch.long),
                         attention_mask=torch.tensor(data["padding_mask"])).logits.numpy()
    choice = MultipleChoice.from_hf(str(directory), num_choices=4)
    assert choice.dropout == pytest.approx(0.3)
    actual = np.asarray(choice(data, training=False))
    assert actual.shape == (3, 4)
    assert np.abs(actual - expected).max() <= 1e-4, np.abs(actual - expected).max()
    assert np.abs(expected).max() > 0.5
    probabilities = choice.predict(data, verbose=0)
    np.testing.assert_allclose(probabilities, tf.nn.softmax(expected).numpy(), atol=1e-5)


def test_import_errors_name_the_tensor(multiple_choice_checkpoint, tmp_path, randomize_every_parameter):
    import transformers

    sequence = random_bert(transformers.BertForSequenceClassification, randomize_every_parameter, num_labels=3)
    sequence.save_pretrained(tmp_path / "sequence")
    with pytest.raises(CheckpointError, match="'classifier.weight'.*has 3 outputs.*Classifier.from_hf"):
        MultipleChoice.from_hf(str(tmp_path / "sequence"))
    model, _ = multiple_choice_checkpoint
    state = {name: value for name, value in model.state_dict().items() if name != "classifier.bias"}
    with pytest.raises(CheckpointError, match="has no 'classifier.bias'"):
        MultipleChoice.from_hf(state, config=model.config)
    state = dict(model.state_dict())
    state["classifier.weight"] = state["classifier.weight"][:, :32]
    with pytest.raises(CheckpointError, match=r"'classifier.weight'.*shape \(1, 32\).*needs \(1, 64\)"):
        MultipleChoice.from_hf(state, config=model.config)
    plain = random_bert(transformers.BertModel, randomize_every_parameter, seed=2)
    fresh = MultipleChoice.from_hf(plain, num_choices=3)  # no head in a BertModel: a fresh one
    assert fresh(choice_inputs(2, 3)).shape == (2, 3)


PARTS_OF_SPEECH = {"noun": "a noun", "verb": "a verb", "adj": "an adjective", "adv": "an adverb"}


@pytest.fixture(scope="module")
def definitions():
    """WordNet (word, definition) pairs by part of speech, from the embedded wordnet_glosses corpus: the
    first lemma of each synset line and its gloss up to the first quoted usage example; 700 of each."""
    by_part = {part: [] for part in PARTS_OF_SPEECH}
    for example in tfds.as_numpy(keras_lm.data.load("wordnet_glosses", split="train")):
        part = example["part_of_speech"].decode()
        if len(by_part[part]) >= 700:
            continue
        for line in example["text"].decode("utf-8").splitlines():
            if ": " in line:
                lemmas, gloss = line.split(": ", 1)
                by_part[part].append((lemmas.split(", ")[0], gloss.split('; "')[0].strip()))
    rng = random.Random(0)
    for entries in by_part.values():
        rng.shuffle(entries)
    return by_part


def definition_examples(by_part, start, stop, seed):
    """A word and its part of speech ("biodegrade", "as a verb") with four definitions: its own at a
    random position and one of a word of each other part of speech."""
    rng = random.Random(seed)
    examples = []
    for part, entries in sorted(by_part.items()):
        for word, definition in entries[start:stop]:
            others = [rng.choice(by_part[other])[1] for other in sorted(by_part) if other != part]
            label = rng.randrange(4)
            examples.append({"context": word, "question": f"as {PARTS_OF_SPEECH[part]}",
                             "choices": others[:label] + [definition] + others[label:], "label": label})
    rng.shuffle(examples)
    return examples


@pytest.fixture(scope="module")
def definition_parts(definitions):
    texts = [text for entries in definitions.values() for word, gloss in entries[:500] for text in (word, gloss)]
    vocabulary = keras_lm.tokenizers.WordPiece.train(
        tf.data.Dataset.from_tensor_slices(texts + ["as a noun verb an adjective adverb"]), vocabulary_size=800
    ).get_vocabulary()
    preprocessor = keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(vocabulary=vocabulary),
                                                       sequence_length=32)
    return vocabulary, preprocessor


def tiny_bert(vocabulary):
    return keras_lm.applications.Bert(None, vocabulary_size=len(vocabulary), num_layers=2, hidden_dim=64,
                                      num_heads=2, intermediate_dim=128, max_sequence_length=32)


@pytest.mark.slow  # long: run with -m slow
def test_learns_which_definition_fits_a_word_and_its_part_of_speech(definitions, definition_parts):
    """The task, on real WordNet text: given a word and its part of speech ("biodegrade", "as a verb"),
    pick its definition ("break down naturally through the action of biological agents") among four,
    the three others defining words of the three other parts of speech. Chance is 25%; a from-scratch
    2-layer BERT learns how definitions of verbs, nouns, adjectives and adverbs read from 2,000 training
    words in four epochs and is scored on 400 held-out words."""
    vocabulary, preprocessor = definition_parts
    model = MultipleChoice(tiny_bert(vocabulary), num_choices=4, preprocessor=preprocessor)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    train = model.dataset(definition_examples(definitions, 0, 500, seed=1), batch_size=32, shuffle=True, seed=0)
    held_out = model.dataset(definition_examples(definitions, 600, 700, seed=2), batch_size=100)
    before = model.evaluate(held_out, verbose=0, return_dict=True)["accuracy"]
    accuracies = []
    for _ in range(4):
        model.fit(train, epochs=1, verbose=0)
        accuracies.append(model.evaluate(held_out, verbose=0, return_dict=True)["accuracy"])
    # 400 held-out examples: chance is 25% +- 2.2% (one standard error); 34% is 4 standard errors above
    assert max(accuracies) >= 0.34 and max(accuracies) > before + 0.08, (before, accuracies)


@pytest.mark.slow  # long: run with -m slow
def test_raw_text_questions_and_keras_round_trip(definition_parts, tmp_path):
    vocabulary, preprocessor = definition_parts
    model = MultipleChoice(tiny_bert(vocabulary), num_choices=2, preprocessor=preprocessor)
    contexts = ["The man broke his toe.", "I emptied my pockets."]
    questions = ["What was the cause?", "What happened as a result?"]
    choices = [["He dropped a hammer on his foot.", "He got a hole in his sock."],
               ["I retrieved a ticket stub.", "I found a weapon."]]
    joined = [f"{c} {q}" for c, q in zip(contexts, questions)]
    probabilities = model.predict((joined, choices), verbose=0)
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-6)
    # packed as [CLS] context question [SEP] choice [SEP], one row per choice
    features = model.pack(contexts, choices, questions)
    first = preprocessor((tf.constant([joined[0]]), tf.constant([choices[0][1]])))
    width = int(tf.reduce_sum(tf.cast(first["padding_mask"], tf.int32)))
    np.testing.assert_array_equal(features["token_ids"][0, 1, :width], first["token_ids"][0, :width])
    np.testing.assert_array_equal(features["segment_ids"][0, 1, :width], first["segment_ids"][0, :width])
    logits = model(features, training=False)
    np.testing.assert_allclose(probabilities, tf.nn.softmax(logits).numpy(), atol=1e-5)
    with_questions = model.dataset([{"context": c, "question": q, "choices": ch, "label": 0}
                                    for c, q, ch in zip(contexts, questions, choices)], batch_size=2)
    packed, labels = next(iter(with_questions))
    np.testing.assert_array_equal(packed["token_ids"], features["token_ids"])
    assert labels.numpy().tolist() == [0, 0]

    path = str(tmp_path / "choice.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, MultipleChoice) and restored.num_choices == 2
    np.testing.assert_allclose(restored.predict((joined, choices), verbose=0), probabilities, atol=1e-6)
    model.backbone.save(str(tmp_path / "backbone.keras"))
    from_file = MultipleChoice.from_keras_file(str(tmp_path / "backbone.keras"), num_choices=2,
                                               preprocessor=preprocessor)
    rows = {name: tf.reshape(value, [-1, value.shape[-1]]) for name, value in features.items()}
    np.testing.assert_allclose(from_file.backbone(rows)["pooled_output"], model.backbone(rows)["pooled_output"],
                               atol=1e-6)
    config = model.get_config()
    assert config["num_choices"] == 2 and config["dropout"] == 0.1


@pytest.mark.slow  # long: run with -m slow
def test_from_saved_model_fine_tunes_the_reloaded_encoder(definition_parts, definitions, tmp_path):
    vocabulary, preprocessor = definition_parts
    backbone = tiny_bert(vocabulary)
    exported = keras_lm.export.encoder(backbone, preprocessor, str(tmp_path / "hub"))
    model = MultipleChoice.from_saved_model(exported, num_choices=4)
    examples = definition_examples(definitions, 0, 16, seed=3)
    contexts = [e["context"] for e in examples]
    choices = [e["choices"] for e in examples]
    in_memory = MultipleChoice(backbone, num_choices=4, preprocessor=preprocessor)
    in_memory.get_layer("choice_score").set_weights(model.get_layer("choice_score").get_weights())
    np.testing.assert_allclose(model.predict((contexts[:8], choices[:8]), verbose=0),
                               in_memory.predict((contexts[:8], choices[:8]), verbose=0), atol=1e-5)
    weights = model.backbone.trainable_weights
    before = [w.numpy().copy() for w in weights]
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    history = model.fit((contexts, choices), np.array([e["label"] for e in examples]), batch_size=16, epochs=2,
                        verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(not np.allclose(w.numpy(), b) for w, b in zip(weights, before))


def test_bad_inputs_are_clear_errors(definition_parts):
    vocabulary, preprocessor = definition_parts
    model = MultipleChoice(tiny_bert(vocabulary), num_choices=3, preprocessor=preprocessor)
    with pytest.raises(ValueError, match="example 0 has 2 choices; this model takes 3"):
        model.dataset([("a word", ["one", "two"], 0)])
    with pytest.raises(ValueError, match=r"choices must be tf.string \[batch, 3\]"):
        model.pack(["a word"], [["one", "two"]])
    with pytest.raises(ValueError, match="num_choices"):
        MultipleChoice(tiny_bert(vocabulary), num_choices=1)
    with pytest.raises(ValueError, match="needs a preprocessor"):
        MultipleChoice(tiny_bert(vocabulary), num_choices=3).pack(["a"], [["x", "y", "z"]])
