"""FGM / PGD adversarial training on the token embeddings: only the train step changes, exactly as written."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.training.adversarial import (
    AdversarialTraining,
    adversarial_training,
    remove_adversarial_training,
    token_embedding_layer,
)

VOCABULARY = 200


@pytest.fixture(scope="module")
def movie_preprocessor(movie_sentences):
    """A WordPiece preprocessor whose vocabulary is trained on 64 real movie_snippets sentences."""
    texts = tf.data.Dataset.from_tensor_slices([text for text, _ in movie_sentences])
    tokenizer = keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=400)
    return keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)


def small_classifier(seed=0, dropout=0.0, preprocessor=None, vocabulary_size=VOCABULARY):
    keras.utils.set_random_seed(seed)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=vocabulary_size, num_layers=2, num_heads=2,
                                          hidden_dim=32, intermediate_dim=64, max_sequence_length=32, dropout=dropout)
    return keras_lm.tasks.Classifier(backbone, num_classes=2, dropout=dropout, preprocessor=preprocessor)


def distinct_batch():
    """Two examples of 8 tokens in which no id repeats (so an embedding row is one position's vector)."""
    ids = np.arange(10, 26, dtype="int32").reshape(2, 8)
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}
    x["padding_mask"][1, 6:] = 0
    return x, np.array([0, 1], "int32")


def clean_loss_and_gradients(model, x, y):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    return float(loss), [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]


def hand_update(model, x, y, method, epsilon, alpha, steps, learning_rate):
    """Weights after one SGD step on clean + adversarial loss, perturbing embedding ROWS (ids are unique)."""
    table = token_embedding_layer(model).embeddings
    index = [v.path for v in model.trainable_variables].index(table.path)
    start = [v.numpy() for v in model.trainable_variables]
    ids = x["token_ids"]

    def row_gradient(delta):  # d loss / d embedding output at every position, with delta added to those rows
        table.assign(start[index] + scatter(delta))
        _, gradients = clean_loss_and_gradients(model, x, y)
        return gradients[index].numpy()[ids]  # [batch, length, hidden]

    def scatter(delta):
        full = np.zeros_like(start[index])
        full[ids.reshape(-1)] = delta.reshape(-1, delta.shape[-1])
        return full

    def unit(g):
        norm = np.sqrt((g.astype("float64") ** 2).sum(axis=(1, 2), keepdims=True))
        return g / norm

    delta = np.zeros(ids.shape + (start[index].shape[1],), "float32")
    gradient = row_gradient(delta)
    table.assign(start[index])
    _, clean = clean_loss_and_gradients(model, x, y)
    for step in range(steps):
        if method == "fgm":
            delta = epsilon * unit(gradient)
        else:
            delta = delta + alpha * unit(gradient)
            norm = np.sqrt((delta.astype("float64") ** 2).sum(axis=(1, 2), keepdims=True))
            delta = delta * np.minimum(1.0, epsilon / norm)
        if step < steps - 1:
            gradient = row_gradient(delta)
    table.assign(start[index] + scatter(delta))
    _, adversarial = clean_loss_and_gradients(model, x, y)
    for variable, value in zip(model.trainable_variables, start):
        variable.assign(value)
    return [w - learning_rate * (c.numpy() + a.numpy()) for w, c, a in zip(start, clean, adversarial)], delta


@pytest.mark.parametrize("method,epsilon,alpha,steps", [("fgm", 0.5, 0.3, 1), ("pgd", 0.4, 0.3, 3)])
def test_one_train_step_equals_the_hand_computed_clean_plus_adversarial_gradient(method, epsilon, alpha, steps):
    x, y = distinct_batch()
    model = small_classifier()
    expected, delta = hand_update(model, x, y, method, epsilon, alpha, steps, learning_rate=0.5)
    adversarial_training(model, method, epsilon=epsilon, alpha=alpha, steps=steps)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    got_delta = model.adversarial_training.perturbation(model, x, y)
    np.testing.assert_allclose(got_delta.numpy(), delta, rtol=2e-4, atol=2e-6)
    start = [v.numpy() for v in model.trainable_variables]
    model.train_on_batch(x, y)
    moved = 0
    for variable, want, before in zip(model.trainable_variables, expected, start):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-4, atol=1e-6, err_msg=variable.path)
        moved += int(np.abs(want - before).max() > 1e-4)
    assert moved > len(start) // 2  # the comparison sees real updates
    # The adversarial half matters: a plain step from the same weights lands elsewhere.
    plain = small_classifier()
    plain.compile(optimizer=keras.optimizers.SGD(0.5))
    plain.train_on_batch(x, y)
    assert max(np.abs(a.numpy() - b.numpy()).max() for a, b in zip(plain.trainable_variables,
                                                                     model.trainable_variables)) > 1e-4


def test_fgm_changes_the_loss_landscape_only_during_training(movie_preprocessor, movie_sentences):
    preprocessor = movie_preprocessor
    texts = [text for text, _ in movie_sentences[:16]]
    labels = np.array([label for _, label in movie_sentences[:16]])
    model = small_classifier(dropout=0.1, preprocessor=preprocessor,
                             vocabulary_size=preprocessor.tokenizer.vocabulary_size())
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    features = preprocessor(tf.constant(texts[:4]))
    before = (model.predict(texts, verbose=0), model.evaluate(texts, labels, verbose=0, return_dict=True),
              model.test_on_batch(features, labels[:4], return_dict=True))
    wrapped = adversarial_training(model, "fgm", epsilon=1.0)
    assert wrapped is model and model.adversarial_training.method == "fgm"
    after = (model.predict(texts, verbose=0), model.evaluate(texts, labels, verbose=0, return_dict=True),
             model.test_on_batch(features, labels[:4], return_dict=True))
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1] == after[1] and before[2] == after[2]
    remove_adversarial_training(model)
    assert "train_step" not in vars(model) and not hasattr(model, "adversarial_training")


def test_training_is_where_it_differs():
    x, y = distinct_batch()
    adversarial, plain = small_classifier(), small_classifier()
    adversarial_training(adversarial, "fgm", epsilon=1.0)
    for model in (adversarial, plain):
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        model.train_on_batch(x, y)
    head = [model.get_layer("logits").kernel.numpy() for model in (adversarial, plain)]
    assert np.abs(head[0] - head[1]).max() > 1e-4


def test_removing_gives_back_keras_plain_step():
    x, y = distinct_batch()
    model, reference = small_classifier(), small_classifier()
    adversarial_training(model, "pgd", epsilon=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.train_on_batch(x, y)
    remove_adversarial_training(model)
    reference.set_weights(model.get_weights())
    reference.compile(optimizer=keras.optimizers.SGD(0.5))
    model.train_on_batch(x, y)
    reference.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_pgd_stays_within_the_epsilon_ball_and_fgm_lies_on_it():
    x, y = distinct_batch()
    model = small_classifier()
    with pytest.raises(ValueError, match="Compile Classifier"):
        AdversarialTraining("fgm").perturbation(model, x, y)
    model.compile(optimizer="sgd")
    for settings, on_the_sphere in (
        (AdversarialTraining("pgd", epsilon=0.5, alpha=0.1, steps=2), False),  # 0.2 < 0.5: inside
        (AdversarialTraining("pgd", epsilon=0.5, alpha=0.4, steps=4), True),  # 1.6 > 0.5: projected
        (AdversarialTraining("fgm", epsilon=0.7), True),
    ):
        delta = settings.perturbation(model, x, y).numpy()
        norms = np.sqrt((delta.astype("float64") ** 2).sum(axis=(1, 2)))
        assert np.all(norms <= settings.epsilon * (1 + 1e-5)), norms
        if on_the_sphere:
            np.testing.assert_allclose(norms, settings.epsilon, rtol=1e-5)
        else:
            assert np.all(norms < settings.epsilon * 0.9), norms


@pytest.mark.slow  # long: run with -m slow
def test_fit_on_real_text_with_pgd_lowers_the_loss(movie_preprocessor, movie_sentences):
    model = small_classifier(preprocessor=movie_preprocessor,
                             vocabulary_size=movie_preprocessor.tokenizer.vocabulary_size())
    adversarial_training(model, "pgd", epsilon=0.5, alpha=0.2, steps=2)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    texts = [text for text, _ in movie_sentences]
    labels = np.array([label for _, label in movie_sentences])
    history = model.fit(texts[:32], labels[:32], batch_size=16, epochs=3, shuffle=False, verbose=0)
    losses = history.history["loss"]  # clean + adversarial, mean per epoch
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_token_classifier_trains_with_fgm():
    keras.utils.set_random_seed(0)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=VOCABULARY, num_layers=1, num_heads=2, hidden_dim=32,
                                          intermediate_dim=64, max_sequence_length=32, dropout=0.0)
    tagger = keras_lm.tasks.TokenClassifier(backbone, 3, dropout=0.0)
    adversarial_training(tagger, "fgm", epsilon=1.0)
    tagger.compile(optimizer=keras.optimizers.SGD(0.1))
    x, _ = distinct_batch()
    tags = (x["token_ids"] % 3).astype("int32")
    before = tagger.evaluate(x, tags, verbose=0, return_dict=True)["loss"]
    for _ in range(3):
        tagger.train_on_batch(x, tags)
    assert tagger.evaluate(x, tags, verbose=0, return_dict=True)["loss"] < before


def test_an_embedding_shared_by_encoder_and_decoder_gets_one_perturbation_per_call():
    from keras_lm.applications.transformer import Transformer
    from keras_lm.tasks.seq2seq_lm import Seq2SeqLM

    tokenizer = keras_lm.tokenizers.WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "to", "be", "or", "not"])
    backbone = Transformer("tiny", vocabulary_size=9, hidden_dim=16, intermediate_dim=32, dropout=0.0)
    model = Seq2SeqLM(backbone, tokenizer, source_length=8, target_length=6)
    adversarial_training(model, "fgm", epsilon=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    features, labels, weights = next(iter(model.dataset([("to be or", "not to be"), ("or not", "be")], batch_size=2)))
    source, target = model.adversarial_training.perturbation(model, features, labels, weights)
    assert source.shape[:2] == (2, 8) and target.shape[:2] == (2, 6)
    joint = np.sqrt((source.numpy() ** 2).sum(axis=(1, 2)) + (target.numpy() ** 2).sum(axis=(1, 2)))
    np.testing.assert_allclose(joint, 0.5, rtol=1e-5)  # one ball over both calls
    assert np.abs(source.numpy()).max() > 0 and np.abs(target.numpy()).max() > 0
    before = [v.numpy() for v in model.trainable_variables]
    assert np.isfinite(model.train_on_batch(features, labels, weights, return_dict=True)["loss"])
    assert any(not np.allclose(v.numpy(), b) for v, b in zip(model.trainable_variables, before))


def test_models_it_cannot_serve_are_one_clear_error():
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has none"):
        adversarial_training(plain)
    with pytest.raises(ValueError, match="Unknown adversarial method"):
        AdversarialTraining("fgsm")
    with pytest.raises(ValueError, match="FGM takes exactly one step"):
        AdversarialTraining("fgm", steps=3)
    with pytest.raises(ValueError, match="`epsilon` must be positive"):
        AdversarialTraining("pgd", epsilon=0.0)
    from keras_lm.training.distillation import Distiller

    distiller = Distiller(small_classifier(), small_classifier(seed=1))
    with pytest.raises(ValueError, match="defines its own train_step"):
        adversarial_training(distiller)


def test_docstring_examples():
    import doctest

    import keras_lm.training.adversarial as module
    import keras_lm.training.layer_hooks as hooks

    for tested in (module, hooks):
        result = doctest.testmod(tested, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0
