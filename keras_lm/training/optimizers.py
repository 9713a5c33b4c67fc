"""Optimizer presets."""
import keras
import tensorflow as tf

from keras_lm.training.schedules import WarmupCosineDecay, WarmupLinearDecay

#: Variables whose names match one of these are not weight-decayed: biases, LayerNorm's gamma and
#: beta, RMSNorm's scale. (Under TensorFlow the name searched is the variable's path, "block/norm/scale:0".)
NO_DECAY_NAMES = ("bias", "gamma", "beta", "layer_norm", "layernorm", r"(^|/)scale(:\d+)?$")
#: Shapes of the learning rate after warmup (see `adamw`).
DECAYS = ("linear", "cosine")


@keras.saving.register_keras_serializable(package="keras_lm")
class AdamW(keras.optimizers.AdamW):
    """Keras AdamW with a fused update, whose sparse gradients are summed per row before the update.

    Dense gradients update each variable with TensorFlow's fused Adam kernel (one pass over the
    variable and its two moments instead of about ten elementwise ops); the numbers are Keras'.

    Keras 3.15's Adam squares an ``IndexedSlices`` gradient entry by entry, so a token that appears
    ``k`` times in a batch adds the sum of ``k`` squares to the second moment instead of the square
    of the summed gradient: embedding rows then move differently from the dense computation (and
    from gradient accumulation, which densifies). Summing duplicate rows first makes the update
    exact; it is what TF1's optimizers did.

    With ``gradient_accumulation_steps``, a learning-rate schedule is evaluated at the optimizer
    step (``iterations``, updates applied) rather than at Keras' micro-step counter, so ``warmup``
    and ``total`` count updates whether or not gradients are accumulated.
    """

    def update_step(self, gradient, variable, learning_rate):
        if not _fusable(self, gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        # One fused kernel per variable (TensorFlow's ApplyAdam: the same formula as Keras' Adam,
        # alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)) instead of about ten elementwise passes.
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
            use_locking=False,
        )

    def apply(self, grads, trainable_variables=None):
        return super().apply([_sum_duplicate_rows(g) for g in grads], trainable_variables)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Under tf.distribute the replicas' sparse gradients are concatenated: sum their rows again.
        reduced = super()._all_reduce_sum_gradients(grads_and_vars)
        return [(_sum_duplicate_rows(g), v) for g, v in reduced]

    def _get_current_learning_rate(self):
        schedule = self._learning_rate
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            return schedule(self.iterations)
        return super()._get_current_learning_rate()


def _handle(variable):
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def _fusable(optimizer, gradient, variable) -> bool:
    """True where TensorFlow's fused Adam kernel computes exactly Keras' update."""
    return (keras.backend.backend() == "tensorflow" and not optimizer.amsgrad
            and not isinstance(gradient, tf.IndexedSlices) and hasattr(variable, "handle"))


def _sum_duplicate_rows(gradient):
    if gradient is None or not isinstance(gradient, tf.IndexedSlices):
        return gradient
    rows, positions = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, positions, tf.shape(rows)[0])
    return tf.IndexedSlices(values, rows, gradient.dense_shape)


def adamw(
    learning_rate: float = 1e-4,
    warmup: int = 0,
    total: int | None = None,
    weight_decay: float = 0.01,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    clipnorm: float | None = 1.0,
    gradient_accumulation_steps: int | None = None,
    decay: str = "linear",
) -> AdamW:
    """AdamW with linear warmup and linear (or cosine) decay, no decay on biases and norms.

    Args:
        learning_rate: peak learning rate.
        warmup: warmup steps (linear from 0).
        total: total optimizer steps; when given, the rate decays to 0 at `total`.
            When None, the rate stays at `learning_rate` after warmup.
        weight_decay: decoupled weight decay applied to kernels and embeddings (not to the
            variables named in `NO_DECAY_NAMES`: biases, LayerNorm and RMSNorm parameters).
        gradient_accumulation_steps: passed to the Keras optimizer (accumulates gradients).
        decay: "linear" (`WarmupLinearDecay`) or "cosine" (`WarmupCosineDecay`, needs `total`).

    Example:
        >>> opt = adamw(3e-4, warmup=100, total=1000)
        >>> round(float(opt.learning_rate), 6)  # at step 0
        0.0
    """
    if learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be positive, got {learning_rate}.")
    if decay not in DECAYS:
        raise ValueError(f"Unknown decay {decay!r}; use one of {', '.join(DECAYS)}.")
    schedule = learning_rate
    if decay == "cosine":
        if total is None:
            raise ValueError("decay='cosine' needs `total`, the step at which the rate reaches 0.")
        schedule = WarmupCosineDecay(learning_rate, warmup=warmup, total=total)
    elif total is not None or warmup:
        schedule = WarmupLinearDecay(learning_rate, warmup=warmup, total=total)
    optimizer = AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        beta_2=beta_2,
        epsilon=epsilon,
        clipnorm=clipnorm,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    return optimizer
