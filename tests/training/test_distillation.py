"""Knowledge distillation: the loss as written (numpy), a frozen teacher, a student that learns from it."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.training.distillation import Distiller, layer_mapping

HERE = os.path.dirname(os.path.abspath(__file__))


def encoder(vocabulary_size=120, num_layers=2, hidden_dim=32, seed=0):
    keras.utils.set_random_seed(seed)
    return keras_lm.applications.Bert(None, vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=2,
                                      hidden_dim=hidden_dim, intermediate_dim=2 * hidden_dim,
                                      max_sequence_length=32, dropout=0.0)


def classifier(seed=0, preprocessor=None, head_scale=30.0, **kwargs):
    """A 3-class classifier whose head is scaled up: logits of a few units, not BERT's initial ~0.01."""
    backbone = encoder(seed=seed, **kwargs)
    model = keras_lm.tasks.Classifier(backbone, num_classes=3, dropout=0.0, preprocessor=preprocessor)
    head = model.get_layer("logits")
    head.kernel.assign(head.kernel.numpy() * head_scale)
    return model


def fixed_batch():
    rng = np.random.default_rng(3)
    ids = rng.integers(5, 120, size=(4, 7)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 3:] = 0
    ids[mask == 0] = 0
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}
    return x, np.array([0, 2, 1, 2], "int32"), np.array([1.0, 0.5, 2.0, 1.0], "float32")


def layer_outputs(model, x, index):
    backbone = model.backbone
    probe = keras.Model(backbone.input, backbone.get_layer(f"transformer_layer_{index}").output)
    return probe.predict(x, verbose=0).astype("float64")


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def hand_loss(distiller, student, teacher, x, y, w, temperature, alpha, hidden_weight, pairs):
    s = student.predict(x, verbose=0).astype("float64")
    t = teacher.predict(x, verbose=0).astype("float64")
    hard = -log_softmax(s)[np.arange(len(y)), y]
    hard = (hard * w).sum() / w.sum()
    pt, ps = log_softmax(t / temperature), log_softmax(s / temperature)
    kl = (np.exp(pt) * (pt - ps)).sum(-1)
    soft = temperature ** 2 * (kl * w).sum() / w.sum()
    mask = x["padding_mask"].astype("float64")
    hidden = 0.0
    for k, (j, m) in enumerate(pairs):
        projection = distiller.projections[k]
        mapped = layer_outputs(student, x, j) @ projection.kernel.numpy() + projection.bias.numpy()
        squared = ((mapped - layer_outputs(teacher, x, m)) ** 2).mean(-1)
        hidden += (squared * mask).sum() / mask.sum()
    hidden /= max(len(pairs), 1)
    return {"student_loss": hard, "distillation_loss": soft, "hidden_loss": hidden,
            "loss": alpha * hard + (1 - alpha) * soft + hidden_weight * hidden}


def test_loss_equals_a_hand_computation_with_temperature_alpha_and_hidden_states():
    student = classifier(seed=1, num_layers=2, hidden_dim=32)
    teacher = classifier(seed=2, num_layers=3, hidden_dim=48)
    pairs = [[0, 1], [1, 2]]
    distiller = Distiller(student, teacher, temperature=3.0, alpha=0.3, hidden_weight=0.7,
                          hidden_layers={0: 1, 1: 2})
    assert distiller.hidden_layers == pairs and len(distiller.projections) == 2  # widths 32 -> 48
    for projection in distiller.projections:  # non-trivial projections
        projection.bias.assign(np.linspace(-0.5, 0.5, 48).astype("float32"))
    x, y, w = fixed_batch()
    want = hand_loss(distiller, student, teacher, x, y, w, 3.0, 0.3, 0.7, pairs)
    got = distiller.distillation_outputs(x, y, w)
    for name, value in want.items():
        np.testing.assert_allclose(float(got[name]), value, rtol=2e-5, err_msg=name)
    assert want["hidden_loss"] > 0.1 and want["distillation_loss"] > 1e-3  # every term weighs in
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    evaluated = distiller.test_on_batch(x, y, w, return_dict=True)
    np.testing.assert_allclose(evaluated["loss"], want["loss"], rtol=2e-5)
    np.testing.assert_allclose(evaluated["distillation_loss"], want["distillation_loss"], rtol=2e-5)
    trained = distiller.train_on_batch(x, y, w, return_dict=True)  # the loss before the update
    np.testing.assert_allclose(trained["loss"], want["loss"], rtol=2e-5)
    after = hand_loss(distiller, student, teacher, x, y, w, 3.0, 0.3, 0.7, pairs)
    assert after["loss"] < want["loss"]


def test_without_hidden_states_and_with_equal_widths():
    student, teacher = classifier(seed=1), classifier(seed=2)
    x, y, w = fixed_batch()
    plain = Distiller(student, teacher, temperature=1.0, alpha=1.0)
    np.testing.assert_allclose(float(plain.distillation_outputs(x, y, w)["loss"]),
                               hand_loss(plain, student, teacher, x, y, w, 1.0, 1.0, 0.0, [])["student_loss"],
                               rtol=2e-5)
    same_width = Distiller(student, teacher, hidden_weight=1.0)
    assert same_width.projections == [] and same_width.hidden_layers == layer_mapping(2, 2) == [[0, 0], [1, 1]]
    expected = np.mean([((layer_outputs(student, x, i) - layer_outputs(teacher, x, i)) ** 2).mean(-1)[
        x["padding_mask"] == 1].mean() for i in (0, 1)])
    np.testing.assert_allclose(float(same_width.distillation_outputs(x, y)["hidden_loss"]), expected, rtol=2e-5)


def test_teacher_is_frozen_and_student_and_projections_train():
    student = classifier(seed=1, hidden_dim=32)
    teacher = classifier(seed=2, hidden_dim=48)
    distiller = Distiller(student, teacher, hidden_weight=1.0)
    distiller.compile(optimizer=keras_lm.training.adamw(1e-2))
    teacher_before = [v.numpy().copy() for v in teacher.variables]
    student_before = [v.numpy().copy() for v in student.trainable_variables]
    projection_before = distiller.projections[0].kernel.numpy().copy()
    x, y, w = fixed_batch()
    history = distiller.fit(x, y, sample_weight=w, batch_size=4, epochs=3, verbose=0)
    assert sorted(history.history) == ["accuracy", "distillation_loss", "hidden_loss", "loss", "student_loss"]
    for variable, value in zip(teacher.variables, teacher_before):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
    unchanged = [v.path for v, b in zip(student.trainable_variables, student_before) if np.array_equal(v.numpy(), b)]
    assert unchanged == []
    assert not np.array_equal(distiller.projections[0].kernel.numpy(), projection_before)
    assert {id(v) for v in distiller.trainable_weights}.isdisjoint({id(v) for v in teacher.variables})


@pytest.fixture(scope="module")
def movie_preprocessor(movie_sentences):
    texts = tf.data.Dataset.from_tensor_slices([text for text, _ in movie_sentences])
    tokenizer = keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=400)
    return keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)


@pytest.mark.slow  # long: run with -m slow
def test_student_moves_toward_the_teacher_on_real_text(movie_preprocessor, movie_sentences):
    """A confident teacher (its head scaled up) and a smaller student on movie_snippets sentences."""
    size = movie_preprocessor.tokenizer.vocabulary_size()
    teacher = classifier(seed=2, preprocessor=movie_preprocessor, vocabulary_size=size, hidden_dim=48, num_layers=2,
                         head_scale=40.0)
    student = classifier(seed=1, preprocessor=movie_preprocessor, vocabulary_size=size, hidden_dim=32, num_layers=1,
                         head_scale=1.0)
    texts = [text for text, _ in movie_sentences]
    labels = np.array([label for _, label in movie_sentences])
    distiller = Distiller(student, teacher, temperature=1.0, alpha=0.0)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = distiller.evaluate(texts, labels, verbose=0, return_dict=True)["distillation_loss"]
    history = distiller.fit(texts, labels, batch_size=16, epochs=3, verbose=0)
    after = distiller.evaluate(texts, labels, verbose=0, return_dict=True)["distillation_loss"]
    assert before > 0.05 and after < 0.5 * before, (before, after, history.history["distillation_loss"])
    # Predictions on raw text are the student's, and the student agrees with the teacher more often.
    np.testing.assert_allclose(distiller.predict(texts, verbose=0), student.predict(texts, verbose=0), rtol=1e-6)
    teacher_answers = teacher.predict(texts, verbose=0).argmax(-1)
    assert (student.predict(texts, verbose=0).argmax(-1) == teacher_answers).mean() >= 0.75


def test_separately_tokenized_inputs_and_clear_errors(movie_preprocessor, movie_sentences):
    size = movie_preprocessor.tokenizer.vocabulary_size()
    other = keras_lm.tokenizers.BertPreprocessor(movie_preprocessor.tokenizer, sequence_length=16)
    student = classifier(seed=1, preprocessor=movie_preprocessor, vocabulary_size=size)
    teacher = classifier(seed=2, preprocessor=other, vocabulary_size=size)
    texts = [text for text, _ in movie_sentences[:8]]
    labels = np.array([label for _, label in movie_sentences[:8]])
    distiller = Distiller(student, teacher)
    distiller.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="teacher has a different one"):
        distiller.fit(texts, labels, verbose=0)
    both = {"student": movie_preprocessor(tf.constant(texts)), "teacher": other(tf.constant(texts))}
    outputs = distiller.distillation_outputs(both, labels)
    t = teacher.predict(both["teacher"], verbose=0)
    s = student.predict(both["student"], verbose=0)
    pt, ps = log_softmax(t / 2.0), log_softmax(s / 2.0)
    np.testing.assert_allclose(float(outputs["distillation_loss"]), 4.0 * (np.exp(pt) * (pt - ps)).sum(-1).mean(),
                               rtol=1e-4)
    assert np.isfinite(distiller.fit(both, labels, batch_size=4, verbose=0).history["loss"][0])
    with pytest.raises(ValueError, match="needs labels"):
        distiller.distillation_outputs(both)
    with pytest.raises(ValueError, match="same token ids"):
        Distiller(student, teacher, hidden_weight=1.0).distillation_outputs(both, labels)
    with pytest.raises(ValueError, match="`alpha` must be in"):
        Distiller(student, teacher, alpha=1.5)
    with pytest.raises(ValueError, match="outside the student's 2 layers"):
        Distiller(student, teacher, hidden_weight=1.0, hidden_layers=[[0, 5]])
    with pytest.raises(ValueError, match="computes its own loss"):
        distiller.compile(optimizer="sgd", loss="mse")


def test_config_and_keras_file_round_trip(tmp_path):
    student, teacher = classifier(seed=1, hidden_dim=32), classifier(seed=2, hidden_dim=48)
    distiller = Distiller(student, teacher, temperature=2.5, alpha=0.25, hidden_weight=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y, w = fixed_batch()
    distiller.train_on_batch(x, y, w)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Distiller)
    assert (loaded.temperature, loaded.alpha, loaded.hidden_weight, loaded.hidden_layers) == (2.5, 0.25, 0.5,
                                                                                              [[0, 0], [1, 1]])
    for name in ("loss", "hidden_loss", "distillation_loss"):
        np.testing.assert_allclose(float(loaded.distillation_outputs(x, y, w)[name]),
                                   float(distiller.distillation_outputs(x, y, w)[name]), rtol=1e-6)
    np.testing.assert_allclose(loaded.student.predict(x, verbose=0), student.predict(x, verbose=0), rtol=1e-6)


def test_hidden_states_of_a_reloaded_encoder_export(tmp_path, movie_preprocessor, movie_sentences):
    """A teacher from Classifier.from_saved_model gives its layers through the export's encoder_outputs."""
    size = movie_preprocessor.tokenizer.vocabulary_size()
    teacher_backbone = encoder(vocabulary_size=size, num_layers=2, hidden_dim=48, seed=2)
    export = keras_lm.export.encoder(teacher_backbone, movie_preprocessor, str(tmp_path / "hub"))
    teacher = keras_lm.tasks.Classifier.from_saved_model(export, num_classes=3, dropout=0.0)
    student = classifier(seed=1, preprocessor=teacher.preprocessor, vocabulary_size=size, num_layers=1)
    distiller = Distiller(student, teacher, hidden_weight=1.0)
    assert distiller.hidden_layers == [[0, 1]] and len(distiller.projections) == 1
    texts = [text for text, _ in movie_sentences[:4]]
    x = movie_preprocessor(tf.constant(texts))
    projection = distiller.projections[0]
    mapped = layer_outputs(student, x, 0) @ projection.kernel.numpy() + projection.bias.numpy()
    squared = ((mapped - layer_outputs(keras_lm.tasks.Classifier(teacher_backbone, 3), x, 1)) ** 2).mean(-1)
    mask = x["padding_mask"].numpy().astype(bool)
    got = distiller.distillation_outputs(x, np.zeros(4, "int32"))["hidden_loss"]
    np.testing.assert_allclose(float(got), squared[mask].mean(), rtol=1e-4)
    distiller.compile(optimizer=keras.optimizers.SGD(0.05))
    labels = np.array([label for _, label in movie_sentences[:4]])
    assert np.isfinite(distiller.fit(texts, labels, batch_size=4, verbose=0).history["hidden_loss"][0])


MIRRORED = textwrap.dedent(
    """
    import sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, keras_lm
    from keras_lm.training.distillation import Distiller
    from keras_lm.training.adversarial import adversarial_training

    def classifier(seed, hidden_dim):
        keras.utils.set_random_seed(seed)
        backbone = keras_lm.applications.Bert(None, vocabulary_size=60, num_layers=1, num_heads=2,
                                              hidden_dim=hidden_dim, intermediate_dim=32, max_sequence_length=8,
                                              dropout=0.0)
        return keras_lm.tasks.Classifier(backbone, num_classes=2, dropout=0.0)

    rng = np.random.default_rng(0)
    ids = rng.integers(5, 60, size=(8, 6)).astype("int32")
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}
    y = (ids[:, 0] % 2).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat(3)

    def train(strategy, kind):
        with strategy.scope():
            if kind == "distiller":
                model = Distiller(classifier(1, 16), classifier(2, 24), hidden_weight=0.5)
            else:
                model = adversarial_training(classifier(1, 16), "pgd", epsilon=0.5, alpha=0.3, steps=2)
            model.compile(optimizer=keras.optimizers.SGD(0.5))
        student = model.student if kind == "distiller" else model
        start = [v.numpy() for v in student.trainable_variables]
        history = model.fit(data, verbose=0)
        trained = [v.numpy() for v in student.trainable_variables]
        moved = max(float(np.abs(a - b).max()) for a, b in zip(start, trained))
        return trained, history.history["loss"][0], moved

    mirrored = keras_lm.training.strategy("mirrored")
    single = keras_lm.training.strategy("one_device")
    print("REPLICAS", mirrored.num_replicas_in_sync)
    for kind in ("distiller", "adversarial"):
        (many, many_loss, _), (one, one_loss, moved) = train(mirrored, kind), train(single, kind)
        difference = max(float(np.abs(a - b).max()) for a, b in zip(many, one))
        print(kind.upper(), difference, abs(many_loss - one_loss) / one_loss, moved)
    """
)


@pytest.mark.slow
def test_mirrored_over_two_cpu_devices_equals_one_device():
    """Under tf.distribute each replica's loss is divided by the replicas: same weights as one device."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run(["timeout", "-k", "5", "300", sys.executable, "-c", MIRRORED],
                             capture_output=True, text=True, env=env)
    assert process.returncode == 0, process.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in process.stdout.splitlines() if " " in line)
    assert lines["REPLICAS"] == "2"
    for kind in ("DISTILLER", "ADVERSARIAL"):
        weights, loss, moved = (float(value) for value in lines[kind].split())
        assert weights < 1e-5 and loss < 1e-5 and moved > 1e-3, (kind, weights, loss, moved)


def test_docstring_examples():
    import doctest

    import keras_lm.training.distillation as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_student_from_teacher_copies_embeddings_the_chosen_blocks_and_the_pooler():
    from keras_lm.training.distillation import student_from_teacher

    keras.utils.set_random_seed(3)
    teacher = keras_lm.applications.Bert(vocabulary_size=120, num_layers=4, num_heads=2, hidden_dim=32,
                                         intermediate_dim=64, max_sequence_length=16)
    for variable in teacher.variables:
        if "seed_generator" not in variable.path:
            variable.assign(np.random.default_rng(len(variable.path)).normal(size=variable.shape) * 0.2)
    features = {"token_ids": tf.constant([[2, 17, 40, 3, 0]]), "segment_ids": tf.zeros([1, 5], tf.int32),
                "padding_mask": tf.constant([[True, True, True, True, False]])}

    whole = student_from_teacher(teacher, layers=range(4))
    for name in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(whole(features)[name], teacher(features)[name])

    student = student_from_teacher(teacher, layers=[1, 3])
    assert student.num_layers == 2 and type(student) is type(teacher)
    values = {variable.path: variable.numpy() for variable in teacher.variables}
    for variable in student.variables:
        if "seed_generator" in variable.path:
            continue
        block, _, rest = variable.path.partition("/")
        source = {"transformer_layer_0": "transformer_layer_1/", "transformer_layer_1": "transformer_layer_3/"}.get(
            block, block + "/") + rest
        np.testing.assert_array_equal(variable.numpy(), values[source], err_msg=variable.path)
    assert not np.allclose(student(features)["sequence_output"], teacher(features)["sequence_output"])

    with pytest.raises(ValueError, match=r"each in \[0, 3\]; got \[0, 4\]"):
        student_from_teacher(teacher, layers=[0, 4])
    with pytest.raises(ValueError, match="must list blocks"):
        student_from_teacher(teacher, layers=[])
