"""Knowledge distillation (Hinton et al., 2015): a student trained from a teacher's softened logits.

``Distiller(student, teacher)`` is a Keras model whose ``fit`` trains the student on

    alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
        [+ hidden_weight * MSE(projection(student layer j), teacher layer m(j))]

the last term (TinyBERT-style, Jiao et al., 2020) comparing hidden states of mapped layers over
the real tokens, through a learned linear projection where the widths differ. The teacher runs
in inference mode and never changes. ``distiller.student`` is the model to save and export.
"""
from __future__ import annotations

import contextlib
import json
import math
import os

import keras
import tensorflow as tf
from keras import ops

from keras_lm.training.layer_hooks import intercepted_call
from keras_lm.training.optimizers import adamw
from keras_lm.training.saving import RecompiledOnLoad

STUDENT, TEACHER = "student", "teacher"


class HiddenStates:
    """The per-layer outputs of an encoder backbone, recorded while the model runs.

    Reads a keras_lm encoder's ``transformer_layers`` or, for an encoder reloaded from a
    TF-Hub-style export (``SavedModelEncoder``), the export's ``encoder_outputs``.
    """

    def __init__(self, model: keras.Model, role: str):
        backbone = getattr(model, "backbone", model)
        self.blocks = list(getattr(backbone, "transformer_layers", None) or [])
        self.saved_model = getattr(backbone, "saved_model", None) if not self.blocks else None
        if self.blocks:
            self.num_layers, self.hidden_dim = len(self.blocks), int(backbone.hidden_dim)
        elif self.saved_model is not None and hasattr(backbone, "saved_model_path"):
            manifest = _export_manifest(backbone.saved_model_path)
            self.num_layers, self.hidden_dim = int(manifest["num_layers"]), int(manifest["hidden_dim"])
        else:
            raise ValueError(
                f"hidden_weight > 0 compares hidden states, but the {role} ({type(model).__name__} "
                f"'{model.name}') has no encoder layers to read them from (a keras_lm encoder's "
                "`transformer_layers`, or a reloaded encoder export). Use hidden_weight=0."
            )
        self.outputs = {}

    @contextlib.contextmanager
    def recording(self):
        """Within the block, ``self.outputs[i]`` is layer i's output of the latest forward pass."""
        self.outputs = {}
        with contextlib.ExitStack() as stack:
            if self.blocks:
                for index, block in enumerate(self.blocks):
                    stack.enter_context(intercepted_call(block, self._recorder(index)))
            else:
                stack.enter_context(intercepted_call(self.saved_model, self._record_export))
            yield self.outputs

    def _recorder(self, index):
        def record(outputs):
            self.outputs[index] = outputs
            return outputs

        return record

    def _record_export(self, outputs):
        stacked = outputs["encoder_outputs"]  # [num_layers, batch, length, hidden]
        for index in range(self.num_layers):
            self.outputs[index] = stacked[index]
        return outputs


def _export_manifest(encoder_path: str) -> dict:
    path = os.path.join(os.path.dirname(os.path.abspath(encoder_path)), "keras_lm.json")
    if not os.path.isfile(path):
        raise ValueError(f"No manifest at '{path}': cannot tell the exported encoder's layers and width.")
    with open(path) as f:
        return json.load(f)


def layer_mapping(student_layers: int, teacher_layers: int) -> list:
    """``[[j, m(j)], ...]``: student layer j learns from teacher layer ``ceil((j + 1) * Lt / Ls) - 1``.

    The last student layer reads the last teacher layer and the others are spread evenly.

    Example:
        >>> layer_mapping(2, 6)
        [[0, 2], [1, 5]]
    """
    return [[j, math.ceil((j + 1) * teacher_layers / student_layers) - 1] for j in range(student_layers)]


def check_student_layers(layers, teacher_layers: int) -> list:
    """``layers`` as a list of ints, each a block of a ``teacher_layers``-block teacher; else one clear error."""
    layers = [int(layer) for layer in layers]
    if not layers or any(not 0 <= layer < teacher_layers for layer in layers):
        raise ValueError(f"`layers` must list blocks of the teacher, each in [0, {teacher_layers - 1}]; got {layers}.")
    return layers


def student_from_teacher(backbone, layers) -> keras.Model:
    """A shallower copy of ``backbone``: its embeddings, the blocks ``layers`` and its pooler (DistilBERT's
    initialization, Sanh et al., 2019: a student of the teacher's width from one block in two).

    The student has the teacher's class and arguments but ``num_layers=len(layers)``; its block ``j``
    holds the weights of the teacher's block ``layers[j]``. Every other weight is the teacher's own.

    Example:
        >>> teacher = keras_lm.applications.Bert("mini", vocabulary_size=1000)  # doctest: +SKIP
        >>> student = student_from_teacher(teacher, layers=[0, 2])  # doctest: +SKIP
        >>> student.num_layers  # doctest: +SKIP
        2
    """
    layers = check_student_layers(layers, backbone.num_layers)
    student = type(backbone).from_config({**backbone.get_config(), "num_layers": len(layers)})
    teacher_block = {f"transformer_layer_{j}/": f"transformer_layer_{layer}/" for j, layer in enumerate(layers)}
    values = {variable.path: variable for variable in backbone.variables}
    for variable in student.variables:
        if "seed_generator" in variable.path:
            continue
        path = variable.path
        for student_prefix, teacher_prefix in teacher_block.items():
            if path.startswith(student_prefix):
                path = teacher_prefix + path[len(student_prefix):]
                break
        found = values.get(path)
        if found is None or tuple(found.shape) != tuple(variable.shape):
            raise ValueError(f"The teacher '{backbone.name}' has no weight '{path}' {tuple(variable.shape)} for the "
                             f"student's '{variable.path}'.")
        variable.assign(found)
    return student


def _pairs(hidden_layers, student_layers: int, teacher_layers: int) -> list:
    if hidden_layers is None:
        return layer_mapping(student_layers, teacher_layers)
    items = hidden_layers.items() if isinstance(hidden_layers, dict) else hidden_layers
    pairs = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"`hidden_layers` must map student layers to teacher layers ({{j: m}} or [[j, m], ...]); "
                             f"got the entry {item!r}.")
        j, m = (int(value) for value in item)
        if not 0 <= j < student_layers or not 0 <= m < teacher_layers:
            raise ValueError(f"`hidden_layers` entry [{j}, {m}] is outside the student's {student_layers} layers "
                             f"or the teacher's {teacher_layers}.")
        pairs.append([j, m])
    if not pairs:
        raise ValueError("`hidden_layers` is empty; leave it None for the default mapping.")
    return pairs


def _weighted_mean(values, weights):
    """Mean of ``values`` weighted by ``weights`` (broadcast from the leading axes), or plain mean."""
    if weights is None:
        return ops.mean(values)
    weights = ops.cast(weights, "float32")
    while len(weights.shape) < len(values.shape):
        weights = ops.expand_dims(weights, -1)
    weights = ops.broadcast_to(weights, ops.shape(values))
    return ops.divide_no_nan(ops.sum(values * weights), ops.sum(weights))


def softened_kl(teacher_logits, student_logits, temperature: float):
    """``KL(softmax(teacher / T) || softmax(student / T))`` over the last axis, float32."""
    teacher_log_probs = ops.log_softmax(ops.cast(teacher_logits, "float32") / temperature, axis=-1)
    student_log_probs = ops.log_softmax(ops.cast(student_logits, "float32") / temperature, axis=-1)
    return ops.sum(ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)


@keras.saving.register_keras_serializable(package="keras_lm")
class Distiller(RecompiledOnLoad, keras.Model):
    """Trains ``student`` from ``teacher``'s temperature-softened logits (and hidden states), by ``fit``.

    Both models take the same inputs and return logits over the same classes on the last axis
    (classifiers ``[batch, classes]``, token classifiers ``[batch, length, classes]``). Data is
    what the student takes: raw text when the student has a preprocessor the teacher shares (or
    the teacher has none), else preprocessed features, either one dict for both or
    ``{"student": ..., "teacher": ...}`` when they tokenize differently.

    Metrics: ``loss``, ``student_loss`` (cross-entropy with the labels), ``distillation_loss``
    (``T^2 * KL``), ``hidden_loss`` (with ``hidden_weight > 0``) and the student's ``accuracy``.
    Under ``tf.distribute`` each replica's loss is divided by the number of replicas (Keras sums
    their gradients). Called directly or by ``predict``, the model returns the student's logits.

    Args:
        student: the model to train (e.g. ``Classifier(Bert("tiny"), 2)``).
        teacher: a trained model with the same classes; frozen, run with ``training=False``.
        temperature: T, softening both distributions.
        alpha: weight of the hard-label loss; ``1 - alpha`` weighs the distillation term.
        hidden_weight: weight of the hidden-state MSE (0: not computed).
        hidden_layers: ``{student_layer: teacher_layer}`` or ``[[j, m], ...]`` (0-based); default
            ``layer_mapping``: evenly spread, last to last.

    Example:
        >>> import numpy as np, keras_lm
        >>> def bert(layers, width):
        ...     return keras_lm.applications.Bert(None, vocabulary_size=50, num_layers=layers, num_heads=2,
        ...                                       hidden_dim=width, intermediate_dim=2 * width)
        >>> teacher = keras_lm.tasks.Classifier(bert(2, 48), num_classes=2)  # in practice: a trained one
        >>> student = keras_lm.tasks.Classifier(bert(1, 32), num_classes=2)
        >>> distiller = Distiller(student, teacher, temperature=2.0, alpha=0.5, hidden_weight=1.0)
        >>> distiller.compile(optimizer="adam")
        >>> x = {"token_ids": np.array([[2, 7, 9, 3]]), "segment_ids": np.zeros((1, 4), "int32"),
        ...      "padding_mask": np.ones((1, 4), "int32")}
        >>> sorted(distiller.train_on_batch(x, np.array([1]), return_dict=True))
        ['accuracy', 'distillation_loss', 'hidden_loss', 'loss', 'student_loss']
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, temperature: float = 2.0, alpha: float = 0.5,
                 hidden_weight: float = 0.0, hidden_layers=None, **kwargs):
        if student is teacher:
            raise ValueError("The student and the teacher must be two models; got the same one twice.")
        if not temperature > 0:
            raise ValueError(f"`temperature` must be positive, got {temperature}.")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1], got {alpha}.")
        if not hidden_weight >= 0:
            raise ValueError(f"`hidden_weight` must be 0 or more, got {hidden_weight}.")
        super().__init__(**kwargs)
        # === Models and layers ===
        self.student = student
        self.teacher = teacher
        self.projections = []
        self.hidden_pairs = []
        if hidden_weight > 0:
            student_states, teacher_states = HiddenStates(student, STUDENT), HiddenStates(teacher, TEACHER)
            object.__setattr__(self, "_hidden_states", (student_states, teacher_states))  # not tracked
            self.hidden_pairs = _pairs(hidden_layers, student_states.num_layers, teacher_states.num_layers)
            if student_states.hidden_dim != teacher_states.hidden_dim:
                for j, m in self.hidden_pairs:
                    projection = keras.layers.Dense(teacher_states.hidden_dim, dtype="float32",
                                                    name=f"hidden_projection_{j}_{m}")
                    projection.build((None, None, student_states.hidden_dim))
                    self.projections.append(projection)

        # === Attributes ===
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.hidden_weight = float(hidden_weight)
        self.hidden_layers = [list(pair) for pair in self.hidden_pairs] if hidden_weight > 0 else hidden_layers
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.hidden_loss_tracker = keras.metrics.Mean(name="hidden_loss") if hidden_weight > 0 else None
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True

    @property
    def preprocessor(self):
        """The student's preprocessor (what raw text goes through)."""
        return getattr(self.student, "preprocessor", None)

    # --- forward passes ---

    def _split(self, x):
        if isinstance(x, dict) and set(x) == {STUDENT, TEACHER}:
            return x[STUDENT], x[TEACHER]
        return x, x

    def call(self, inputs, training=False):
        return self.student(self._split(inputs)[0], training=training)

    def distillation_outputs(self, x, y=None, sample_weight=None, training: bool = False) -> dict:
        """One forward pass of both models and every loss term (float32).

        Returns ``student_logits``, ``teacher_logits``, ``student_loss`` (0 without labels),
        ``distillation_loss`` (``T^2 * KL``), ``hidden_loss`` (0 when not used) and ``loss``, the
        weighted total (before the division by replicas ``fit`` applies).
        """
        if y is None and self.alpha > 0:
            raise ValueError(f"Distiller with alpha={self.alpha} needs labels for its hard-label loss; "
                             "pass labels, or alpha=0 to learn from the teacher alone.")
        student_x, teacher_x = self._split(x)
        with self._recording() as (student_hidden, teacher_hidden):
            teacher_logits = ops.stop_gradient(ops.cast(self.teacher(teacher_x, training=False), "float32"))
            teacher_hidden = {i: ops.stop_gradient(h) for i, h in teacher_hidden.items()}
            student_logits = ops.cast(self.student(student_x, training=training), "float32")
        if y is not None:
            hard = keras.losses.sparse_categorical_crossentropy(y, student_logits, from_logits=True)
            student_loss = _weighted_mean(hard, sample_weight)
        else:
            student_loss = ops.zeros((), "float32")
        kl = softened_kl(teacher_logits, student_logits, self.temperature)
        distillation_loss = self.temperature ** 2 * _weighted_mean(kl, sample_weight)
        hidden_loss = ops.zeros((), "float32")
        if self.hidden_weight > 0:
            if student_x is not teacher_x:
                raise ValueError("hidden_weight > 0 compares the hidden states token by token, so the student and "
                                 "the teacher must read the same token ids: pass one feature dict for both.")
            hidden_loss = self._hidden_loss(student_hidden, teacher_hidden, student_x["padding_mask"])
        loss = self.alpha * student_loss + (1.0 - self.alpha) * distillation_loss + self.hidden_weight * hidden_loss
        return {"student_logits": student_logits, "teacher_logits": teacher_logits, "student_loss": student_loss,
                "distillation_loss": distillation_loss, "hidden_loss": hidden_loss, "loss": loss}

    @contextlib.contextmanager
    def _recording(self):
        if self.hidden_weight <= 0:
            yield {}, {}
            return
        student_states, teacher_states = self._hidden_states
        with student_states.recording() as student_hidden, teacher_states.recording() as teacher_hidden:
            yield student_hidden, teacher_hidden

    def _hidden_loss(self, student_hidden: dict, teacher_hidden: dict, padding_mask):
        mask = ops.cast(ops.cast(padding_mask, "bool"), "float32")
        total = ops.zeros((), "float32")
        for index, (j, m) in enumerate(self.hidden_pairs):
            student_state = ops.cast(student_hidden[j], "float32")
            if self.projections:
                student_state = self.projections[index](student_state)
            squared = ops.mean(ops.square(student_state - ops.cast(teacher_hidden[m], "float32")), axis=-1)
            total = total + ops.divide_no_nan(ops.sum(squared * mask), ops.sum(mask))
        return total / len(self.hidden_pairs)

    # --- training ---

    @property
    def trainable_weights(self):
        """The student's trainable weights and the hidden-state projections' (never the teacher's)."""
        weights = list(self.student.trainable_weights)
        for projection in self.projections:
            weights += projection.trainable_weights
        return weights

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def compile(self, optimizer="auto", loss=None, **kwargs):
        """Like ``keras.Model.compile``; the loss is built in, so ``loss`` must stay None.

        ``optimizer="auto"`` is ``keras_lm.training.adamw(1e-4)`` (no decay on biases and norms).
        """
        if loss is not None:
            raise ValueError(f"{type(self).__name__} computes its own loss; call compile() without `loss` "
                             f"(got loss={loss!r}).")
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = adamw(1e-4)
        super().compile(optimizer=optimizer, **kwargs)

    def _total_loss(self, outputs: dict):
        total = outputs["loss"]
        for extra in self.student.losses:  # the student's regularizers and add_loss()
            total = total + ops.cast(ops.sum(extra), "float32")
        return total

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            outputs = self.distillation_outputs(x, y, sample_weight, training=True)
            # Keras sums replica gradients under tf.distribute: scale each replica's loss by 1 / replicas.
            loss = self._total_loss(outputs) / tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_weights
        gradients = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(gradients, weights))
        return self._update_metrics(outputs, y, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self.distillation_outputs(x, y, sample_weight, training=False)
        return self._update_metrics(outputs, y, sample_weight)

    def _update_metrics(self, outputs: dict, y, sample_weight) -> dict:
        batch = ops.cast(ops.shape(outputs["student_logits"])[0], "float32")
        self._loss_tracker.update_state(self._total_loss(outputs), sample_weight=batch)
        self.student_loss_tracker.update_state(outputs["student_loss"], sample_weight=batch)
        self.distillation_loss_tracker.update_state(outputs["distillation_loss"], sample_weight=batch)
        if self.hidden_loss_tracker is not None:
            self.hidden_loss_tracker.update_state(outputs["hidden_loss"], sample_weight=batch)
        if y is not None:
            self.accuracy.update_state(y, outputs["student_logits"], sample_weight=sample_weight)
        return self.get_metrics_result()

    # --- raw text ---

    def _is_text(self, x) -> bool:
        """Whether ``x`` is raw text for the student's preprocessor (checked to be the teacher's too)."""
        uses_preprocessing = getattr(self.student, "_uses_preprocessing", None)
        if uses_preprocessing is None or x is None or not uses_preprocessing(x):
            return False
        self._check_shared_preprocessor()
        return True

    def _check_shared_preprocessor(self) -> None:
        student, teacher = self.preprocessor, getattr(self.teacher, "preprocessor", None)
        if teacher is None or teacher is student:
            return
        if type(teacher) is type(student) and teacher.get_config() == student.get_config():
            return
        raise ValueError(
            "Raw text reaches the teacher through the student's preprocessor, but the teacher has a different one "
            f"({type(teacher).__name__} '{teacher.name}' vs {type(student).__name__} '{student.name}'). Give the "
            "student the teacher's preprocessor, or pass preprocessed features {'student': ..., 'teacher': ...}."
        )

    def _validation(self, validation_data, batch_size):
        if isinstance(validation_data, tf.data.Dataset) and self._is_text(validation_data):
            return self.student.preprocess_data(validation_data, batch_size=batch_size)
        if isinstance(validation_data, (tuple, list)) and self._is_text(validation_data[0]):
            return self.student.preprocess_data(*validation_data, batch_size=batch_size)
        return validation_data

    def fit(self, x=None, y=None, batch_size=None, validation_data=None, **kwargs):
        """``Model.fit``; raw text goes through the student's preprocessor (shared with the teacher)."""
        validation_data = self._validation(validation_data, batch_size)
        if not self._is_text(x):
            return super().fit(x, y, batch_size=batch_size, validation_data=validation_data, **kwargs)
        sample_weight, shuffle = kwargs.pop("sample_weight", None), kwargs.pop("shuffle", True)
        data = self.student.preprocess_data(x, y, sample_weight, batch_size, shuffle=shuffle)
        return super().fit(data, validation_data=validation_data, shuffle=False, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        if not self._is_text(x):
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)
        data = self.student.preprocess_data(x, y, kwargs.pop("sample_weight", None), batch_size)
        return super().evaluate(data, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        if not self._is_text(x):
            return super().predict(x, batch_size=batch_size, **kwargs)
        return super().predict(self.student.preprocess_data(x, batch_size=batch_size), **kwargs)

    # --- serialization ---

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "temperature": self.temperature,
            "alpha": self.alpha,
            "hidden_weight": self.hidden_weight,
            "hidden_layers": self.hidden_layers,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config[STUDENT] = keras.saving.deserialize_keras_object(config[STUDENT])
        config[TEACHER] = keras.saving.deserialize_keras_object(config[TEACHER])
        return cls(**config)
