"""Adversarial training on the input embeddings: FGM (Miyato et al., 2017) and PGD (Madry et al., 2018).

Each training step perturbs the output of the model's token embedding layer in the direction
that increases the loss, and trains on the clean and the perturbed batch together:

- FGM: ``r = epsilon * g / ||g||`` with ``g`` the gradient of the clean loss with respect to the
  embedding output;
- PGD: ``r_0 = 0``, ``r_t = project(r_{t-1} + alpha * g_t / ||g_t||)`` for ``t = 1..steps``, with
  ``g_t`` the gradient at ``e + r_{t-1}`` and ``project`` the scaling back onto the ball
  ``||r|| <= epsilon``; the adversarial batch uses ``r_steps``.

Norms are per example (over all positions and features, and over every call when the layer is
called more than once per pass, e.g. an embedding shared by an encoder and a decoder). The loss is
``clean + adversarial_weight * adversarial``; the perturbation itself receives no gradient.
Only the train step changes: ``predict``, ``evaluate`` and exports compute what they did.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_lm.training.layer_hooks import intercepted_call

ADVERSARIAL_METHODS = ("fgm", "pgd")
#: The attribute of a model that holds its ``AdversarialTraining`` while it is enabled.
SETTINGS_ATTRIBUTE = "adversarial_training"


def token_embedding_layer(model: keras.Model) -> keras.layers.Layer:
    """The token embedding layer of ``model``: its own ``token_embedding`` or its backbone's.

    Raises one ValueError when there is none (e.g. a classifier reloaded with
    ``Classifier.from_saved_model``, whose encoder is a SavedModel without Keras layers).
    """
    candidate = model
    for _ in range(3):  # a task, its backbone, a backbone wrapped once more
        layer = getattr(candidate, "token_embedding", None)
        if isinstance(layer, keras.layers.Layer):
            return layer
        candidate = getattr(candidate, "backbone", None)
        if candidate is None:
            break
    raise ValueError(
        f"Adversarial training perturbs the output of a token embedding layer, and "
        f"{type(model).__name__} '{model.name}' has none (no `token_embedding` on the model or its "
        "`backbone`). A classifier on a reloaded SavedModel encoder (Classifier.from_saved_model) hides "
        "its layers: start from a keras_lm backbone (Bert.from_hf, a .keras file) or pass `embedding=`."
    )


def _per_example_norm(parts: list):
    """The L2 norm per example over every part (``[batch, ...]`` tensors), shaped ``[batch, 1]``."""
    squares = [ops.sum(ops.reshape(ops.square(ops.cast(p, "float32")), (ops.shape(p)[0], -1)), axis=1) for p in parts]
    return ops.expand_dims(ops.sqrt(sum(squares[1:], squares[0])), -1)


def _per_example(scale, part):
    return ops.reshape(scale, (-1,) + (1,) * (len(part.shape) - 1))


def unit_direction(gradients: list) -> list:
    """``g / ||g||`` per example (float32), the norm taken over all parts together; zero where g is zero."""
    norm = _per_example_norm(gradients)
    scale = ops.where(norm > 0.0, 1.0 / ops.maximum(norm, 1e-30), ops.zeros_like(norm))
    return [ops.cast(g, "float32") * _per_example(scale, g) for g in gradients]


def project_to_ball(perturbations: list, epsilon: float) -> list:
    """The perturbations scaled per example onto ``||r|| <= epsilon`` where they lie outside."""
    scale = ops.minimum(1.0, epsilon / ops.maximum(_per_example_norm(perturbations), 1e-30))
    return [r * _per_example(scale, r) for r in perturbations]


class _EmbeddingProbe:
    """Within ``intercepted_call``: watches each embedding output of a forward pass and adds its perturbation.

    A layer called more than once per pass (a token embedding shared by an encoder and a decoder)
    has one output, and one perturbation, per call, in call order.
    """

    def __init__(self):
        self.tape = None
        self.perturbations = None
        self.outputs = []

    def start(self, tape) -> None:
        self.tape, self.outputs = tape, []

    def __call__(self, outputs):
        if self.tape is not None:
            self.tape.watch(outputs)  # also when the embeddings are frozen
        index = len(self.outputs)
        self.outputs.append(outputs)
        if self.perturbations is None:
            return outputs
        return outputs + ops.cast(self.perturbations[index], outputs.dtype)


class AdversarialTraining:
    """FGM or PGD perturbations of a model's token embeddings, as a replacement of its ``train_step``.

    Use ``adversarial_training(model, ...)`` to switch it on for a model; this class holds the
    settings and the computation.

    Args:
        method: ``"fgm"`` (one gradient step of size ``epsilon``) or ``"pgd"`` (``steps`` steps
            of size ``alpha`` inside the ``epsilon`` ball).
        epsilon: radius of the perturbation (L2 norm per example of the ``[length, hidden]``
            embedding output).
        alpha: PGD step size (FGM ignores it).
        steps: PGD steps (FGM takes exactly one).
        adversarial_weight: weight of the adversarial loss next to the clean one.
        embedding: the layer whose output is perturbed; default the model's token embedding.

    Example:
        >>> AdversarialTraining("pgd", epsilon=1.0, alpha=0.3, steps=3).get_config()["steps"]
        3
    """

    def __init__(self, method: str = "fgm", epsilon: float = 1.0, alpha: float = 0.3, steps: int | None = None,
                 adversarial_weight: float = 1.0, embedding: keras.layers.Layer | None = None):
        if method not in ADVERSARIAL_METHODS:
            raise ValueError(f"Unknown adversarial method {method!r}; use one of {', '.join(ADVERSARIAL_METHODS)}.")
        steps = (1 if method == "fgm" else 3) if steps is None else steps
        if int(steps) != steps or steps < 1:
            raise ValueError(f"`steps` must be a whole number of at least 1, got {steps}.")
        if method == "fgm" and steps != 1:
            raise ValueError(f"FGM takes exactly one step (got steps={steps}); use method='pgd' for several.")
        for name, value in (("epsilon", epsilon), ("alpha", alpha)):
            if not value > 0:
                raise ValueError(f"`{name}` must be positive, got {value}.")
        if not adversarial_weight >= 0:
            raise ValueError(f"`adversarial_weight` must be 0 or more, got {adversarial_weight}.")
        self.method = method
        self.epsilon = float(epsilon)
        self.alpha = float(alpha)
        self.steps = int(steps)
        self.adversarial_weight = float(adversarial_weight)
        self.embedding = embedding

    def get_config(self) -> dict:
        return {"method": self.method, "epsilon": self.epsilon, "alpha": self.alpha, "steps": self.steps,
                "adversarial_weight": self.adversarial_weight}

    def embedding_layer(self, model: keras.Model) -> keras.layers.Layer:
        return self.embedding if self.embedding is not None else token_embedding_layer(model)

    # --- the perturbation ---

    def _next_perturbation(self, perturbations: list, gradients: list) -> list:
        directions = unit_direction(gradients)
        if self.method == "fgm":
            return [self.epsilon * d for d in directions]
        return project_to_ball([r + self.alpha * d for r, d in zip(perturbations, directions)], self.epsilon)

    def _loss(self, model, x, y, sample_weight, probe, tape):
        probe.start(tape)
        y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
        probe.tape = None
        if not probe.outputs:
            raise ValueError(f"The layer '{self.embedding_layer(model).name}' was not called by {type(model).__name__} "
                             f"'{model.name}': pass the embedding layer that the model's forward pass uses.")
        loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        return y_pred, loss

    def _attack(self, model, x, y, sample_weight, probe, first_gradients: list) -> list:
        """The final perturbations, starting from the clean batch's embedding gradients."""
        perturbations = self._next_perturbation([ops.zeros_like(ops.cast(g, "float32")) for g in first_gradients],
                                                first_gradients)
        for _ in range(self.steps - 1):  # PGD: the gradient at the current point, then one more step
            probe.perturbations = [ops.stop_gradient(r) for r in perturbations]
            with tf.GradientTape() as tape:
                _, loss = self._loss(model, x, y, sample_weight, probe, tape)
            perturbations = self._next_perturbation(perturbations, _gradients(tape, loss, probe.outputs))
        return [ops.stop_gradient(r) for r in perturbations]

    def perturbation(self, model: keras.Model, x, y=None, sample_weight=None):
        """The perturbation one train step would add to the embedding output for this batch (float32).

        A list with one tensor per call of the embedding layer when the model calls it more than once.

        Runs the model in training mode (dropout on) without changing any weight; the model must be
        compiled (its loss is what the perturbation increases).
        """
        if not getattr(model, "compiled", False):
            raise ValueError(f"Compile {type(model).__name__} '{model.name}' first: the perturbation follows the "
                             "gradient of its loss.")
        probe = _EmbeddingProbe()
        with intercepted_call(self.embedding_layer(model), probe):
            with tf.GradientTape() as tape:
                _, loss = self._loss(model, x, y, sample_weight, probe, tape)
            perturbations = self._attack(model, x, y, sample_weight, probe, _gradients(tape, loss, probe.outputs))
        return perturbations[0] if len(perturbations) == 1 else perturbations

    # --- the train step ---

    def train_step(self, model: keras.Model, data) -> dict:
        """Keras' ``train_step`` with the loss ``clean + adversarial_weight * adversarial``."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        weights = model.trainable_weights
        probe = _EmbeddingProbe()
        with intercepted_call(self.embedding_layer(model), probe):
            with tf.GradientTape() as tape:
                y_pred, clean_loss = self._loss(model, x, y, sample_weight, probe, tape)
                scaled = model.optimizer.scale_loss(clean_loss)
            outputs = list(probe.outputs)
            gradients = tape.gradient(scaled, weights + outputs)
            clean_gradients = gradients[:len(weights)]
            embedding_gradients = [g if g is not None else ops.zeros_like(o)
                                   for g, o in zip(gradients[len(weights):], outputs)]
            probe.perturbations = self._attack(model, x, y, sample_weight, probe, embedding_gradients)
            with tf.GradientTape() as tape:
                _, adversarial_loss = self._loss(model, x, y, sample_weight, probe, tape)
                scaled = model.optimizer.scale_loss(self.adversarial_weight * adversarial_loss)
            adversarial_gradients = tape.gradient(scaled, weights)
        gradients = [_add(clean, adversarial) for clean, adversarial in zip(clean_gradients, adversarial_gradients)]
        model.optimizer.apply_gradients(zip(gradients, weights))
        total = clean_loss + self.adversarial_weight * adversarial_loss
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        batch = tf.shape(next(t for t in tf.nest.flatten(x) if t is not None))[0]
        model._loss_tracker.update_state(total * replicas, sample_weight=batch)  # Keras scales by 1 / replicas
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _gradients(tape, loss, outputs: list) -> list:
    """d loss / d each output (zeros for an output the loss does not depend on)."""
    gradients = tape.gradient(loss, outputs)
    return [g if g is not None else ops.zeros_like(o) for g, o in zip(gradients, outputs)]


def _add(first, second):
    if first is None:
        return second
    if second is None:
        return first
    if isinstance(first, tf.IndexedSlices) and isinstance(second, tf.IndexedSlices):
        # Embedding-row gradients stay sparse: the rows of both, duplicates summed by the optimizer.
        return tf.IndexedSlices(tf.concat([first.values, second.values], 0),
                                tf.concat([first.indices, second.indices], 0), first.dense_shape)
    if isinstance(first, tf.IndexedSlices) or isinstance(second, tf.IndexedSlices):
        return tf.convert_to_tensor(first) + tf.convert_to_tensor(second)
    return first + second


def adversarial_training(model: keras.Model, method: str = "fgm", epsilon: float = 1.0, alpha: float = 0.3,
                         steps: int | None = None, adversarial_weight: float = 1.0,
                         embedding: keras.layers.Layer | None = None) -> keras.Model:
    """Switches FGM or PGD training on for ``model`` (any task or model whose loss ``compile`` or
    ``compute_loss`` gives, with a token embedding layer) and returns the same model.

    ``fit`` then trains on the clean and the perturbed batch (see ``AdversarialTraining`` for the
    arguments); ``predict``, ``evaluate``, saving and exports are unchanged. The settings are in
    ``model.adversarial_training``; ``remove_adversarial_training(model)`` restores plain steps.

    Example:
        >>> import keras_lm
        >>> encoder = keras_lm.applications.Bert("tiny", vocabulary_size=100)
        >>> classifier = keras_lm.tasks.Classifier(encoder, num_classes=2)
        >>> classifier = adversarial_training(classifier, "fgm", epsilon=1.0)
        >>> classifier.compile(optimizer="adam")
        >>> classifier.adversarial_training.method
        'fgm'
    """
    if type(model).train_step is not keras.Model.train_step:
        raise ValueError(
            f"{type(model).__name__} defines its own train_step; adversarial training replaces Keras' "
            "standard step and needs a model whose loss comes from compile() or compute_loss()."
        )
    settings = AdversarialTraining(method, epsilon, alpha, steps, adversarial_weight, embedding)
    settings.embedding_layer(model)  # one clear error now rather than inside fit
    object.__setattr__(model, SETTINGS_ATTRIBUTE, settings)
    object.__setattr__(model, "train_step", lambda data: settings.train_step(model, data))
    model.train_function = None  # retrace fit's step with the new train_step
    return model


def remove_adversarial_training(model: keras.Model) -> keras.Model:
    """Undoes ``adversarial_training``: ``fit`` takes Keras' plain steps again."""
    for name in (SETTINGS_ATTRIBUTE, "train_step"):
        if name in vars(model):
            object.__delattr__(model, name)
    model.train_function = None
    return model
