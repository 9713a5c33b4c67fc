"""SpanCorruption: T5's denoising objective for an encoder-decoder backbone, with its own loss and data."""
from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_lm.pretraining.span_corruption_data import (
    FEATURE_NAMES,
    check_noise_settings,
    noise_counts,
    random_spans_noise_mask,
    span_corruption,
    span_corruption_dataset,
    span_corruption_lengths,
    t5_sentinel_ids,
)
from keras_lm.training.optimizers import AdamW
from keras_lm.training.saving import RecompiledOnLoad

__all__ = [
    "SpanCorruption",
    "random_spans_noise_mask",
    "span_corruption",
    "span_corruption_dataset",
    "span_corruption_lengths",
    "t5_sentinel_ids",
]


def check_encoder_decoder_backbone(backbone) -> None:
    """Raise one clear TypeError unless ``backbone`` is an encoder-decoder with ``logits``."""
    inputs = getattr(backbone, "input", None)
    names = set(inputs) if isinstance(inputs, dict) else set()
    missing = [name for name in FEATURE_NAMES if name not in names]
    if not missing and hasattr(backbone, "logits"):
        return
    raise TypeError(
        "SpanCorruption needs an encoder-decoder backbone with inputs "
        f"{'/'.join(FEATURE_NAMES)} and `logits` (a keras_lm.models.EncoderDecoder such as "
        f"keras_lm.applications.T5); got {type(backbone).__name__}. Pretrain encoders with "
        "keras_lm.pretraining.MaskedLM and decoders with keras_lm.pretraining.CausalLM."
    )


@keras.saving.register_keras_serializable(package="keras_lm")
class SpanCorruption(RecompiledOnLoad, keras.Model):
    """T5 span-corruption pretraining of an encoder-decoder: corrupted text in, dropped spans out.

    ``call(features)`` maps the four ``EncoderDecoder`` inputs (``encoder_token_ids``,
    ``encoder_padding_mask``, ``decoder_token_ids``, ``decoder_padding_mask``) to float32 logits
    ``[batch, targets_length, vocabulary_size]`` (``backbone.logits`` of the decoder output).
    ``compile()`` uses sparse cross-entropy from logits averaged over the real target tokens (the
    dataset's ``sample_weight``; float32) and tracks a weighted ``accuracy``. ``dataset()`` turns a
    corpus into full-length corrupted rows (see ``keras_lm.pretraining.span_corruption_data``).

    Args:
        backbone: a ``keras_lm.models.EncoderDecoder`` (``keras_lm.applications.T5``).
        noise_density: fraction of corrupted tokens (T5: 0.15).
        mean_noise_span_length: mean corrupted span length (T5: 3.0).

    Raises:
        TypeError: at construction, if ``backbone`` is not an encoder-decoder.
        ValueError: at construction, for noise settings outside ``(0, 1)`` / below 1.

    Example:
        >>> import keras_hub, keras_lm
        >>> tokenizer = keras_hub.tokenizers.ByteTokenizer()  # ids 0-255; 256 = end, 257-356 sentinels
        >>> backbone = keras_lm.applications.T5(None, vocabulary_size=357, num_layers=1, num_heads=2,
        ...                                     hidden_dim=32, head_dim=16, intermediate_dim=64)
        >>> model = SpanCorruption(backbone)
        >>> model.compile(optimizer="adam")
        >>> works = keras_lm.data.load("shakespeare", split="validation")
        >>> batches = model.dataset(works, tokenizer, inputs_length=64, batch_size=4, eos_id=256)
        >>> history = model.fit(batches.take(2), verbose=0)
        >>> sorted(history.history)
        ['accuracy', 'loss']
    """

    def __init__(
        self,
        backbone: keras.Model,
        noise_density: float = 0.15,
        mean_noise_span_length: float = 3.0,
        **kwargs,
    ):
        check_encoder_decoder_backbone(backbone)
        check_noise_settings(noise_density, mean_noise_span_length)
        super().__init__(**kwargs)
        self.backbone = backbone
        self.noise_density = float(noise_density)
        self.mean_noise_span_length = float(mean_noise_span_length)
        self.built = True  # the backbone is built; the objective has no weights of its own

    def call(self, features, training=None):
        missing = [name for name in FEATURE_NAMES if name not in features]
        if missing:
            raise ValueError(f"SpanCorruption needs the inputs {', '.join(FEATURE_NAMES)}; missing {', '.join(missing)}.")
        outputs = self.backbone({name: features[name] for name in FEATURE_NAMES}, training=training)
        return self.backbone.logits(outputs["decoder_sequence_output"])

    def compile(self, optimizer="auto", loss="auto", weighted_metrics="auto", **kwargs):
        """Defaults: the masked token cross-entropy (mean over real target tokens) and a weighted accuracy.

        ``optimizer="auto"`` is ``keras_lm.training.AdamW`` (lr 1e-4, weight decay 0.01 except norms
        and biases, global norm clipping at 1.0).
        """
        if optimizer == "auto":
            optimizer = AdamW(learning_rate=1e-4, weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0)
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "scale"])
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight", dtype="float32"
            )
        if weighted_metrics == "auto":
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs)

    def dataset(
        self,
        corpus: tf.data.Dataset,
        tokenizer,
        inputs_length: int = 512,
        targets_length: int | None = None,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        sentinel_ids: Sequence[int] | None = None,
        eos_id: int | None = None,
        pad_id: int = 0,
        **kwargs,
    ) -> tf.data.Dataset:
        """Training batches ``(features, labels, sample_weight)`` for this model from a corpus.

        Args:
            corpus: documents (dicts with ``"text"``, e.g. ``keras_lm.data.load("shakespeare")``).
            tokenizer: string → 1-D ids (a keras-hub tokenizer or any graph-safe function).
            inputs_length, targets_length: encoder / decoder tokens per row (T5: 512 / 114).
            batch_size, shuffle, seed: see ``span_corruption_dataset``.
            sentinel_ids: one id per span; default: the top ids of the backbone's vocabulary (T5's
                convention), allowed only when they lie above the tokenizer's own ids.
            eos_id: end-of-sequence id; default ``tokenizer.end_token_id``.
            pad_id: padding id and decoder start id (T5: 0).
            **kwargs: ``drop_remainder``, ``shuffle_buffer``, ``cache``, ``decoder_start_id``.
        """
        tokens_length, _ = span_corruption_lengths(inputs_length, self.noise_density, self.mean_noise_span_length)
        _, spans = noise_counts(tokens_length, self.noise_density, self.mean_noise_span_length)
        sentinel_ids = self._sentinel_ids(tokenizer, sentinel_ids, spans)
        eos_id = _eos_id(tokenizer, eos_id)
        vocabulary_size = self.backbone.vocabulary_size
        out_of_range = [i for i in (*sentinel_ids, eos_id, pad_id) if not 0 <= i < vocabulary_size]
        if out_of_range:
            raise ValueError(f"Token ids {out_of_range[:5]} (sentinel/eos/pad) are outside the backbone's "
                             f"vocabulary of {vocabulary_size}.")
        return span_corruption_dataset(
            corpus, tokenizer, inputs_length=inputs_length, targets_length=targets_length, batch_size=batch_size,
            seed=seed, noise_density=self.noise_density, mean_noise_span_length=self.mean_noise_span_length,
            sentinel_ids=sentinel_ids, eos_id=eos_id, pad_id=pad_id, shuffle=shuffle, **kwargs,
        )

    def _sentinel_ids(self, tokenizer, sentinel_ids, spans: int) -> list[int]:
        if sentinel_ids is not None:
            return [int(i) for i in sentinel_ids]
        vocabulary_size = self.backbone.vocabulary_size
        tokenizer_size = _tokenizer_size(tokenizer)
        if tokenizer_size is None or tokenizer_size > vocabulary_size - spans:
            raise ValueError(
                f"SpanCorruption.dataset needs sentinel_ids: rows have {spans} noise spans, and the default "
                f"(the backbone's top ids, t5_sentinel_ids({vocabulary_size}, {spans})) would "
                + ("reuse ids of the tokenizer" if tokenizer_size is not None else "need the tokenizer's size")
                + f". Pass sentinel_ids=... (e.g. t5_sentinel_ids(tokenizer_vocabulary_with_extra_ids, {spans})) "
                "or give the backbone a vocabulary with room for the sentinels above the tokenizer's ids."
            )
        return t5_sentinel_ids(vocabulary_size, spans)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            "noise_density": self.noise_density,
            "mean_noise_span_length": self.mean_noise_span_length,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def _tokenizer_size(tokenizer) -> int | None:
    size = getattr(tokenizer, "vocabulary_size", None)
    if size is None:
        return None
    return int(size() if callable(size) else size)


def _eos_id(tokenizer, eos_id) -> int:
    if eos_id is None:
        eos_id = getattr(tokenizer, "end_token_id", None)
    if eos_id is None:
        raise ValueError("SpanCorruption.dataset needs the end-of-sequence id: pass eos_id=... (T5: 1) or a "
                         "tokenizer with an `end_token_id`.")
    return int(eos_id)
