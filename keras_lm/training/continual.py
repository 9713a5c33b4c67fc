"""Continual learning: keep what an earlier task taught while training on the next one.

- ``L2SP(variables, alpha)``: ``alpha / 2 * sum((w - w0) ** 2)``, with ``w0`` the variables' values
  when the penalty is made (Li et al., 2018: "Explicit inductive bias for transfer learning");
- ``EWC(variables, fisher, strength)``: ``strength / 2 * sum(F * (w - w*) ** 2)``, with ``F`` the
  diagonal Fisher information of the earlier task (``fisher_information``) and ``w*`` the values
  after it (Kirkpatrick et al., 2017: "Overcoming catastrophic forgetting in neural networks");
- ``ReplayBuffer`` / ``mix_replay``: a fixed-size sample of earlier examples mixed into the new
  task's stream at an exact ratio.

How the penalties reach ``compile``/``fit``: ``attach()`` (or ``with penalty:``) sets each
variable's Keras ``regularizer`` (the hook ``add_weight(regularizer=...)`` sets), so the penalty is
one of ``model.losses`` and ``Model.compute_loss`` adds it to the loss of every train step (and, as
with any Keras regularizer, to the reported loss of ``evaluate``). Any model holding the variables
trains with it, raw-text tasks included; no wrapper model and no callback is needed, and ``detach()``
restores the variables' own regularizers. Attach before ``compile`` (or before the first ``fit``
after it): a traced train step does not see a penalty attached later.
"""
from __future__ import annotations

import fractions
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_lm.data.augmentation import dataset_of_examples

FISHER_LABELS = ("empirical", "model")


def variables_of(variables) -> list:
    """A list of distinct variables: given as such, or the trainable variables of a layer or model.

    Example:
        >>> import keras
        >>> layer = keras.layers.Dense(2)
        >>> layer.build((None, 3))
        >>> [v.name for v in variables_of(layer)]
        ['kernel', 'bias']
    """
    if isinstance(variables, keras.layers.Layer):
        found = list(variables.trainable_variables)
    elif isinstance(variables, (list, tuple)):
        found = list(variables)
    else:
        raise TypeError("Pass a list of variables, or a Keras layer or model (its trainable variables are used); "
                        f"got {type(variables).__name__}.")
    if not found:
        raise ValueError("No variables to anchor: the list is empty (or the layer has no trainable variable).")
    unique, seen = [], set()
    for variable in found:
        if id(variable) not in seen:
            unique.append(variable)
            seen.add(id(variable))
    return unique


class _AnchorTerm:
    """One variable's term ``strength / 2 * sum(importance * (w - anchor) ** 2)`` (plus the variable's
    own regularizer, kept), computed in float32; the anchor and importance live in non-trainable
    ``tf.Variable``s (not graph constants)."""

    def __init__(self, anchor: tf.Variable, importance: tf.Variable | None, strength: float, previous=None):
        self.anchor, self.importance, self.strength, self.previous = anchor, importance, strength, previous

    def __call__(self, value):
        difference = tf.cast(tf.convert_to_tensor(value), tf.float32) - self.anchor
        squared = tf.square(difference)
        if self.importance is not None:
            squared = self.importance * squared
        term = 0.5 * self.strength * tf.reduce_sum(squared)
        if self.previous is not None:
            term = term + tf.cast(self.previous(value), tf.float32)
        return term


class AnchoredPenalty:
    """``strength / 2 * sum_i importance_i * (w_i - anchor_i) ** 2`` over ``variables``.

    The anchors are the variables' values when the penalty is made; ``importance`` (one array per
    variable, e.g. a diagonal Fisher) defaults to ones. See the module docstring for how it joins
    ``fit``; ``L2SP`` and ``EWC`` are the two named cases.

    Args:
        variables: a list of variables, or a layer/model (its trainable variables).
        strength: the coefficient (``alpha`` of L2-SP, ``lambda`` of EWC), >= 0.
        importance: None, or one non-negative array per variable, of its shape.

    Example:
        >>> import keras, numpy as np
        >>> layer = keras.layers.Dense(2)
        >>> layer.build((None, 3))
        >>> penalty = AnchoredPenalty(layer, strength=2.0)
        >>> float(penalty.value())
        0.0
        >>> _ = layer.bias.assign(np.array([1.0, 2.0], "float32"))
        >>> float(penalty.value())  # 2 / 2 * (1 + 4)
        5.0
    """

    def __init__(self, variables, strength: float, importance: Sequence[np.ndarray] | None = None):
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength < float("inf"):
            raise ValueError(f"The penalty's strength must be a finite number >= 0, got {strength!r}.")
        self.variables = variables_of(variables)
        self.strength = float(strength)
        self.anchors = [tf.Variable(tf.cast(tf.convert_to_tensor(v), tf.float32), trainable=False,
                                    name="anchor") for v in self.variables]
        self.importance = None
        if importance is not None:
            importance = list(importance)
            if len(importance) != len(self.variables):
                raise ValueError(f"{len(importance)} importance arrays for {len(self.variables)} variables.")
            checked = []
            for variable, values in zip(self.variables, importance):
                values = np.asarray(values, dtype=np.float32)
                if values.shape != tuple(variable.shape):
                    raise ValueError(f"The importance of variable '{variable.path}' has shape {values.shape}; "
                                     f"the variable's is {tuple(variable.shape)}.")
                if not np.all(np.isfinite(values)) or np.any(values < 0):
                    raise ValueError(f"The importance of variable '{variable.path}' must be finite and >= 0.")
                checked.append(tf.Variable(values, trainable=False, name="importance"))
            self.importance = checked
        self._previous = None

    @property
    def attached(self) -> bool:
        return self._previous is not None

    def terms(self) -> list:
        """Each variable's penalty term as a callable of its value."""
        importance = self.importance or [None] * len(self.variables)
        return [_AnchorTerm(anchor, weight, self.strength) for anchor, weight in zip(self.anchors, importance)]

    def value(self) -> tf.Tensor:
        """The penalty at the variables' current values (float32 scalar)."""
        return tf.add_n([term(variable) for term, variable in zip(self.terms(), self.variables)])

    def attach(self) -> "AnchoredPenalty":
        """Makes the penalty part of ``model.losses`` of every model holding the variables."""
        if self.attached:
            return self
        self._previous = [variable.regularizer for variable in self.variables]
        for variable, term, previous in zip(self.variables, self.terms(), self._previous):
            term.previous = previous
            variable.regularizer = term
        return self

    def detach(self) -> None:
        """Gives the variables back their own regularizers (recompile, or the traced step keeps the penalty)."""
        if not self.attached:
            return
        for variable, previous in zip(self.variables, self._previous):
            variable.regularizer = previous
        self._previous = None

    def __enter__(self) -> "AnchoredPenalty":
        return self.attach()

    def __exit__(self, *exc_info) -> None:
        self.detach()

    def get_config(self) -> dict:
        return {"strength": self.strength, "variables": [v.path for v in self.variables]}


class L2SP(AnchoredPenalty):
    """L2-SP: ``alpha / 2 * ||w - w0||^2``, ``w0`` the values of ``variables`` now (e.g. pretrained, or
    after an earlier task). Usually given a backbone, so that a new head is not held back.

    Example:
        >>> penalty = L2SP(classifier.backbone, alpha=0.01).attach()  # doctest: +SKIP
        >>> classifier.compile(optimizer="adam", loss=...)  # doctest: +SKIP
        >>> classifier.fit(task_b)  # the loss includes the penalty  # doctest: +SKIP
    """

    def __init__(self, variables, alpha: float = 0.01):
        super().__init__(variables, strength=alpha)

    @property
    def alpha(self) -> float:
        return self.strength


class EWC(AnchoredPenalty):
    """Elastic weight consolidation: ``strength / 2 * sum(F * (w - w*) ** 2)``.

    ``fisher`` is the diagonal Fisher information of the earlier task, one array per variable (see
    ``fisher_information``); ``w*`` are the values of ``variables`` now (after the earlier task).

    Example:
        >>> ewc = EWC.from_data(classifier, task_a_batches, strength=1000.0)  # doctest: +SKIP
        >>> with ewc:  # doctest: +SKIP
        ...     classifier.compile(optimizer="adam", loss=...)
        ...     classifier.fit(task_b)
    """

    def __init__(self, variables, fisher: Sequence[np.ndarray], strength: float = 1.0):
        super().__init__(variables, strength=strength, importance=fisher)

    @classmethod
    def from_data(cls, model, data, strength: float = 1.0, variables=None, num_examples: int | None = None,
                  labels: str = "empirical") -> "EWC":
        """The Fisher of ``model`` on ``data`` (see ``fisher_information``), anchored at the current values."""
        variables = variables_of(model if variables is None else variables)
        fisher = fisher_information(model, data, variables=variables, num_examples=num_examples, labels=labels)
        return cls(variables, fisher, strength=strength)

    @property
    def fisher(self) -> list:
        return [keras.ops.convert_to_numpy(values) for values in self.importance]


# -- the Fisher information --------------------------------------------------------------------------


def classification_log_likelihood(labels, logits) -> tf.Tensor:
    """``log p(label | x)`` summed over the examples, from logits ``[batch, classes]``.

    Example:
        >>> round(float(classification_log_likelihood([1], [[0.0, 0.0]])), 4)  # log(1/2)
        -0.6931
    """
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    logits = tf.reshape(tf.cast(logits, tf.float32), [tf.shape(labels)[0], -1])
    return -tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def fisher_information(model, data, variables=None, num_examples: int | None = None, labels: str = "empirical",
                       log_likelihood: Callable | None = None) -> list[np.ndarray]:
    """The diagonal Fisher information of ``model`` on ``data``, one array per variable.

    ``F = mean over examples of (d log p(y | x) / d w) ** 2``, each example's gradient taken alone
    (dropout off). ``labels="empirical"`` uses the data's labels ``y``; ``labels="model"`` takes the
    expectation over the model's own predictive distribution, exactly:
    ``sum_c p(c | x) * (d log p(c | x) / d w) ** 2`` (one gradient per class).

    Args:
        model: maps ``x`` to logits ``[batch, classes]`` (e.g. ``keras_lm.tasks.Classifier``; a task with
            a preprocessor takes raw text batches).
        data: a ``tf.data.Dataset`` of batches ``(x, y)`` or ``(x, y, sample_weight)`` (weights unused).
        variables: a list of variables, or a layer (its trainable variables); default: the model's.
        num_examples: stop after this many examples (default: all of ``data``).
        labels: ``"empirical"`` or ``"model"`` (see above).
        log_likelihood: for ``"empirical"`` with other outputs: ``f(y, y_pred) -> log p(y | x)`` of one
            example (a scalar); default ``classification_log_likelihood``.

    Example:
        >>> fisher = fisher_information(classifier, task_a_batches, num_examples=512)  # doctest: +SKIP
        >>> [f.shape for f in fisher][:1]  # doctest: +SKIP
        [(1000, 128)]
    """
    if labels not in FISHER_LABELS:
        raise ValueError(f"`labels` must be one of {', '.join(FISHER_LABELS)}, got {labels!r}.")
    if labels == "model" and log_likelihood is not None:
        raise ValueError("`log_likelihood` is for labels='empirical'; labels='model' needs logits [batch, classes].")
    if num_examples is not None and (isinstance(num_examples, bool) or not isinstance(num_examples, int)
                                     or num_examples < 1):
        raise ValueError(f"`num_examples` must be a positive integer or None, got {num_examples!r}.")
    if not isinstance(data, tf.data.Dataset):
        raise TypeError(f"fisher_information takes a tf.data.Dataset of (x, y) batches, got {type(data).__name__}.")
    variables = variables_of(model if variables is None else variables)
    data = _model_inputs(model, data)
    log_likelihood = log_likelihood or classification_log_likelihood
    sums = [np.zeros(tuple(v.shape), np.float64) for v in variables]
    seen = 0

    def squared_gradients(x, y):
        with tf.GradientTape(persistent=labels == "model") as tape:
            outputs = model(x, training=False)
            if labels == "empirical":
                targets = [(log_likelihood(y, outputs), None)]
            else:
                log_probs = tf.nn.log_softmax(tf.cast(outputs, tf.float32), axis=-1)[0]
                probabilities = tf.stop_gradient(tf.exp(log_probs))
                targets = [(log_probs[c], probabilities[c]) for c in range(outputs.shape[-1])]
        totals = [tf.zeros(v.shape, tf.float32) for v in variables]
        for target, weight in targets:
            gradients = tape.gradient(target, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            for i, gradient in enumerate(gradients):
                squared = tf.square(tf.cast(tf.convert_to_tensor(gradient), tf.float32))
                totals[i] = totals[i] + (squared if weight is None else weight * squared)
        del tape
        return totals

    @tf.function(reduce_retracing=True)
    def batch_sums(x, y):
        count = tf.shape(y)[0]
        totals = [tf.zeros(v.shape, tf.float32) for v in variables]
        for i in tf.range(count):
            one_x = tf.nest.map_structure(lambda t: t[i: i + 1], x)
            squared = squared_gradients(one_x, y[i: i + 1])
            totals = [total + value for total, value in zip(totals, squared)]
        return totals

    for batch in data:
        x, y = batch[0], batch[1]
        if num_examples is not None:
            keep = num_examples - seen
            x, y = tf.nest.map_structure(lambda t: t[:keep], x), y[:keep]
        count = int(tf.shape(y)[0])
        if count == 0:
            break
        for total, value in zip(sums, batch_sums(x, y)):
            total += value.numpy()
        seen += count
        if num_examples is not None and seen >= num_examples:
            break
    if not seen:
        raise ValueError("fisher_information got no example: the data is empty.")
    return [(total / seen).astype(np.float32) for total in sums]


def _model_inputs(model, data: tf.data.Dataset) -> tf.data.Dataset:
    """``data`` as the model takes it: a task with a preprocessor maps raw text batches to features."""
    spec = data.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError("fisher_information needs batches of (x, y): the labels are part of the likelihood.")
    first = tf.nest.flatten(spec[0])[0]
    if first.dtype == tf.string:
        if getattr(model, "preprocessor", None) is None or not hasattr(model, "preprocess_data"):
            raise ValueError("The data holds raw text but the model has no preprocessor: preprocess it first.")
        data = model.preprocess_data(data)
    return data


# -- replay -------------------------------------------------------------------------------------------


class ReplayBuffer:
    """A fixed-size uniform sample of the examples seen so far (reservoir sampling), for replay.

    ``add`` streams examples (one per element) through Algorithm R with a seeded generator: after any
    number of them each is kept with the same probability ``capacity / seen``. ``dataset()`` gives
    the kept examples, ``mix(current, ratio)`` mixes them into a new task's stream (``mix_replay``).

    Example:
        >>> import tensorflow as tf
        >>> buffer = ReplayBuffer(capacity=3, seed=0)
        >>> buffer.add(tf.data.Dataset.from_tensor_slices((["a", "b", "c", "d", "e"], [0, 1, 0, 1, 0])))
        >>> len(buffer), buffer.seen
        (3, 5)
    """

    def __init__(self, capacity: int, seed: int = 0):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"ReplayBuffer: `capacity` must be a positive integer, got {capacity!r}.")
        self.capacity = capacity
        self.seed = seed
        self.examples: list = []
        self.seen = 0
        self.element_spec = None
        self._random = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.examples)

    def add(self, examples: tf.data.Dataset) -> None:
        """Streams the (unbatched) examples of a dataset through the reservoir."""
        if not isinstance(examples, tf.data.Dataset):
            raise TypeError(f"ReplayBuffer.add takes a tf.data.Dataset, got {type(examples).__name__}.")
        spec = examples.element_spec
        if self.element_spec is not None and not _same_structure(spec, self.element_spec):
            raise ValueError(f"ReplayBuffer.add: these examples are {spec}; the buffer holds {self.element_spec}.")
        self.element_spec = spec
        for example in examples.as_numpy_iterator():
            self.seen += 1
            if len(self.examples) < self.capacity:
                self.examples.append(example)
            else:
                slot = int(self._random.integers(0, self.seen))
                if slot < self.capacity:
                    self.examples[slot] = example

    def dataset(self) -> tf.data.Dataset:
        """The kept examples, in the buffer's order."""
        if not self.examples:
            raise ValueError("The replay buffer is empty: add examples first.")
        return dataset_of_examples(self.examples, self.element_spec)

    def mix(self, current: tf.data.Dataset, ratio: float, seed: int | None = None) -> tf.data.Dataset:
        """``mix_replay(current, self.dataset(), ratio, seed)`` (seed defaults to the buffer's)."""
        return mix_replay(current, self.dataset(), ratio, seed=self.seed if seed is None else seed)


def replay_selector(ratio: float) -> tf.data.Dataset:
    """The infinite 0/1 choices of ``mix_replay``: element ``i`` is 1 (replay) when
    ``floor((i + 1) * ratio) > floor(i * ratio)``, in exact rational arithmetic, so that any first
    ``n`` choices hold exactly ``floor(n * ratio)`` ones, evenly spread.

    Example:
        >>> [int(choice) for choice in replay_selector(0.25).take(8)]
        [0, 0, 0, 1, 0, 0, 0, 1]
    """
    fraction = fractions.Fraction(ratio).limit_denominator(1_000_000)
    numerator, denominator = fraction.numerator, fraction.denominator
    return tf.data.Dataset.counter().map(
        lambda i: (i + 1) * numerator // denominator - i * numerator // denominator)


def mix_replay(current: tf.data.Dataset, replay: tf.data.Dataset, ratio: float,
               seed: int | None = None) -> tf.data.Dataset:
    """``current`` with replayed examples interleaved so that they are a fraction ``ratio`` of the stream.

    Of any first ``n`` elements exactly ``floor(n * ratio)`` come from ``replay`` (see
    ``replay_selector``). ``replay`` is shuffled with ``seed`` (anew on each pass) and repeated as
    needed; the stream ends when ``current`` does. Both datasets hold single examples of the same
    structure and types; batch after mixing.

    Example:
        >>> import tensorflow as tf
        >>> new = tf.data.Dataset.from_tensor_slices((["b1", "b2", "b3"], [2, 3, 2]))
        >>> old = tf.data.Dataset.from_tensor_slices((["a1"], [0]))
        >>> [int(label) for _, label in mix_replay(new, old, 0.5, seed=0)]
        [2, 0, 3, 0, 2, 0]
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(f"The replay `ratio` must be a number in [0, 1) (the fraction of replayed examples), "
                         f"got {ratio!r}.")
    if not _same_structure(current.element_spec, replay.element_spec):
        raise ValueError(f"The replayed examples are {replay.element_spec} but the current task's are "
                         f"{current.element_spec}: give them the same structure and types.")
    if ratio == 0:
        return current
    count = int(replay.cardinality())
    replay = replay.shuffle(count if count > 0 else 10_000, seed=seed, reshuffle_each_iteration=True).repeat()
    return tf.data.Dataset.choose_from_datasets([current, replay], replay_selector(ratio),
                                                stop_on_empty_dataset=True)


def _same_structure(first, second) -> bool:
    try:
        tf.nest.assert_same_structure(first, second)
    except (ValueError, TypeError):
        return False
    return all(a.dtype == b.dtype and a.shape.rank == b.shape.rank
               for a, b in zip(tf.nest.flatten(first), tf.nest.flatten(second)))
