"""keras_lm.pretraining: objectives as Keras models (backbone + head + built-in loss) and their data.

- ``BertPretrainer``: masked LM + next-sentence prediction (BERT); ``MaskedLM``: masked LM only.
- ``MaskedLMMasker``: dynamic 15% / 80-10-10 masking, stateless and seedable, for ``tf.data``.
- ``next_sentence_pairs``: segment pairs, real successor or random, from tokenized documents.
- ``next_sentence_dataset`` / ``masked_lm_dataset``: corpus → packed, masked training batches
  (what ``BertPretrainer.dataset`` / ``MaskedLM.dataset`` return).
- ``CausalLM``: next-token prediction on packed documents, with held-out perplexity.
- ``ReplacedTokenDetection``: ELECTRA (a small generator fills masked positions, the discriminator
  tells replaced tokens from originals; the two share their embeddings).
- ``SpanCorruption``: T5's span corruption (sentinel-replaced spans in, the spans out) on an
  encoder-decoder; ``span_corruption_dataset`` builds its batches, ``random_spans_noise_mask`` its noise.
- ``cooccurrence_embeddings``: token embeddings from PPMI + SVD of co-occurrence counts.
- ``full_sentence_dataset``: RoBERTa's FULL-SENTENCES rows (contiguous text across documents, exactly
  ``sequence_length`` tokens) with masks drawn anew each epoch (dynamic masking).
- ``causal_lm_dataset``: corpus → multi-document packed causal-LM batches (``pack_documents``).
"""
from keras_lm.pretraining.bert_pretrainer import BertPretrainer
from keras_lm.pretraining.causal_lm import CausalLM
from keras_lm.pretraining.cooccurrence import cooccurrence_embeddings
from keras_lm.pretraining.causal_lm_data import causal_lm_dataset, pack_documents
from keras_lm.pretraining.datasets import masked_lm_dataset, next_sentence_dataset
from keras_lm.pretraining.full_sentences import full_sentence_dataset
from keras_lm.pretraining.masked_lm import MaskedLM
from keras_lm.pretraining.masking import MaskedLMMasker
from keras_lm.pretraining.next_sentence import IS_NEXT, IS_RANDOM, next_sentence_pairs
from keras_lm.pretraining.replaced_token_detection import ReplacedTokenDetection
from keras_lm.pretraining.span_corruption import SpanCorruption
from keras_lm.pretraining.span_corruption_data import (
    random_spans_noise_mask,
    span_corruption,
    span_corruption_dataset,
    span_corruption_lengths,
    t5_sentinel_ids,
)
from keras_lm.pretraining.segments import pack_segments, split_into_chunks, split_into_segments

__all__ = [
    "BertPretrainer",
    "CausalLM",
    "IS_NEXT",
    "IS_RANDOM",
    "MaskedLM",
    "MaskedLMMasker",
    "ReplacedTokenDetection",
    "SpanCorruption",
    "causal_lm_dataset",
    "cooccurrence_embeddings",
    "full_sentence_dataset",
    "masked_lm_dataset",
    "next_sentence_dataset",
    "next_sentence_pairs",
    "pack_documents",
    "pack_segments",
    "random_spans_noise_mask",
    "span_corruption",
    "span_corruption_dataset",
    "span_corruption_lengths",
    "split_into_chunks",
    "split_into_segments",
    "t5_sentinel_ids",
]
