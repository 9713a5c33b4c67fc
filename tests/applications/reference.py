"""Shared by the importer tests: every reference parameter random, and bf16-vs-float32 checks.

The rule for every importer test: transformers' default init leaves biases at 0 and norms at
gamma=1, beta=0, so a mapping that swaps or drops them would still match. Randomize every
parameter of the reference model before saving it, with `randomize_every_parameter`.
"""
import numpy as np
import tensorflow as tf


def randomize_every_parameter(model, seed, is_norm_scale, std=0.2):
    """Draws every parameter of a torch model from N(0, std), and norm scales (the parameter
    names for which `is_norm_scale(name)` is true) from N(1, std)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            offset = 1.0 if is_norm_scale(name) else 0.0
            parameter.copy_(offset + std * torch.randn(parameter.shape, generator=generator))


def logits_of(model, ids, mask):
    """A decoder backbone's float logits for token ids and a padding mask."""
    return np.asarray(model.logits(model({"token_ids": ids, "padding_mask": mask})["sequence_output"]))


def assert_close_at_bfloat16_scale(actual, expected):
    """bf16 logits agree with float32 ones, early and late in the sequence, relative to the logits' scale.

    bf16 keeps 8 significant bits (rounding error <= 2**-9 of a value); after the dozens of roundings
    of two blocks, 99% of the logits stay within 4e-2 of the scale and none beyond 1e-1 (a rare
    near-tie in attention amplifies). How far within depends on the CPU's bf16 kernels: 99th
    percentiles of 1-2% where bf16 is native (AVX-512 bf16), up to 2.5% where TensorFlow emulates it
    (AVX2 only). Whether the rotary angles stay in float32 is checked sharply at the layer
    (tests/layers/test_rms_norm_and_rotary.py), at positions where bf16 angles are radians off.
    """
    scale, error = np.abs(expected).max(), np.abs(actual - expected)
    length = expected.shape[1]
    for positions in (slice(0, length // 4), slice(3 * length // 4, length)):
        assert np.percentile(error[:, positions], 99) <= 4e-2 * scale, (positions, error[:, positions].max(), scale)
        assert error[:, positions].max() <= 1e-1 * scale, (positions, error[:, positions].max(), scale)
    assert error.max() > 0  # really computed in bfloat16


def causal_lm_gradients(backbone, vocabulary_size, seed=4):
    """Gradients of a masked next-token loss on random ids w.r.t. every trainable weight of a decoder.

    Returns (weights, numpy gradients, input ids, padding mask); the second row is right-padded."""
    import keras

    from keras_lm.tasks import CausalLM

    tokens = np.random.default_rng(seed).integers(0, vocabulary_size, (2, 13)).astype("int32")
    ids, labels = tokens[:, :-1], tokens[:, 1:]
    mask = np.array([[1] * 12, [1] * 9 + [0] * 3], "int32")
    with tf.GradientTape() as tape:
        logits = CausalLM(backbone)({"token_ids": ids, "padding_mask": mask}, training=True)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True) * mask)
    weights = backbone.trainable_weights
    gradients = tape.gradient(loss, weights)
    for weight, gradient in zip(weights, gradients):
        assert gradient is not None, weight.path
    return weights, [np.asarray(tf.convert_to_tensor(g)) for g in gradients], ids, mask


def nonzero_fraction(gradient):
    """The share of a gradient's elements that are not zero."""
    return float(np.mean(np.asarray(tf.convert_to_tensor(gradient)) != 0))
