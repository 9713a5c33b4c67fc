"""Optimizer presets."""
import keras

from keras_lm.training.schedules import WarmupLinearDecay

#: Variables whose names contain one of these are not weight-decayed (biases and LayerNorm).
NO_DECAY_NAMES = ("bias", "gamma", "beta", "layer_norm", "layernorm")


def adamw(
    learning_rate: float = 1e-4,
    warmup: int = 0,
    total: int | None = None,
    weight_decay: float = 0.01,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    clipnorm: float | None = 1.0,
    gradient_accumulation_steps: int | None = None,
) -> keras.optimizers.AdamW:
    """AdamW with linear warmup and linear decay, no decay on biases and LayerNorm.

    Args:
        learning_rate: peak learning rate.
        warmup: warmup steps (linear from 0).
        total: total optimizer steps; when given, the rate decays linearly to 0 at `total`.
            When None, the rate stays at `learning_rate` after warmup.
        weight_decay: decoupled weight decay applied to kernels and embeddings.
        gradient_accumulation_steps: passed to the Keras optimizer (accumulates gradients).

    Example:
        >>> opt = adamw(3e-4, warmup=100, total=1000)
        >>> round(float(opt.learning_rate), 6)  # at step 0
        0.0
    """
    if learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be positive, got {learning_rate}.")
    schedule = learning_rate
    if total is not None or warmup:
        schedule = WarmupLinearDecay(learning_rate, warmup=warmup, total=total)
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        beta_2=beta_2,
        epsilon=epsilon,
        clipnorm=clipnorm,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    return optimizer
