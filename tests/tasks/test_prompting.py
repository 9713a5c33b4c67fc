"""Prompt-based classification: cloze scores from masked-LM logits, in-context scores from causal-LM log-probs."""
import keras
import keras_hub
import numpy as np
import pytest

import keras_lm
from keras_lm.tasks.prompting import ClozeClassifier, ClozePreprocessor, InContextClassifier

TEMPLATE = "{text} It was [MASK]."
VERBALIZER = {"negative": ["bad", "dull"], "positive": ["good", "great"]}
TEXTS = ["A gripping, beautifully acted film.", "Dull, lifeless and far too long.",
         "The plot is thin but the cast is charming."]


def randomize(model, seed=0, std=0.2):
    """Every variable drawn at random (biases, norm scales and offsets too)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        center = 1.0 if variable.path.endswith(("gamma", "scale")) else 0.0
        variable.assign(center + std * rng.standard_normal(variable.shape).astype(variable.dtype))


def log_softmax(logits):
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def tokenizer():
    """A real WordPiece vocabulary (under 1,000 tokens) trained on 600 movie_snippets sentences."""
    texts = keras_lm.data.load("movie_snippets", split="train").map(lambda ex: ex["text"]).take(600)
    vocabulary = keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=1000).get_vocabulary()
    assert all(word in vocabulary for words in VERBALIZER.values() for word in words)
    return keras_lm.tokenizers.WordPiece(vocabulary)


@pytest.fixture(scope="module")
def masked_lm(tokenizer):
    encoder = keras_lm.models.Encoder(vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=4,
                                      hidden_dim=32, intermediate_dim=64, max_sequence_length=32)
    model = keras_lm.pretraining.MaskedLM(encoder, max_predictions=1)
    randomize(model)
    return model


def ids(tokenizer, text):
    return tokenizer(text).numpy().tolist()


# --- cloze -------------------------------------------------------------------------------------
def test_cloze_packing_puts_the_text_and_the_mask_where_the_template_says(tokenizer):
    packer = ClozePreprocessor(tokenizer, TEMPLATE, sequence_length=32)
    out = {name: value.numpy() for name, value in packer(TEXTS[:2]).items()}
    for row, text in enumerate(TEXTS[:2]):
        expected = ([tokenizer.cls_id] + ids(tokenizer, text) + ids(tokenizer, "It was") + [tokenizer.mask_id]
                    + ids(tokenizer, ".") + [tokenizer.sep_id])
        assert out["token_ids"][row].tolist() == expected + [tokenizer.pad_id] * (32 - len(expected))
        assert out["mask_positions"][row].tolist() == [expected.index(tokenizer.mask_id)]
        assert out["padding_mask"][row].tolist() == [True] * len(expected) + [False] * (32 - len(expected))
        # The same ids as the filled template tokenized whole (with [MASK] read as the special token).
        whole = keras_lm.tokenizers.WordPiece(tokenizer.get_vocabulary(), special_tokens_in_strings=True)
        assert expected[1:-1] == ids(whole, TEMPLATE.replace("{text}", text))
    assert not out["segment_ids"].any()

    short = ClozePreprocessor(tokenizer, TEMPLATE, sequence_length=10)  # the text is cut, never the mask
    row = short(TEXTS[1])
    kept = ids(tokenizer, TEXTS[1])[: 10 - 6]
    assert row["token_ids"].numpy().tolist() == ([tokenizer.cls_id] + kept + ids(tokenizer, "It was")
                                                 + [tokenizer.mask_id] + ids(tokenizer, ".") + [tokenizer.sep_id])
    assert int(row["mask_positions"][0]) == 7

    mask_first = ClozePreprocessor(tokenizer, "[MASK]: {text}", sequence_length=16)(TEXTS[:2])
    assert mask_first["mask_positions"].numpy().tolist() == [[1], [1]]
    assert (mask_first["token_ids"].numpy()[:, 1] == tokenizer.mask_id).all()


def verbalizer_scores(logits, tokenizer, reduction=np.mean):
    """Each class's mean (max) logit of its verbalizer words, gathered by hand."""
    columns = [[tokenizer.token_to_id(word) for word in words] for words in VERBALIZER.values()]
    return np.stack([reduction(logits[:, c], axis=-1) for c in columns], axis=-1)


def test_cloze_scores_are_the_verbalizer_logits_at_the_mask(masked_lm, tokenizer):
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    cloze = ClozeClassifier(masked_lm, preprocessor, template=TEMPLATE, verbalizer=VERBALIZER)
    features = cloze.preprocessor(TEXTS)
    logits = np.asarray(masked_lm(features)["mlm"])[:, 0, :]  # [3, V] at each row's mask
    expected = verbalizer_scores(logits, tokenizer)
    scores = cloze.predict(TEXTS, verbose=0)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert (scores.argmax(-1) == expected.argmax(-1)).all() and np.ptp(expected, axis=-1).min() > 1e-3
    assert cloze.label_names == ["negative", "positive"]

    highest = ClozeClassifier(masked_lm, preprocessor, template=TEMPLATE, verbalizer=VERBALIZER, reduction="max")
    np.testing.assert_allclose(highest(features), verbalizer_scores(logits, tokenizer, np.max), atol=1e-5)


def test_cloze_on_an_imported_hf_bert_head_matches_transformers(tokenizer, tmp_path, randomize_every_parameter):
    import torch
    import transformers

    config = transformers.BertConfig(vocab_size=tokenizer.vocabulary_size(), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
    reference = transformers.BertForMaskedLM(config).eval()
    randomize_every_parameter(reference, seed=3, is_norm_scale=lambda name: name.endswith("LayerNorm.weight"))
    reference.save_pretrained(tmp_path)
    tokenizer.save_vocabulary(tmp_path / "vocab.txt")
    masked_lm = keras_lm.pretraining.MaskedLM.from_hf(tmp_path, max_predictions=1)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(str(tmp_path / "vocab.txt")),
                                                        sequence_length=32)
    cloze = ClozeClassifier(masked_lm, preprocessor, template=TEMPLATE, verbalizer=VERBALIZER)
    features = {name: value.numpy() for name, value in cloze.preprocessor(TEXTS).items()}
    with torch.no_grad():
        logits = reference(input_ids=torch.tensor(features["token_ids"], dtype=torch.long),
                           token_type_ids=torch.tensor(features["segment_ids"], dtype=torch.long),
                           attention_mask=torch.tensor(features["padding_mask"].astype("int64"))).logits.numpy()
    at_mask = logits[np.arange(len(TEXTS)), features["mask_positions"][:, 0]]
    expected = verbalizer_scores(at_mask, tokenizer)
    scores = np.asarray(cloze(features))
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert (scores.argmax(-1) == expected.argmax(-1)).all() and np.abs(expected).max() > 0.5


def test_calibration_makes_a_content_free_input_score_every_class_alike(masked_lm, tokenizer):
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    cloze = ClozeClassifier(masked_lm, preprocessor, template=TEMPLATE, verbalizer=VERBALIZER)
    features = cloze.preprocessor(["N/A"] + TEXTS)
    raw = np.asarray(cloze(features))
    bias = cloze.calibrate(["N/A"])  # through predict on the raw string
    np.testing.assert_allclose(bias, -log_softmax(raw[0]), atol=1e-5)
    calibrated = np.asarray(cloze(features))
    np.testing.assert_allclose(calibrated[0, 0], calibrated[0, 1], atol=1e-5)
    np.testing.assert_allclose(calibrated, raw + bias, atol=1e-5)  # one fixed shift per class
    cloze.calibrate(())
    np.testing.assert_allclose(np.asarray(cloze(features)), raw, atol=1e-6)


def test_pet_fit_on_k_real_examples_trains_the_masked_lm_and_saves(tokenizer, movie_sentences, tmp_path):
    encoder = keras_lm.models.Encoder(vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=4,
                                      hidden_dim=32, intermediate_dim=64, max_sequence_length=32, dropout=0.0)
    masked_lm = keras_lm.pretraining.MaskedLM(encoder, max_predictions=1)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    cloze = ClozeClassifier(masked_lm, preprocessor, template=TEMPLATE, verbalizer=VERBALIZER)
    shots = [row for row in movie_sentences if row[1] == 0][:4] + [row for row in movie_sentences if row[1] == 1][:4]
    texts, labels = [t for t, _ in shots], np.array([y for _, y in shots])
    bias = np.array([0.25, -0.25], "float32")  # as calibrate() would set it
    cloze.scorer.class_bias.assign(bias)
    pooler = [np.asarray(w).copy() for w in encoder.pooler.weights]
    embedding = np.asarray(encoder.token_embedding.embeddings).copy()
    features = cloze.preprocessor(texts)

    def loss_and_accuracy():
        scores = np.asarray(cloze(features))
        loss = -log_softmax(scores)[np.arange(len(labels)), labels].mean()
        return loss, float((scores.argmax(-1) == labels).mean())

    cloze.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = loss_and_accuracy()
    cloze.fit(cloze.preprocess_data(texts, labels, batch_size=8).cache().repeat(), steps_per_epoch=25, epochs=1,
              shuffle=False, verbose=0)
    after = loss_and_accuracy()
    assert after[0] < 0.3 * before[0] and after[1] == 1.0, (before, after)
    np.testing.assert_array_equal(np.asarray(cloze.scorer.class_bias), bias)  # calibration stays fixed
    for weight, start in zip(encoder.pooler.weights, pooler):  # no objective reads the pooler
        np.testing.assert_array_equal(np.asarray(weight), start)
    assert np.abs(np.asarray(encoder.token_embedding.embeddings) - embedding).max() > 1e-3

    cloze.save(tmp_path / "cloze.keras")
    reloaded = keras.saving.load_model(tmp_path / "cloze.keras")
    assert isinstance(reloaded, ClozeClassifier) and reloaded.template == TEMPLATE
    np.testing.assert_allclose(np.asarray(reloaded(features)), np.asarray(cloze(features)), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(reloaded.scorer.class_bias), bias)


def test_cloze_errors_name_the_template_or_the_word(masked_lm, tokenizer):
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=12)
    long_template = "After all is said and done, the critics and I agree that it was [MASK]. {text}"
    with pytest.raises(ValueError, match=r"puts \[MASK\] at position \d+ even for an empty text, beyond "
                                         "sequence_length=12"):
        ClozeClassifier(masked_lm, preprocessor, template=long_template, verbalizer=VERBALIZER)
    with pytest.raises(ValueError, match="leaving no room for the text"):
        ClozePreprocessor(tokenizer, "It was [MASK] , and the film was , I say : {text}", sequence_length=12)
    with pytest.raises(ValueError, match=r"must hold \[MASK\] exactly once"):
        ClozePreprocessor(tokenizer, "{text} It was good.")
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    with pytest.raises(ValueError, match="Verbalizer word 'ξψζ' .*not in the tokenizer's vocabulary"):
        ClozeClassifier(masked_lm, preprocessor, verbalizer={"negative": ["bad"], "positive": ["ξψζ"]})
    pieces = [w for w in ("unwatchable", "masterpiece", "mesmerizing", "unbearable", "exhilarating")
              if len(ids(tokenizer, w)) > 1 and tokenizer.unk_id not in ids(tokenizer, w)]
    with pytest.raises(ValueError, match=f"Verbalizer word '{pieces[0]}' .*is [2-9] tokens"):
        ClozeClassifier(masked_lm, preprocessor, verbalizer={"negative": ["bad"], "positive": [pieces[0]]})
    with pytest.raises(TypeError, match="needs a keras_lm masked LM"):
        ClozeClassifier(masked_lm.backbone, preprocessor)


# --- in context --------------------------------------------------------------------------------
ICL_TEMPLATE = "R: {text}\nS: {label}"
LABEL_WORDS = {"negative": "bad", "positive": "good"}
DEMOS = [("A dull mess.", 0), ("Great fun!", "positive")]


CONTEXT = 128


def byte_tokenizer():
    return keras_hub.tokenizers.ByteTokenizer(lowercase=False)


def token_by_token(causal_lm, prompt, label, reduction="sum"):
    """The label's log-probability after the prompt, one model call per label token."""
    total = 0.0
    for j, token in enumerate(label):
        logits = np.asarray(causal_lm(np.array([prompt + label[:j]], "int32")))[0, -1]
        total += log_softmax(logits)[token]
    return total if reduction == "sum" else total / len(label)


@pytest.fixture(scope="module")
def gpt():
    backbone = keras_lm.applications.Gpt2("tiny", vocabulary_size=256, max_sequence_length=CONTEXT)
    randomize(backbone, seed=1, std=0.1)
    return keras_lm.tasks.CausalLM(backbone, byte_tokenizer(), start_token_id=2)


def test_in_context_scores_equal_token_by_token_log_probs(gpt):
    icl = InContextClassifier(gpt, template=ICL_TEMPLATE, label_words=LABEL_WORDS, examples=DEMOS)
    assert icl.demonstration(*DEMOS[1]) == "R: Great fun!\nS: good\n\n" and icl.shots_used == 2
    prompt, labels = icl.encode(TEXTS[0])
    tokens = [list(text.encode()) for text in ("R: A dull mess.\nS: bad\n\n", "R: Great fun!\nS: good\n\n",
                                                f"R: {TEXTS[0]}\nS:")]
    assert prompt == [2] + tokens[0] + tokens[1] + tokens[2] and labels == [list(b" bad"), list(b" good")]
    scores = icl.scores(TEXTS[:2])
    expected = np.array([[token_by_token(gpt, icl.encode(text)[0], label) for label in icl.label_ids]
                         for text in TEXTS[:2]])
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert (scores.argmax(-1) == expected.argmax(-1)).all() and np.abs(np.diff(expected)).min() > 1e-3
    mean = InContextClassifier(gpt, template=ICL_TEMPLATE, label_words=LABEL_WORDS, examples=DEMOS,
                               reduction="mean", batch_size=1).scores(TEXTS[:2])
    np.testing.assert_allclose(mean, expected / np.array([4, 5]), atol=1e-4)


def test_zero_shot_on_a_rotary_grouped_query_decoder_without_start_token():
    backbone = keras_lm.models.Decoder(vocabulary_size=256, num_layers=2, num_heads=4, num_key_value_heads=2,
                                       hidden_dim=32, intermediate_dim=48, max_sequence_length=64,
                                       position_embedding="rotary", normalization="rms_norm", feed_forward="gated",
                                       activation="silu", use_bias=False, tie_word_embeddings=False)
    randomize(backbone, seed=2, std=0.1)
    icl = InContextClassifier(backbone, tokenizer=byte_tokenizer(), template=ICL_TEMPLATE, label_words=LABEL_WORDS)
    assert icl.start_ids == [] and icl.shots_used == 0
    causal_lm = keras_lm.tasks.CausalLM(backbone)
    expected = np.array([[token_by_token(causal_lm, icl.encode(text)[0], label) for label in icl.label_ids]
                         for text in TEXTS[:2]])
    np.testing.assert_allclose(icl.scores(TEXTS[:2]), expected, atol=1e-4)
    with pytest.raises(ValueError, match="add_start_token=True, but"):
        InContextClassifier(backbone, tokenizer=byte_tokenizer(), add_start_token=True)


def test_demonstrations_beyond_the_context_are_dropped_from_the_front(gpt):
    demos = [(f"Film number {i} was fine.", i % 2) for i in range(6)]
    icl = InContextClassifier(gpt, template=ICL_TEMPLATE, label_words=LABEL_WORDS, examples=demos,
                              max_query_tokens=16)
    pieces = [list(icl.demonstration(*demo).encode()) for demo in demos]
    room = CONTEXT - 16 - 5 - 1  # context - query room - longest label (" good") - start token
    kept = max(n for n in range(7) if sum(map(len, pieces[6 - n:])) <= room)
    assert 0 < icl.shots_used == kept < 6
    prompt, _ = icl.encode("Fine.")
    assert prompt[:1 + sum(map(len, pieces[6 - kept:]))] == [2] + [t for p in pieces[6 - kept:] for t in p]
    long_prompt, _ = icl.encode("word " * 40)
    assert len(long_prompt) == CONTEXT - 5 and long_prompt[-3:] == list(b"\nS:")  # the query keeps its end
    assert icl.scores(["Fine.", "word " * 40]).shape == (2, 2)


def test_in_context_calibration_and_errors(gpt):
    icl = InContextClassifier(gpt, template=ICL_TEMPLATE, label_words=LABEL_WORDS, examples=DEMOS)
    raw = icl.scores(["N/A"])[0]
    np.testing.assert_allclose(icl.calibrate(["N/A"]), -log_softmax(raw), atol=1e-5)
    calibrated = icl.scores(["N/A"])[0]
    np.testing.assert_allclose(calibrated[0], calibrated[1], atol=1e-5)
    with pytest.raises(ValueError, match=r"must hold \{label\} exactly once"):
        InContextClassifier(gpt, template="R: {text}", label_words=LABEL_WORDS)
    with pytest.raises(ValueError, match=r"must put \{text\} before \{label\}"):
        InContextClassifier(gpt, template="{label}: {text}", label_words=LABEL_WORDS)
    with pytest.raises(ValueError, match="Unknown label 'neutral'"):
        InContextClassifier(gpt, label_words=LABEL_WORDS, examples=[("Fine.", "neutral")])
    with pytest.raises(ValueError, match="share the same label tokens"):
        InContextClassifier(gpt, label_words={"a": "good", "b": "good"})
    with pytest.raises(TypeError, match="needs a keras_lm causal LM or decoder"):
        InContextClassifier(keras_lm.applications.Bert("tiny", vocabulary_size=256), tokenizer=byte_tokenizer())


@pytest.mark.slow
def test_prompting_recipe_step_on_a_miniature_budget(tokenizer, tmp_path):
    import json

    from keras_lm.recipes.prompting import prompting

    tokenizer.save_vocabulary(tmp_path / "vocab.txt")
    encoder = keras_lm.applications.Bert("tiny", vocabulary_size=tokenizer.vocabulary_size())
    keras_lm.pretraining.BertPretrainer(encoder, next_sentence=False).save(tmp_path / "pretrainer.keras")
    keras_lm.tasks.CausalLM(keras_lm.applications.Gpt2("tiny", vocabulary_size=256, max_sequence_length=256),
                            byte_tokenizer()).save(tmp_path / "lm.keras")
    results = prompting(str(tmp_path), masked_lm="pretrainer.keras", causal_lm="lm.keras", max_examples=12,
                        shots=(0, 2), draws=2, fit_steps=2, sequence_length=64)
    assert [m["kind"] for m in results["models"]] == ["masked LM", "causal LM"]
    for model in results["models"]:
        zero, two = model["rows"]
        assert (zero["shots"], two["shots"]) == (0, 2)
        assert (len(zero["accuracy"]["runs"]), len(two["accuracy"]["runs"])) == (1, 2)  # one run per draw
        for row in (zero, two):
            assert all(0.0 <= accuracy <= 1.0 for accuracy in row["accuracy"]["runs"] + row["calibrated"]["runs"])
    assert json.loads((tmp_path / "metrics.json").read_text())["prompting"]["examples"] == 12
    assert (tmp_path / "prompting.md").read_text().count("| pretrainer.keras (masked LM) |") == 2
