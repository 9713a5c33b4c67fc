"""BertPretrainer: BERT's two objectives, masked LM + next-sentence prediction, as one Keras model."""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_lm.layers import NextSentenceHead
from keras_lm.pretraining import datasets
from keras_lm.pretraining.masked_lm import MaskedLM, _batch_size, import_pretraining_checkpoint

NSP = "nsp"


@keras.saving.register_keras_serializable(package="keras_lm")
class BertPretrainer(MaskedLM):
    """Masked LM + next-sentence prediction (BERT) on an encoder backbone.

    Inputs: a dict of ``[B, T]`` ``token_ids``, ``segment_ids``, ``padding_mask`` and ``[B, P]``
    ``mask_positions``. Outputs: ``{"mlm": float32 [B, P, V], "nsp": float32 [B, 2]}``
    (next-sentence class 0 = "is next", 1 = "random", as in BERT).

    The loss is built in — compile with an optimizer only: masked-LM cross-entropy averaged over
    the real masked positions + next-sentence cross-entropy, in float32. The progress bar shows
    ``loss``, ``mlm_loss``, ``mlm_accuracy``, ``nsp_loss``, ``nsp_accuracy``. ``dataset()`` builds
    ``[CLS] a [SEP] b [SEP]`` pairs from a corpus (``b`` the real next segment or, half of the
    time, a random one) with masks and negatives redrawn every epoch. With
    ``next_sentence=False`` it is a ``MaskedLM`` (single segments, no NSP head).

    Args:
        backbone: a ``keras_lm.models.Encoder`` (e.g. ``keras_lm.applications.Bert``).
        max_predictions: masked positions per sequence (``P``).
        mask_rate: fraction of tokens selected for prediction.
        next_sentence: add the next-sentence objective.
        mask_token_rate, random_token_rate: how selected tokens are corrupted (80% / 10%).

    Example:
        >>> import keras, keras_lm
        >>> corpus = keras_lm.data.load("shakespeare", split="validation")
        >>> tokenizer = keras_lm.tokenizers.WordPiece.train(
        ...     corpus.map(lambda work: work["text"]), vocabulary_size=500)
        >>> preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=tokenizer.vocabulary_size())
        >>> pretrainer = BertPretrainer(backbone, max_predictions=5)
        >>> pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = pretrainer.fit(pretrainer.dataset(corpus, preprocessor, batch_size=8).take(2),
        ...                          verbose=0)
        >>> sorted(history.history)
        ['loss', 'mlm_accuracy', 'mlm_loss', 'nsp_accuracy', 'nsp_loss']
    """

    def __init__(
        self,
        backbone: keras.Model,
        max_predictions: int = 20,
        mask_rate: float = 0.15,
        next_sentence: bool = True,
        mask_token_rate: float = 0.8,
        random_token_rate: float = 0.1,
        **kwargs,
    ):
        self.next_sentence = bool(next_sentence)
        super().__init__(
            backbone,
            max_predictions=max_predictions,
            mask_rate=mask_rate,
            mask_token_rate=mask_token_rate,
            random_token_rate=random_token_rate,
            **kwargs,
        )
        if self.next_sentence:
            self.nsp_loss_tracker = keras.metrics.Mean(name="nsp_loss")
            self.nsp_accuracy = keras.metrics.SparseCategoricalAccuracy(name="nsp_accuracy")

    @classmethod
    def from_hf(cls, source, config=None, dtype=None, next_sentence: bool = True, **kwargs) -> "BertPretrainer":
        """A pretrainer on ``Bert.from_hf(source)`` with the checkpoint's masked-LM and next-sentence heads.

        ``cls.seq_relationship`` becomes the next-sentence head as is: transformers and keras_lm
        both use class 0 = "the second segment follows the first", 1 = "it is random". A
        ``BertForMaskedLM`` checkpoint has no next-sentence head: pass ``next_sentence=False``.
        Otherwise as ``MaskedLM.from_hf``.
        """
        from keras_lm.applications.bert_hf import read_bert_hf

        kwargs["next_sentence"] = next_sentence
        return import_pretraining_checkpoint(cls, read_bert_hf(source, config), dtype, kwargs, next_sentence)

    @classmethod
    def from_google_checkpoint(cls, path: str, dtype=None, next_sentence: bool = True,
                               **kwargs) -> "BertPretrainer":
        """Like ``from_hf`` for an original Google BERT TF checkpoint (``cls/predictions/*`` and
        ``cls/seq_relationship/*``)."""
        from keras_lm.applications.bert_checkpoints import read_google_checkpoint

        kwargs["next_sentence"] = next_sentence
        return import_pretraining_checkpoint(cls, read_google_checkpoint(path), dtype, kwargs, next_sentence)

    def _required_backbone_outputs(self) -> tuple:
        outputs = super()._required_backbone_outputs()
        return outputs + ("pooled_output",) if self.next_sentence else outputs

    def _add_heads(self, backbone):
        if self.next_sentence:
            self.next_sentence_head = NextSentenceHead(dtype=backbone.dtype_policy, name="next_sentence_head")

    def _head_outputs(self, inputs, backbone_outputs) -> dict:
        outputs = super()._head_outputs(inputs, backbone_outputs)
        if self.next_sentence:
            outputs[NSP] = self.next_sentence_head(backbone_outputs["pooled_output"])
        return outputs

    def _weights_without_objective(self) -> list:
        return [] if self.next_sentence else super()._weights_without_objective()

    def _objective_losses(self, y, y_pred, sample_weight) -> dict:
        losses = super()._objective_losses(y, y_pred, sample_weight)
        if self.next_sentence:
            labels, weights = _nsp_targets(y, sample_weight)
            per_example = keras.losses.sparse_categorical_crossentropy(
                labels, ops.cast(y_pred[NSP], "float32"), from_logits=True
            )
            nsp_loss = ops.divide_no_nan(ops.sum(per_example * weights), ops.sum(weights))
            self.nsp_loss_tracker.update_state(nsp_loss, sample_weight=_batch_size(labels))
            losses[NSP] = nsp_loss
        return losses

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if self.next_sentence:
            labels, weights = _nsp_targets(y, sample_weight)
            self.nsp_accuracy.update_state(labels, y_pred[NSP], sample_weight=weights)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def dataset(
        self,
        corpus: tf.data.Dataset,
        preprocessor,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        **kwargs,
    ) -> tf.data.Dataset:
        """Training batches of segment pairs (or single segments without NSP) from a corpus.

        Args:
            corpus: documents (dicts with ``"text"``, e.g. ``keras_lm.data.load("shakespeare")``).
            preprocessor: a ``keras_lm.tokenizers.BertPreprocessor``; its ``tokenizer`` and
                ``sequence_length`` are used.
            batch_size: examples per batch.
            shuffle: reshuffle and redraw masks and random segments every epoch; False for a
                fixed evaluation set.
            seed: makes the pipeline reproducible.
            **kwargs: ``negative_rate``, ``shuffle_buffer``, ``cache``, ``drop_remainder``,
                ``truncate`` (default: the preprocessor's; see
                ``keras_lm.pretraining.datasets.next_sentence_dataset``).

        Returns:
            a batched, prefetching ``tf.data.Dataset`` of ``(features, targets, sample_weights)``.
        """
        if not self.next_sentence:
            return super().dataset(corpus, preprocessor, batch_size, shuffle, seed, **kwargs)
        kwargs.setdefault("truncate", getattr(preprocessor, "truncate", "round_robin"))
        return datasets.next_sentence_dataset(
            corpus, preprocessor.tokenizer, preprocessor.sequence_length,
            self.masker_for(preprocessor.tokenizer),
            batch_size=batch_size, shuffle=shuffle, seed=seed, **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config["next_sentence"] = self.next_sentence
        return config


def _nsp_targets(y, sample_weight):
    """``(labels, weights)`` for next-sentence prediction; weights default to ones."""
    if not isinstance(y, dict) or NSP not in y:
        raise ValueError(
            "BertPretrainer needs next-sentence labels: targets must be a dict with 'mlm' and "
            "'nsp' (use BertPretrainer.dataset(), or next_sentence=False for masked LM only)."
        )
    labels = y[NSP]
    weights = sample_weight.get(NSP) if isinstance(sample_weight, dict) else None
    if weights is None:
        weights = ops.ones_like(labels, dtype="float32")
    return labels, ops.cast(weights, "float32")
