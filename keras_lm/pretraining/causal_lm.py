"""CausalLM pretraining: next-token prediction on multi-document packed rows, with held-out perplexity."""
from __future__ import annotations

import keras
import keras_hub
import tensorflow as tf

from keras_lm.pretraining.causal_lm_data import causal_lm_dataset
from keras_lm.tasks.causal_lm import CausalLM as CausalLMTask


def check_decoder_backbone(backbone) -> None:
    """Raise one clear TypeError unless ``backbone`` is a decoder (``logits`` and ``call_with_cache``)."""
    if hasattr(backbone, "call_with_cache") and hasattr(backbone, "logits"):
        return
    hint = ""
    if hasattr(backbone, "pooler") or hasattr(backbone, "segment_embedding"):
        hint = (" It is an encoder: pretrain encoders with keras_lm.pretraining.BertPretrainer "
                "or MaskedLM.")
    raise TypeError(
        "CausalLM pretraining needs a decoder backbone with `logits` and `call_with_cache` (a "
        "keras_lm.models.Decoder such as keras_lm.applications.Gpt2 or Llama); got "
        f"{type(backbone).__name__}.{hint}"
    )


@keras.saving.register_keras_serializable(package="keras_lm", name="CausalLMPretrainer")
class CausalLM(CausalLMTask):
    """Causal-language-model pretraining of a decoder: ``keras_lm.tasks.CausalLM`` plus its data.

    ``dataset()`` packs a corpus into full rows (documents joined by the end-of-text token, no
    padding waste; ``reset_attention=True`` keeps attention inside each document) and
    ``compile()`` tracks ``perplexity`` (exp of the weighted mean token cross-entropy) next to the
    loss, so ``evaluate`` on held-out text reports perplexity. Everything else — ``fit``, callbacks,
    ``generate``, saving — is the task's.

    Args:
        backbone: a ``keras_lm.models.Decoder`` (``keras_lm.applications.Gpt2``, ``Llama``).
        tokenizer: a ``keras_lm.tokenizers.BytePair`` (or any tokenizer with ``end_token_id``);
            used by ``dataset()`` and by ``generate`` on strings.

    Raises:
        TypeError: at construction, if ``backbone`` is not a decoder (e.g. an encoder such as
            ``Bert``, which ``BertPretrainer`` / ``MaskedLM`` pretrain).

    Example:
        >>> import keras_lm
        >>> tokenizer = keras_lm.tokenizers.BytePair.gpt2()
        >>> backbone = keras_lm.applications.Gpt2("tiny", vocabulary_size=tokenizer.vocabulary_size())
        >>> model = CausalLM(backbone, tokenizer)
        >>> model.compile(optimizer=keras_lm.training.adamw(1e-3))
        >>> works = keras_lm.data.load("shakespeare", split="validation")
        >>> history = model.fit(model.dataset(works, sequence_length=64, batch_size=4).take(2), verbose=0)
        >>> sorted(history.history)
        ['accuracy', 'loss', 'perplexity']
    """

    def __init__(self, backbone, tokenizer=None, **kwargs):
        tokenizer = kwargs.pop("preprocessor_or_tokenizer", tokenizer)  # from get_config
        check_decoder_backbone(backbone)
        super().__init__(backbone, tokenizer, **kwargs)

    def compile(self, optimizer="adam", loss="auto", weighted_metrics="auto", **kwargs):
        """Sparse cross-entropy from logits; weighted ``accuracy`` and ``perplexity`` metrics."""
        if weighted_metrics == "auto":
            weighted_metrics = [
                keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                keras_hub.metrics.Perplexity(from_logits=True, name="perplexity"),
            ]
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs)

    def dataset(
        self,
        corpus: tf.data.Dataset,
        sequence_length: int | None = None,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        reset_attention: bool = False,
        **kwargs,
    ) -> tf.data.Dataset:
        """Packed ``(features, labels, sample_weight)`` batches from a corpus of documents.

        Args:
            corpus: documents (dicts with ``"text"``, e.g. ``keras_lm.data.load("shakespeare")``).
            sequence_length: tokens per row; defaults to the backbone's ``max_sequence_length``.
            batch_size, shuffle, seed, reset_attention, **kwargs: see
                ``keras_lm.pretraining.causal_lm_dataset``.
        """
        if self.tokenizer is None:
            raise ValueError("CausalLM.dataset needs a tokenizer: CausalLM(backbone, tokenizer).")
        limit = getattr(self.backbone, "max_sequence_length", None)
        sequence_length = int(sequence_length or limit)
        if limit is not None and sequence_length > limit:
            raise ValueError(
                f"sequence_length={sequence_length} exceeds the backbone's max_sequence_length={limit}."
            )
        return causal_lm_dataset(
            corpus, self.tokenizer, sequence_length, batch_size=batch_size, shuffle=shuffle,
            seed=seed, reset_attention=reset_attention, **kwargs,
        )
