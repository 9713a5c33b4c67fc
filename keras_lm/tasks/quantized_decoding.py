"""Low-precision weights for decoding: a copy of a decoder backbone that reads bfloat16 or int8 weights.

Greedy decoding one token at a time reads every weight once per step, so at small batch sizes its
speed is the memory bandwidth divided by the bytes of the weights. ``decoding_backbone(backbone,
weight_dtype)`` returns a copy of a ``keras_lm.models.Decoder`` holding its weights once in

- ``"float32"``: the backbone itself (no copy);
- ``"bfloat16"``: every weight cast to bfloat16, and the copy computes in bfloat16 (the Keras
  ``"bfloat16"`` dtype policy: half the bytes, and oneDNN's bfloat16 matmuls on CPUs that have
  them). Norm statistics and the attention softmax are computed in float32 as under
  ``mixed_bfloat16``; the residual stream and the KV cache are bfloat16, and the logits come
  from a bfloat16 matmul (returned as float32);
- ``"int8"``: Keras' own int8 quantization (``Model.quantize("int8")``): every ``Dense`` kernel and
  the token embedding as int8 with one float32 scale per output channel (per token row for the
  embedding), activations quantized per row at run time. The tied output projection (the
  transposed token embedding, the largest read) multiplies by the same int8 table.

The copy is made on first use and refreshed when the backbone's weights change (training, loading
weights): ``DecodingWeights`` keeps a fingerprint of the float32 weights (one fused reduction over
them, a few milliseconds for a 45M-parameter model) and re-copies into the same variables, so compiled
generation functions stay valid.

Measured (figures in ``keras_lm.tasks.causal_lm.default_weight_dtype``): on a 2-core AVX-512 CPU,
int8 decodes 1.3-1.45x faster than float32 at batch 8 (XLA's int8 dot) and bfloat16 is no faster
at batch 1; both change greedy tokens (1-3% of the largest |logit| for a model drawn at std 0.02),
so ``CausalLM.generate`` keeps float32 unless asked.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lm.models.decoder import Decoder

WEIGHT_DTYPES = ("float32", "bfloat16", "int8")


def check_weight_dtype(weight_dtype) -> str:
    """``weight_dtype`` if it is one of ``WEIGHT_DTYPES``; one clear ``ValueError`` otherwise."""
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(
            f"weight_dtype must be one of {', '.join(repr(d) for d in WEIGHT_DTYPES)} (or None for the "
            f"default), got {weight_dtype!r}."
        )
    return weight_dtype


@keras.saving.register_keras_serializable(package="keras_lm")
class LowPrecisionDecoder(Decoder):
    """A ``Decoder`` whose tied output projection also reads an int8-quantized token embedding.

    Keras' int8 ``Embedding`` stores ``round(embeddings * scale)`` as int8 with one float32
    ``embeddings_scale`` per token row; the logits are then ``(q(h) @ table^T) / (scale_h * scale)``
    with ``q(h)`` the per-row int8 quantization of the hidden states (as Keras' int8 ``Dense`` does).
    Unquantized, it is a plain ``Decoder``. Build it with ``decoding_backbone``.
    """

    def logits(self, sequence_output):
        embedding = self.token_embedding
        if self.lm_head is not None or embedding.quantization_mode != "int8":
            return super().logits(sequence_output)
        hidden = tf.cast(sequence_output, tf.float32)
        flat = tf.reshape(hidden, (-1, self.hidden_dim))
        quantized, hidden_scale = keras.quantizers.abs_max_quantize(flat, axis=-1)
        table = tf.convert_to_tensor(embedding._embeddings)
        products = tf.matmul(quantized, table, transpose_b=True, output_type=tf.int32)
        logits = tf.cast(products, tf.float32) / (hidden_scale * embedding.embeddings_scale[None, :])
        return tf.reshape(logits, tf.concat([tf.shape(hidden)[:-1], [self.vocabulary_size]], axis=0))


def _quantizable(layer) -> bool:
    return isinstance(layer, (keras.layers.Dense, keras.layers.Embedding))


def decoding_backbone(backbone, weight_dtype: str):
    """A copy of ``backbone`` (a ``Decoder``) holding its weights in ``weight_dtype``.

    ``"float32"`` returns ``backbone`` itself. A backbone with a float16/bfloat16 policy already
    reads 16-bit weights only if its variables are 16-bit; the copy always stores them as asked.

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Gpt2("tiny", vocabulary_size=256, max_sequence_length=32)
        >>> copy = decoding_backbone(backbone, "int8")
        >>> str(copy.token_embedding._embeddings.dtype), str(copy.token_embedding.embeddings_scale.dtype)
        ('int8', 'float32')
    """
    check_weight_dtype(weight_dtype)
    if weight_dtype == "float32":
        return backbone
    if not isinstance(backbone, Decoder):
        raise TypeError(f"Low-precision decoding needs a keras_lm Decoder backbone, got {type(backbone).__name__}.")
    config = Decoder.get_config(backbone)
    config["dtype"] = "bfloat16" if weight_dtype == "bfloat16" else "float32"
    config["name"] = f"{backbone.name}_{weight_dtype}_decoding"
    copy = LowPrecisionDecoder(**config)
    _copy_values(backbone, copy)
    if weight_dtype == "int8":
        with _quiet_quantize():
            copy.quantize("int8", filters=_quantizable, type_check=False)
    return copy


def _copy_values(source, target) -> None:
    """Float weights of ``source`` into the same-structured ``target`` (cast to its variables' dtypes)."""
    if len(source.weights) != len(target.weights):
        raise ValueError(f"Cannot copy {len(source.weights)} weights into {len(target.weights)}.")
    for source_weight, target_weight in zip(source.weights, target.weights):
        target_weight.assign(ops.cast(ops.cast(source_weight, "float32"), target_weight.dtype))


class _quiet_quantize:
    """Silences Keras' "quantize() is not implemented for …" warnings of the layers it skips."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


class DecodingWeights:
    """Low-precision copies of one backbone, kept in step with its float32 weights.

    ``get(weight_dtype)`` returns the copy for ``weight_dtype`` (the backbone itself for float32),
    refreshed in place when the backbone's weights changed since the copy was made.

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Gpt2("tiny", vocabulary_size=256, max_sequence_length=32)
        >>> weights = DecodingWeights(backbone)
        >>> weights.get("bfloat16") is weights.get("bfloat16"), weights.get("float32") is backbone
        (True, True)
    """

    def __init__(self, backbone):
        self.backbone = backbone
        self._copies = {}  # weight_dtype -> (copy, fingerprint of the backbone when copied)
        self._fingerprint_function = None

    def fingerprint(self) -> np.ndarray:
        """Sum and sum of squares of every backbone weight: changes whenever a weight does."""
        if self._fingerprint_function is None:
            variables = list(self.backbone.weights)  # the untied lm_head's kernel included

            def sums():
                values = [tf.cast(tf.convert_to_tensor(v), tf.float32) for v in variables]
                return tf.stack([tf.stack([tf.reduce_sum(v), tf.reduce_sum(v * v)]) for v in values])

            # One fused pass over the weights (about 8 ms for 178 MB here); float32 sums are
            # deterministic for unchanged values on one device.
            self._fingerprint_function = tf.function(sums, jit_compile=True)
        return self._fingerprint_function().numpy()

    def get(self, weight_dtype: str):
        check_weight_dtype(weight_dtype)
        if weight_dtype == "float32":
            return self.backbone
        fingerprint = self.fingerprint()
        if weight_dtype not in self._copies:
            self._copies[weight_dtype] = (decoding_backbone(self.backbone, weight_dtype), fingerprint)
        copy, copied_from = self._copies[weight_dtype]
        if not np.array_equal(copied_from, fingerprint):
            fresh = decoding_backbone(self.backbone, weight_dtype)
            for old, new in zip(copy.weights, fresh.weights):
                old.assign(new)
            self._copies[weight_dtype] = (copy, fingerprint)
        return copy
