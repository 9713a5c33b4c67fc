"""SpanQA: question/context packing with character offsets, span decoding, HF parity, TFDS squad, learning."""
import itertools
import random
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.applications import CheckpointError
from keras_lm.evaluation.squad import squad_scores
from keras_lm.tasks.span_qa import SpanQA, decode_answers
from keras_lm.tokenizers.question_context import QuestionContextPreprocessor, tokenize_with_offsets

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["who", "what", "won", "the", "cup", "in", "café", "cafe", "au", "lait", "is", "a", "drink", "?", ".", ",",
         "!", "ana", "paris", "tokyo", "東", "京", "##s", "##e", "caf", "istanbul", "i", "😀", "year", "1990"]


def word_piece(**options):
    return keras_lm.tokenizers.WordPiece(SPECIALS + WORDS, **options)


def packer(sequence_length=32, max_question_length=6, doc_stride=4, **options):
    return QuestionContextPreprocessor(word_piece(**options), sequence_length=sequence_length,
                                       max_question_length=max_question_length, doc_stride=doc_stride)


# -- packing ------------------------------------------------------------------------------------------

def test_packing_ids_segments_and_offsets_index_the_original_context():
    """Lower-casing, accent stripping of a decomposed accent (2 code points -> 1), a deleted zero-width
    space, CJK splitting and a 4-byte emoji all change lengths: the offsets still index the original."""
    tokenizer = word_piece(clean_text=True)
    context = "ANA won the Cafe\u0301 au\u200blait in 東京 😀 1990s!"
    features = QuestionContextPreprocessor(tokenizer, sequence_length=40, max_question_length=6).pack(
        ["Who won?"], [context])
    ids = features["token_ids"].numpy()[0]
    vocabulary = tokenizer.get_vocabulary()
    tokens = [vocabulary[i] for i in ids[: int(features["padding_mask"].numpy()[0].sum())]]
    assert tokens == ["[CLS]", "who", "won", "?", "[SEP]", "ana", "won", "the", "cafe", "[UNK]", "in", "東", "京", "😀",
                      "1990", "##s", "!", "[SEP]"]
    segments = features["segment_ids"].numpy()[0][: len(tokens)].tolist()
    assert segments == [0] * 5 + [1] * (len(tokens) - 5)
    starts = features["start_offsets"].numpy()[0][: len(tokens)].tolist()
    ends = features["end_offsets"].numpy()[0][: len(tokens)].tolist()
    assert starts[:5] == ends[:5] == [-1] * 5 and starts[-1] == ends[-1] == -1
    spans = [context[s:e] for s, e in zip(starts[5:-1], ends[5:-1])]
    # "Cafe\u0301" (5 code points) is "cafe"; "au\u200blait" is one word (the zero-width space is deleted
    # inside it) that is not in the vocabulary; CJK ideographs are words of their own; both pieces of
    # "1990s" carry the word's span.
    assert spans == ["ANA", "won", "the", "Cafe\u0301", "au\u200blait", "in", "東", "京", "😀", "1990s", "1990s", "!"]
    assert starts[5:9] == [0, 4, 8, 12] and ends[8] == 17  # code points, not bytes
    assert starts[-5:-1] == [32, 34, 34, 39] and ends[-5:-1] == [33, 39, 39, 40]
    assert features["example_index"].numpy().tolist() == [0]


def test_offsets_are_word_spans_and_ids_equal_the_tokenizers_on_varied_strings():
    texts = [
        "The cup, in Paris!", "  leading and trailing  ", "", "東京is a drink", "İstanbul ISTANBUL",
        "tab\tnew\nline\r\nend", "nul\x00inside", "a\u00a0no-break space", "emoji😀inside cafés",
        "Çafé AU LAIT?!", "[MASK] written [SEP] as text", "x" * 120, "ΣΟΦΟΣ σοφος",
    ]
    for options in ({}, {"clean_text": True}, {"special_tokens_in_strings": True, "clean_text": True},
                    {"lowercase": False}):
        tokenizer = word_piece(**options)
        pieces = tokenize_with_offsets(tokenizer, tf.constant(texts))
        assert pieces.ragged(pieces.ids).to_list() == tokenizer(tf.constant(texts)).to_list(), options
        for text, starts, ends in zip(texts, pieces.ragged(pieces.starts).to_list(), pieces.ragged(pieces.ends).to_list()):
            for start, end in zip(starts, ends):
                assert 0 <= start < end <= len(text)
                word = text[start:end]
                assert not re.search(r"\s", word), (text, word)  # a span never crosses a word boundary
            assert starts == sorted(starts)


def _bert_windows(num_tokens, budget, stride):
    """BERT run_squad.py's doc-span loop."""
    spans, start = [], 0
    while start < num_tokens:
        length = min(num_tokens - start, budget)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, stride)
    return spans or [(0, 0)]


def test_long_contexts_give_bert_doc_span_windows_and_answer_positions():
    words = ["who", "won", "the", "cup", "in", "paris", "tokyo", "ana", "lait", "drink"]
    rng = random.Random(3)
    context = " ".join(rng.choice(words) for _ in range(41))
    question = "who won the cup?"
    # the answer: words 20..22 of the context
    token_starts = [m.start() for m in re.finditer(r"\S+", context)]
    answer_start = token_starts[20]
    answer_text = context[answer_start: token_starts[22] + len(context[token_starts[22]:].split()[0])]
    preprocessor = packer(sequence_length=20, max_question_length=6, doc_stride=5)
    features = preprocessor.pack([question, "who?"], [context, "ana won"], answer_starts=[answer_start, 0],
                                 answer_texts=[answer_text, "ana won"])
    budget = 20 - 3 - 5  # [CLS] who won the cup ? [SEP] ... [SEP]
    windows = _bert_windows(41, budget, 5)
    assert len(windows) == 1 + int(np.ceil((41 - budget) / 5))
    example = features["example_index"].numpy().tolist()
    assert example == [0] * len(windows) + [1]
    ids, starts = features["token_ids"].numpy(), features["start_offsets"].numpy()
    all_context_ids = preprocessor.tokenizer(context).numpy().tolist()
    for row, (start, length) in enumerate(windows):
        assert ids[row, 7: 7 + length].tolist() == all_context_ids[start: start + length]
        assert ids[row, 7 + length] == 3 and ids[row, :7].tolist() == [2, 5, 7, 8, 9, 18, 3]
        assert starts[row, 7: 7 + length].tolist() == token_starts[start: start + length]
        contains = start <= 20 and 22 < start + length
        expected = (7 + 20 - start, 7 + 22 - start) if contains else (0, 0)
        assert (features["start_positions"].numpy()[row], features["end_positions"].numpy()[row]) == expected
    assert sum(features["start_positions"].numpy()[: len(windows)] > 0) >= 1
    # the second pair: "ana won" from character 0 is tokens 0..1 of its context, after [CLS] who ? [SEP]
    assert (features["start_positions"].numpy()[-1], features["end_positions"].numpy()[-1]) == (4, 5)


def test_answer_positions_from_character_offsets_mid_word_and_without_answer():
    preprocessor = packer(sequence_length=24)
    context = "Ana drinks cafe au lait in Paris."
    features = preprocessor.pack(
        ["what?", "what?", "what?", "what?"], [context] * 4,
        # "Paris" exactly; "aris" starting mid-word (SQuAD answers sometimes do); no answer (-1); empty answer
        answer_starts=[27, 28, -1, 5], answer_texts=["Paris", "aris", "", ""])
    # [CLS] what ? [SEP] ana drink ##s cafe au lait in paris . [SEP]: "paris" is token 11
    assert features["start_positions"].numpy().tolist() == [11, 11, 0, 0]
    assert features["end_positions"].numpy().tolist() == [11, 11, 0, 0]
    # "cafe au lait" spans three tokens
    both = preprocessor.pack(["what?"], [context], answer_starts=[11], answer_texts=["cafe au lait"])
    assert (int(both["start_positions"][0]), int(both["end_positions"][0])) == (7, 9)


def test_packing_in_tf_data_equals_eager_packing():
    preprocessor = packer()
    questions, contexts = ["who won the cup?", "what is café?"], ["Ana won the cup in Tokyo.", "a drink in Paris"]
    eager = preprocessor.pack(questions, contexts)
    batch = next(iter(tf.data.Dataset.from_tensor_slices((questions, contexts)).batch(2).map(
        lambda q, c: preprocessor((q, c)))))  # a graph
    assert set(batch) == set(eager)
    for name in eager:
        np.testing.assert_array_equal(eager[name].numpy(), batch[name].numpy())


def test_packing_refuses_bad_input_with_one_clear_error():
    with pytest.raises(ValueError, match="sequence_length=10 leaves no room"):
        QuestionContextPreprocessor(word_piece(), sequence_length=10, max_question_length=8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one context per question"):
        packer().pack(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="both answer_starts and answer_texts"):
        packer().pack(["a"], ["c"], answer_starts=[0])


# -- decoding ----------------------------------------------------------------------------------------

def _reference_answers(start_logits, end_logits, starts, ends, example, contexts, max_length, n_best):
    """BERT run_squad.py's n-best search over context tokens, written with Python loops."""
    best = {}
    for row in range(start_logits.shape[0]):
        context_tokens = [t for t in range(start_logits.shape[1]) if starts[row, t] >= 0]
        top_starts = sorted(context_tokens, key=lambda t: -start_logits[row, t])[:n_best]
        top_ends = sorted(context_tokens, key=lambda t: -end_logits[row, t])[:n_best]
        for i, j in itertools.product(top_starts, top_ends):
            if i <= j and j - i + 1 <= max_length:
                score = start_logits[row, i] + end_logits[row, j]
                key = example[row]
                if key not in best or score > best[key][0]:
                    best[key] = (score, starts[row, i], ends[row, j])
    answers = []
    for index, context in enumerate(contexts):
        if index not in best:
            answers.append(("", 0, 0, -np.inf))
        else:
            score, start, end = best[index]
            answers.append((context[start:end], start, end, score))
    return answers


@pytest.mark.parametrize("n_best, max_length", [(3, 4), (40, 2), (40, 40)])
def test_decoding_equals_the_n_best_reference_on_random_logits(n_best, max_length):
    preprocessor = packer(sequence_length=16, max_question_length=4, doc_stride=3)
    words = ["the", "cup", "in", "paris", "ana", "won", "café", "東", "😀"]
    rng = np.random.default_rng(0)
    contexts = [" ".join(rng.choice(words, size=n)) for n in (3, 17, 0, 9, 25)]
    questions = ["who won?"] * len(contexts)
    features = preprocessor.pack(questions, contexts)
    shape = features["token_ids"].shape
    start_logits = rng.normal(size=shape).astype("float32")
    end_logits = rng.normal(size=shape).astype("float32")
    decoded = decode_answers(start_logits, end_logits, features, contexts, max_length, n_best)
    expected = _reference_answers(start_logits, end_logits, features["start_offsets"].numpy(),
                                  features["end_offsets"].numpy(), features["example_index"].numpy(), contexts,
                                  max_length, n_best)
    assert len(set(features["example_index"].numpy().tolist())) == 5 and shape[0] > 5  # several windows
    for i, (text, start, end, score) in enumerate(expected):
        assert decoded["answer"].numpy()[i].decode() == text
        assert (int(decoded["start"][i]), int(decoded["end"][i])) == (start, end)
        assert float(decoded["score"][i]) == pytest.approx(score, abs=1e-5) if np.isfinite(score) else \
            float(decoded["score"][i]) == -np.inf
        if np.isfinite(score):
            assert len(preprocessor.tokenizer(text).numpy()) <= max_length + 2  # partial-word pieces aside
    assert decoded["answer"].numpy()[2] == b"" and float(decoded["score"][2]) == -np.inf  # empty context


# -- the task ------------------------------------------------------------------------------------------

def tiny_bert(vocabulary_size, length=32):
    return keras_lm.applications.Bert(None, vocabulary_size=vocabulary_size, num_layers=1, hidden_dim=32,
                                      num_heads=2, intermediate_dim=64, max_sequence_length=length)


def test_keras_file_round_trip_keeps_outputs_preprocessor_and_answers(tmp_path):
    qa = SpanQA(tiny_bert(len(SPECIALS + WORDS)), packer(), max_answer_length=5, n_best_size=7)
    questions, contexts = ["who won the cup?"], ["Ana won the cup in Tokyo in 1990."]
    expected = qa.predict_answers(questions, contexts)
    path = str(tmp_path / "qa.keras")
    qa.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, SpanQA) and isinstance(restored.preprocessor, QuestionContextPreprocessor)
    assert (restored.max_answer_length, restored.n_best_size, restored.preprocessor.doc_stride) == (5, 7, 4)
    assert restored.predict_answers(questions, contexts) == expected
    assert contexts[0][expected[0]["start"]: expected[0]["end"]] == expected[0]["text"]
    qa.backbone.save(str(tmp_path / "backbone.keras"))
    from_file = SpanQA.from_keras_file(str(tmp_path / "backbone.keras"), preprocessor=packer())
    features = {k: v for k, v in packer().pack(questions, contexts).items() if k in qa.backbone.input}
    np.testing.assert_allclose(from_file.backbone(features)["sequence_output"],
                               qa.backbone(features)["sequence_output"], atol=1e-6)
    with pytest.raises(ValueError, match="needs a preprocessor"):
        SpanQA(tiny_bert(len(SPECIALS + WORDS))).predict_answers(questions, contexts)


def test_from_saved_model_reloads_an_encoder_export_trainably(tmp_path):
    backbone = tiny_bert(len(SPECIALS + WORDS))
    in_memory = SpanQA(backbone, packer())
    directory = str(tmp_path / "hub")
    keras_lm.export.encoder(backbone, keras_lm.tokenizers.BertPreprocessor(word_piece(), sequence_length=32), directory)
    reloaded = SpanQA.from_saved_model(directory, preprocessor=packer())
    head = reloaded.get_layer("qa_outputs")
    head.set_weights(in_memory.get_layer("qa_outputs").get_weights())
    questions, contexts = ["who won the cup?"], ["Ana won the cup in Tokyo in 1990."]
    features = {k: v for k, v in packer().pack(questions, contexts).items() if k in backbone.input}
    for name, value in in_memory(features).items():
        np.testing.assert_allclose(reloaded(features)[name], value, atol=1e-5)
    (expected,), (answer,) = in_memory.predict_answers(questions, contexts), reloaded.predict_answers(questions, contexts)
    assert (answer["text"], answer["start"], answer["end"]) == (expected["text"], expected["start"], expected["end"])
    assert answer["score"] == pytest.approx(expected["score"], abs=1e-5)
    reloaded.compile(optimizer=keras_lm.training.adamw(1e-3))
    before = [w.numpy().copy() for w in reloaded.backbone.trainable_weights]
    reloaded.fit(reloaded.dataset([("who won?", "Ana won the cup.", "Ana", 0)] * 4, batch_size=4), verbose=0)
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, reloaded.backbone.trainable_weights))


def test_tfds_squad_schema_trains_on_mocked_examples():
    """TFDS 'squad' examples (id, title, context, question, answers {text, answer_start}) from
    tfds.testing.mock_data (offline, random strings) go through dataset() and a fit step."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        squad = tfds.load("squad", split="train")
    spec = squad.element_spec
    assert {"id", "title", "context", "question", "answers"} <= set(spec)
    assert set(spec["answers"]) == {"text", "answer_start"}
    qa = SpanQA(tiny_bert(len(SPECIALS + WORDS)), packer(sequence_length=32))
    qa.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = qa.dataset(squad, batch_size=4)
    features, labels = next(iter(data))
    assert set(features) == {"token_ids", "segment_ids", "padding_mask"} and set(labels) == {"start_positions",
                                                                                              "end_positions"}
    history = qa.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_loss_is_the_mean_of_start_and_end_cross_entropies():
    qa = SpanQA(tiny_bert(len(SPECIALS + WORDS)), packer())
    qa.compile(optimizer="sgd")
    features = qa.preprocessor.pack(["who won?", "what?"], ["Ana won the cup.", "a drink"],
                                    answer_starts=[0, 2], answer_texts=["Ana", "drink"])
    inputs = {k: features[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    outputs = qa(inputs)
    labels = {"start_positions": features["start_positions"], "end_positions": features["end_positions"]}
    log_start = tf.nn.log_softmax(outputs["start_logits"]).numpy()
    log_end = tf.nn.log_softmax(outputs["end_logits"]).numpy()
    rows = np.arange(2)
    expected = -0.5 * (log_start[rows, labels["start_positions"].numpy()].mean()
                       + log_end[rows, labels["end_positions"].numpy()].mean())
    assert float(qa.compute_loss(inputs, labels, outputs)) == pytest.approx(expected, rel=1e-5)
    as_pair = (labels["start_positions"], labels["end_positions"])
    assert float(qa.compute_loss(inputs, as_pair, outputs)) == pytest.approx(expected, rel=1e-5)


# -- Hugging Face checkpoints --------------------------------------------------------------------------

CONFIG = dict(vocab_size=len(SPECIALS + WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, max_position_embeddings=40, hidden_act="gelu")


def _random_hf(model_class, randomize_every_parameter, seed=0, **config):
    import transformers

    model = model_class(transformers.BertConfig(**{**CONFIG, **config})).eval()
    randomize_every_parameter(model, seed=seed, is_norm_scale=lambda name: name.endswith("LayerNorm.weight"))
    return model


@pytest.fixture
def saved_qa_checkpoint(tmp_path, randomize_every_parameter):
    import transformers

    model = _random_hf(transformers.BertForQuestionAnswering, randomize_every_parameter)
    directory = tmp_path / "bert_qa"
    model.save_pretrained(directory)
    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("\n".join(SPECIALS + WORDS) + "\n", encoding="utf-8")
    transformers.BertTokenizer(vocab=str(vocabulary), do_lower_case=True).save_pretrained(str(directory))
    return model, directory


def test_from_hf_matches_bert_for_question_answering_and_its_tokenizer(saved_qa_checkpoint):
    import torch
    import transformers

    model, directory = saved_qa_checkpoint
    qa = SpanQA.from_hf(str(directory), sequence_length=40)
    assert qa.untrained_layers == () and qa.preprocessor.sequence_length == 40
    questions = ["Who won the cup?", "What is café au lait?"]
    contexts = ["Ana won the cup in Tokyo, in 1990!", "A drink in Paris: cafe\u0301 au lait... 東京 😀"]
    features = qa.preprocessor.pack(questions, contexts)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    encoded = hf_tokenizer(questions, contexts, padding="max_length", max_length=40, return_offsets_mapping=True)
    assert features["token_ids"].numpy().tolist() == encoded["input_ids"]
    assert features["segment_ids"].numpy().tolist() == encoded["token_type_ids"]
    assert features["padding_mask"].numpy().astype(int).tolist() == encoded["attention_mask"]
    for row in range(2):  # our spans are whole words: each holds the span HF gives the piece
        for position, (hf_start, hf_end) in enumerate(encoded["offset_mapping"][row]):
            start, end = int(features["start_offsets"][row, position]), int(features["end_offsets"][row, position])
            if start >= 0:
                assert start <= hf_start < hf_end <= end
    inputs = {k: features[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    outputs = qa(inputs)
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(encoded["input_ids"]),
                         token_type_ids=torch.tensor(encoded["token_type_ids"]),
                         attention_mask=torch.tensor(encoded["attention_mask"]))
    mask = features["padding_mask"].numpy()
    for name in ("start_logits", "end_logits"):
        reference = getattr(expected, name).numpy()
        difference = np.abs(outputs[name].numpy() - reference)[mask].max()
        assert difference <= 1e-4, (name, difference)
        assert np.abs(reference).max() > 0.5  # not a degenerate comparison
    answers = qa.predict_answers(questions, contexts)
    for answer, context in zip(answers, contexts):
        assert context[answer["start"]: answer["end"]] == answer["text"]


def test_from_hf_without_a_qa_head_and_bad_checkpoints_give_clear_errors(saved_qa_checkpoint, tmp_path,
                                                                         randomize_every_parameter):
    import transformers

    model, directory = saved_qa_checkpoint
    backbone_only = _random_hf(transformers.BertModel, randomize_every_parameter, seed=1)
    qa = SpanQA.from_hf(backbone_only)
    assert qa.untrained_layers == ("qa_outputs",) and qa.preprocessor is None
    config = model.config
    state = dict(model.state_dict())
    wrong = {**state, "qa_outputs.weight": state["qa_outputs.weight"][:1]}
    with pytest.raises(CheckpointError, match=r"'qa_outputs.weight'.*shape \(1, 32\).*needs \(2, 32\)"):
        SpanQA.from_hf(wrong, config=config)
    without_bias = {k: v for k, v in state.items() if k != "qa_outputs.bias"}
    with pytest.raises(CheckpointError, match="no 'qa_outputs.bias'"):
        SpanQA.from_hf(without_bias, config=config)
    missing = {k: v for k, v in state.items() if k != "bert.encoder.layer.1.output.dense.weight"}
    with pytest.raises(CheckpointError, match="bert.encoder.layer.1.output.dense.weight"):
        SpanQA.from_hf(missing, config=config)
    with pytest.raises(CheckpointError, match="model_type='gpt2'"):
        SpanQA.from_hf(state, config={**config.to_dict(), "model_type": "gpt2"})


# -- learning on real text --------------------------------------------------------------------------------

ENTRY = re.compile(r"^([a-z]+)(?:, [^:]*)?: ([^;.\"]+)")


def _gloss_examples(split, documents):
    """WordNet definitions as reading comprehension: the context is two neighbouring entries "word: gloss."
    of one wordnet_glosses document (related senses), the question is one of the two words and the answer
    is its gloss (up to its first ';', 2-8 words). Each context is asked both ways, so the answer depends
    on the question: find the entry whose word is the question, return the text between its ':' and '.'."""
    examples = []
    for document in keras_lm.data.load("wordnet_glosses", split=split).take(documents):
        entries = []
        for line in document["text"].numpy().decode().split("\n"):
            found = ENTRY.match(line)
            if found and 2 <= len(found.group(2).split()) <= 8:
                entries.append((found.group(1), found.group(2).strip()))
        for first, second in zip(entries[::2], entries[1::2]):
            if first[0] == second[0]:
                continue
            context = f"{first[0]}: {first[1]}. {second[0]}: {second[1]}."
            for word, gloss in (first, second):
                start = context.index(f"{word}: {gloss}.") + len(word) + 2
                examples.append((word, context, gloss, start))
    return examples


@pytest.mark.slow  # long: run with -m slow
def test_learns_to_answer_definition_questions_on_wordnet_glosses():
    train = _gloss_examples("train", 120)
    held_out = _gloss_examples("validation", 40)[:64]
    assert len(train) > 1000 and len(held_out) == 64
    texts = tf.data.Dataset.from_tensor_slices([context for _, context, _, _ in train])
    tokenizer = keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=800)
    preprocessor = QuestionContextPreprocessor(tokenizer, sequence_length=64, max_question_length=8, doc_stride=32)
    encoder = keras_lm.applications.Bert(None, vocabulary_size=tokenizer.vocabulary_size(), num_layers=2,
                                         hidden_dim=64, num_heads=4, intermediate_dim=128, max_sequence_length=64,
                                         dropout=0.0)
    qa = SpanQA(encoder, preprocessor, max_answer_length=16)

    def scores(examples):
        answers = qa.predict_answers([q for q, _, _, _ in examples], [c for _, c, _, _ in examples])
        for answer, (_, context, _, _) in zip(answers, examples):
            assert context[answer["start"]: answer["end"]] == answer["text"]
        return squad_scores([a["text"] for a in answers], [[gloss] for _, _, gloss, _ in examples])

    before = scores(held_out)
    qa.compile(optimizer=keras.optimizers.Adam(3e-3))
    qa.fit(qa.dataset(train, batch_size=32, shuffle=True, seed=0), epochs=3, verbose=0)
    after = scores(held_out)
    assert before["exact_match"] < 10
    # measured: exact match 1.6 -> 31, F1 26 -> 56 on the held-out documents
    assert after["exact_match"] >= before["exact_match"] + 20, (before, after)
    assert after["f1"] >= before["f1"] + 20, (before, after)
