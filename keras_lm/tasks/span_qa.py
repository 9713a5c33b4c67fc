"""Extractive question answering: start/end logits over the tokens of a packed question + context.

``SpanQA`` puts a dense layer with two outputs on the encoder's ``sequence_output`` (BERT's SQuAD head,
transformers' ``qa_outputs``). Answers are decoded as in BERT's ``run_squad.py``: the ``n_best_size``
best starts and ends of every context window are paired, spans with ``start <= end`` and at most
``max_answer_length`` tokens, both inside the context, are scored ``start_logit + end_logit``, and the
best span over all windows of a question wins; its text is sliced from the original context by the
character offsets of its first and last tokens.
"""
from __future__ import annotations

import logging
import os

import keras
import numpy as np
import tensorflow as tf

from keras_lm.tasks.classifier import backbone_inputs, load_backbone_file
from keras_lm.tasks.saved_model import ENCODER_DIR, SavedModelEncoder, read_manifest
from keras_lm.tasks.task import Task, check_tokenizer_fits, trim_padding
from keras_lm.tokenizers.question_context import ENCODER_FEATURES, context_text

logger = logging.getLogger(__name__)

#: Names of the label tensors (a dict), as in transformers' ``BertForQuestionAnswering``.
LABELS = ("start_positions", "end_positions")


def decode_answers(start_logits, end_logits, features: dict, contexts, max_answer_length: int,
                   n_best_size: int = 20) -> dict[str, tf.Tensor]:
    """The best answer span of every question, from the logits of its context windows.

    Args:
        start_logits, end_logits: ``[F, L]`` logits of ``F`` feature rows.
        features: the rows' ``start_offsets``, ``end_offsets`` (``[F, L]``, -1 outside the context) and
            ``example_index`` (``[F]``), as ``QuestionContextPreprocessor.pack`` returns them.
        contexts: the ``B`` original contexts, ``tf.string [B]``.
        max_answer_length: longest answer in tokens.
        n_best_size: how many best starts and ends of each row are paired.

    Returns:
        ``{"answer": tf.string [B], "start": int64 [B], "end": int64 [B], "score": float32 [B]}``:
        the answer text, its character span ``[start, end)`` in the context and ``start_logit + end_logit``.
        A question without any valid span (an empty context) gets ``""``, ``0``, ``0`` and ``-inf``.
    """
    contexts = context_text(contexts)
    num_examples = tf.shape(contexts)[0]
    starts, ends = features["start_offsets"], features["end_offsets"]
    in_context = starts >= 0
    negative_infinity = tf.constant(-np.inf, tf.float32)
    start_logits = tf.where(in_context, tf.cast(start_logits, tf.float32), negative_infinity)
    end_logits = tf.where(in_context, tf.cast(end_logits, tf.float32), negative_infinity)
    k = tf.minimum(n_best_size, tf.shape(start_logits)[1])
    start_scores, start_tokens = tf.math.top_k(start_logits, k)
    end_scores, end_tokens = tf.math.top_k(end_logits, k)
    scores = start_scores[:, :, tf.newaxis] + end_scores[:, tf.newaxis, :]  # [F, k, k]
    lengths = end_tokens[:, tf.newaxis, :] - start_tokens[:, :, tf.newaxis] + 1
    valid = tf.logical_and(tf.logical_and(lengths >= 1, lengths <= max_answer_length), tf.math.is_finite(scores))
    scores = tf.reshape(tf.where(valid, scores, negative_infinity), [tf.shape(scores)[0], -1])
    best_pair = tf.argmax(scores, axis=1, output_type=tf.int32)
    row_scores = tf.gather(scores, best_pair, batch_dims=1)
    start_token = tf.gather(start_tokens, best_pair // k, batch_dims=1)
    end_token = tf.gather(end_tokens, best_pair % k, batch_dims=1)
    # the best row of every question (the first one on a tie)
    example = tf.cast(features["example_index"], tf.int32)
    row_found = tf.math.is_finite(row_scores)
    found = tf.math.unsorted_segment_max(tf.cast(row_found, tf.int32), example, num_examples) > 0
    # (a segment max over nothing but -inf is the lowest float, not -inf: rows without a span are left out)
    best_score = tf.math.unsorted_segment_max(tf.where(row_found, row_scores, tf.float32.min), example, num_examples)
    rows = tf.shape(row_scores)[0]
    is_best = tf.logical_and(row_found, tf.equal(row_scores, tf.gather(best_score, example)))
    best_row = tf.math.unsorted_segment_min(tf.where(is_best, tf.range(rows), rows), example, num_examples)
    best_row = tf.clip_by_value(best_row, 0, tf.maximum(rows - 1, 0))

    def at_best(values, tokens):
        return tf.gather(tf.gather(values, tokens[:, tf.newaxis], batch_dims=1)[:, 0], best_row)

    start = tf.where(found, at_best(starts, start_token), 0)
    end = tf.where(found, at_best(ends, end_token), 0)
    return {
        "answer": tf.strings.substr(contexts, start, end - start, unit="UTF8_CHAR"),
        "start": start,
        "end": end,
        "score": tf.where(found, best_score, negative_infinity),
    }


def answer_questions(task: "SpanQA", questions, contexts) -> dict[str, tf.Tensor]:
    """Packs, runs and decodes: the answer of each (question, context) pair (see ``decode_answers``)."""
    contexts = tf.convert_to_tensor(contexts, tf.string)
    features = trim_padding(task.preprocessor.pack(questions, contexts))
    outputs = task({name: features[name] for name in ENCODER_FEATURES}, training=False)
    return decode_answers(outputs["start_logits"], outputs["end_logits"], features, contexts,
                          task.max_answer_length, task.n_best_size)


@keras.saving.register_keras_serializable(package="keras_lm")
class SpanQA(Task):
    """Extractive question answering (SQuAD style) on an encoder: start and end logits per token.

    The model maps the encoder inputs to ``{"start_logits": [B, L], "end_logits": [B, L]}`` (float32).
    Compiled with ``loss="auto"`` (the default) its loss is the mean of the sparse cross-entropies of
    the start and end positions; labels are ``{"start_positions": [B], "end_positions": [B]}`` (or a
    pair), position 0 (``[CLS]``) meaning "not in this window".

    Args:
        backbone: a keras_lm encoder (e.g. ``keras_lm.applications.Bert``) or a ``SavedModelEncoder``.
        preprocessor: a ``keras_lm.tokenizers.QuestionContextPreprocessor``; needed by ``dataset``,
            ``predict_answers`` and serving exports.
        max_answer_length: longest answer, in tokens.
        n_best_size: how many best start and end tokens of each window are paired when decoding.

    Example:
        >>> from keras_lm.tokenizers.question_context import QuestionContextPreprocessor
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "won", "the", "cup", "?", "ana", "."]
        >>> tokenizer = keras_lm.tokenizers.WordPiece(vocab)
        >>> preprocessor = QuestionContextPreprocessor(tokenizer, sequence_length=16, max_question_length=4)
        >>> encoder = keras_lm.applications.Bert("tiny", vocabulary_size=len(vocab), max_sequence_length=16)
        >>> qa = SpanQA(encoder, preprocessor)
        >>> qa.compile(optimizer="adam")
        >>> history = qa.fit(qa.dataset([("Who won?", "Ana won the cup.", "Ana", 0)] * 8, batch_size=4), verbose=0)
        >>> sorted(qa.predict_answers(["Who won?"], ["Ana won the cup."])[0])
        ['end', 'score', 'start', 'text']
    """

    def __init__(self, backbone, preprocessor=None, max_answer_length: int = 30, n_best_size: int = 20, **kwargs):
        if int(max_answer_length) < 1 or int(n_best_size) < 1:
            raise ValueError(f"max_answer_length and n_best_size must be positive; got {max_answer_length} and "
                             f"{n_best_size}.")
        if preprocessor is not None and not hasattr(preprocessor, "pack"):
            raise TypeError("SpanQA's preprocessor must be a keras_lm.tokenizers.QuestionContextPreprocessor (it "
                            f"packs question/context pairs with character offsets); got {type(preprocessor).__name__}.")
        check_tokenizer_fits(backbone, getattr(preprocessor, "tokenizer", None))
        inputs = backbone_inputs(backbone)
        sequence = backbone(inputs)["sequence_output"]
        logits = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02), dtype="float32", name="qa_outputs"
        )(sequence)
        outputs = {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.max_answer_length = int(max_answer_length)
        self.n_best_size = int(n_best_size)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_saved_model(cls, directory: str, preprocessor=None, **kwargs) -> "SpanQA":
        """Reloads an exported encoder (see ``keras_lm.export.encoder``) trainably and adds the span head.

        The export's preprocess SavedModel gives no character offsets, so pass a
        ``QuestionContextPreprocessor`` built on the encoder's tokenizer to use raw text.
        """
        read_manifest(directory)
        encoder = SavedModelEncoder(os.path.join(directory, ENCODER_DIR), name="encoder")
        return cls(encoder, preprocessor=preprocessor, **kwargs)

    @classmethod
    def from_keras_file(cls, path: str, preprocessor=None, **kwargs) -> "SpanQA":
        """Starts from a ``.keras`` file holding a backbone or a pretrainer (its ``.backbone``)."""
        return cls(load_backbone_file(path), preprocessor=preprocessor, **kwargs)

    @classmethod
    def from_hf(cls, source, config=None, dtype=None, sequence_length: int | None = 384, **kwargs) -> "SpanQA":
        """A ``SpanQA`` on a Hugging Face checkpoint: its encoder, its tokenizer and, when present, its QA head.

        The encoder is imported as its family's ``from_hf`` does (``config.json``'s ``model_type``
        chooses the family: ``bert``, ``roberta``, ``electra``; see
        ``keras_lm.tasks.hf_heads.HF_ENCODER_FAMILIES``). A ``*ForQuestionAnswering`` checkpoint's
        ``qa_outputs.{weight,bias}`` become the span head; any other checkpoint gets a fresh head and
        ``untrained_layers`` names ``"qa_outputs"``. A checkpoint folder with tokenizer files
        (BERT, ELECTRA: ``vocab.txt`` or ``tokenizer.json``; RoBERTa: ``tokenizer.json`` or
        ``vocab.json`` + ``merges.txt``) also gives the preprocessor, packing pairs the family's way
        (``[CLS] q [SEP] c [SEP]``, or RoBERTa's ``<s> q </s></s> c </s>``).

        Args:
            source: a checkpoint directory, a transformers model, a state dict with ``config``, or a hub name.
            config: the transformers config when ``source`` is a state dict.
            dtype: dtype policy of the backbone.
            sequence_length: packed length of the preprocessor (at most the model's positions).
            **kwargs: ``SpanQA`` arguments (``max_answer_length``, ``n_best_size``, ``preprocessor``,
                ``max_question_length`` and ``doc_stride`` for the preprocessor).

        Raises:
            keras_lm.applications.CheckpointError: an unknown family, a missing tensor or a shape
                mismatch (the message names the tensor).

        Example:
            >>> qa = SpanQA.from_hf("path/to/bert-finetuned-squad")  # doctest: +SKIP
            >>> qa.predict_answers(["Who won?"], ["Ana won the cup."])[0]["text"]  # doctest: +SKIP
            'Ana'
        """
        return _span_qa_from_hf(cls, source, config, dtype, sequence_length, kwargs)

    # -- training ---------------------------------------------------------------------------------

    @property
    def trainable_weights(self):
        """The trainable weights minus the encoder's pooler, which the span head does not read."""
        pooler = getattr(getattr(self, "backbone", None), "pooler", None)
        unused = {id(weight) for weight in (pooler.weights if pooler is not None else [])}
        return [weight for weight in super().trainable_weights if id(weight) not in unused]

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def compile(self, optimizer="adam", loss="auto", metrics=None, **kwargs):
        """``loss="auto"``: the mean of the start and end sparse cross-entropies (on logits)."""
        self._span_loss = isinstance(loss, str) and loss == "auto"
        super().compile(optimizer=optimizer, loss=None if self._span_loss else loss, metrics=metrics, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not getattr(self, "_span_loss", False):
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        start_positions, end_positions = _positions(y)
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        loss = 0.5 * (cross_entropy(start_positions, y_pred["start_logits"], sample_weight=sample_weight)
                      + cross_entropy(end_positions, y_pred["end_logits"], sample_weight=sample_weight))
        for extra in self.losses:  # regularization losses of the layers
            loss = loss + tf.cast(extra, loss.dtype)
        return loss

    def dataset(self, examples, batch_size: int = 32, shuffle: bool = False, seed: int | None = None) -> tf.data.Dataset:
        """Packed training rows ``(features, {"start_positions", "end_positions"})``, batched.

        Args:
            examples: a ``tf.data.Dataset`` of SQuAD examples (TFDS ``squad``: dicts with ``question``,
                ``context`` and ``answers`` ``{"text": [n], "answer_start": [n]}``; the first answer is
                trained on, none means "no answer"), or of ``(question, context, answer_text, answer_start)``
                tuples, or a Python list of such tuples or dicts.
            batch_size: rows per batch (a long context gives several rows).
            shuffle: shuffle the rows (a buffer of 100 batches).
            seed: shuffle seed.
        """
        self._require_preprocessor("dataset")
        examples = _as_example_dataset(examples)
        preprocessor = self.preprocessor

        def pack(question, context, answer_text, answer_start):
            features = preprocessor.pack(question, context, answer_starts=answer_start, answer_texts=answer_text)
            inputs = {name: features[name] for name in ENCODER_FEATURES}
            labels = {name: features[name] for name in LABELS}
            return inputs, labels

        rows = examples.batch(batch_size).map(pack, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        if shuffle:
            rows = rows.shuffle(100 * batch_size, seed=seed)
        return rows.batch(batch_size).map(lambda x, y: (trim_padding(x), y)).prefetch(tf.data.AUTOTUNE)

    # -- answers ----------------------------------------------------------------------------------

    def predict_answers(self, questions, contexts, batch_size: int = 32) -> list[dict]:
        """The best answer span of each question in its context.

        Returns one dict per question: ``text`` (sliced from the original context), ``start`` and
        ``end`` (its character span ``[start, end)`` in the context, as SQuAD's ``answer_start``) and
        ``score`` (``start_logit + end_logit``; ``-inf`` with an empty answer when no span is possible).
        """
        self._require_preprocessor("predict_answers")
        questions, contexts = _texts(questions, "questions"), _texts(contexts, "contexts")
        if len(questions) != len(contexts):
            raise ValueError(f"predict_answers got {len(questions)} questions and {len(contexts)} contexts; pass "
                             "one context per question.")
        answers = []
        for begin in range(0, len(questions), batch_size):  # eagerly: tracing the tokenizer costs more
            outputs = answer_questions(self, tf.constant(questions[begin:begin + batch_size], tf.string),
                                       tf.constant(contexts[begin:begin + batch_size], tf.string))
            outputs = {name: value.numpy() for name, value in outputs.items()}
            for i in range(len(outputs["answer"])):
                answers.append({
                    "text": outputs["answer"][i].decode("utf-8", errors="replace"),
                    "start": int(outputs["start"][i]),
                    "end": int(outputs["end"][i]),
                    "score": float(outputs["score"][i]),
                })
        return answers

    def _require_preprocessor(self, method: str) -> None:
        if self.preprocessor is None:
            raise ValueError(f"SpanQA.{method} needs a preprocessor: pass preprocessor=QuestionContextPreprocessor("
                             "tokenizer, sequence_length=...) to SpanQA.")

    def get_config(self):
        return {**self._base_config(), "max_answer_length": self.max_answer_length, "n_best_size": self.n_best_size}


def _positions(y):
    if isinstance(y, dict):
        missing = [name for name in LABELS if name not in y]
        if missing:
            raise ValueError(f"SpanQA labels need {', '.join(LABELS)}; got {sorted(y)}.")
        return y["start_positions"], y["end_positions"]
    if isinstance(y, (tuple, list)) and len(y) == 2:
        return y[0], y[1]
    raise ValueError("SpanQA labels are {'start_positions': [B], 'end_positions': [B]} or a pair (starts, ends); "
                     f"got {type(y).__name__}.")


def _texts(values, name: str) -> list:
    if isinstance(values, (str, bytes)):
        raise ValueError(f"predict_answers takes a list of {name}, not a single string.")
    if isinstance(values, (tf.Tensor, np.ndarray)):
        values = values.numpy().tolist() if isinstance(values, tf.Tensor) else values.tolist()
    return [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]


def _squad_example(example: dict):
    answers = example["answers"]
    text = tf.concat([tf.reshape(answers["text"], [-1]), [""]], axis=0)[0]
    start = tf.concat([tf.cast(tf.reshape(answers["answer_start"], [-1]), tf.int64), [-1]], axis=0)[0]
    return example["question"], example["context"], text, start


def _as_example_dataset(examples) -> tf.data.Dataset:
    """A dataset of (question, context, answer_text, answer_start int64) scalars."""
    if not isinstance(examples, tf.data.Dataset):
        examples = list(examples)
        if not examples:
            raise ValueError("SpanQA.dataset got no examples.")
        if isinstance(examples[0], dict):
            examples = [_squad_python(example) for example in examples]
        columns = list(zip(*examples))
        if len(columns) != 4:
            raise ValueError("SpanQA.dataset takes (question, context, answer_text, answer_start) tuples; got "
                             f"{len(columns)} fields.")
        examples = tf.data.Dataset.from_tensor_slices((
            tf.constant(columns[0], tf.string), tf.constant(columns[1], tf.string),
            tf.constant(columns[2], tf.string), tf.constant(columns[3], tf.int64)))
    spec = examples.element_spec
    if isinstance(spec, dict):
        missing = [name for name in ("question", "context", "answers") if name not in spec]
        if missing:
            raise ValueError(f"SpanQA.dataset: the examples lack {', '.join(missing)} (the TFDS 'squad' features "
                             f"are id, title, context, question, answers); got {sorted(spec)}.")
        return examples.map(_squad_example)
    if not isinstance(spec, tuple) or len(spec) != 4:
        raise ValueError(f"SpanQA.dataset takes SQuAD dicts or (question, context, answer_text, answer_start) "
                         f"tuples; got elements {spec}.")
    return examples.map(lambda q, c, text, start: (q, c, text, tf.cast(start, tf.int64)))


def _squad_python(example: dict) -> tuple:
    answers = example.get("answers", {})
    texts, starts = list(answers.get("text", [])), list(answers.get("answer_start", []))
    return (example["question"], example["context"], texts[0] if texts else "", int(starts[0]) if starts else -1)


# -- Hugging Face checkpoints -------------------------------------------------------------------------


def _span_qa_from_hf(cls, source, config, dtype, sequence_length, kwargs):
    from keras_lm.tasks.hf_heads import QUESTION_ANSWERING, read_encoder_with_head
    from keras_lm.tokenizers.question_context import QuestionContextPreprocessor

    checkpoint = read_encoder_with_head(source, QUESTION_ANSWERING, "SpanQA.from_hf", config=config)
    packing = {name: kwargs.pop(name) for name in ("max_question_length", "doc_stride") if name in kwargs}
    backbone = checkpoint.build_backbone(dtype)
    preprocessor = kwargs.pop("preprocessor", None)
    if preprocessor is None and checkpoint.has_tokenizer():
        length = min(int(sequence_length or 384), int(backbone.max_sequence_length))
        packing.setdefault("max_question_length", min(64, length // 2))
        preprocessor = QuestionContextPreprocessor.from_preprocessor(checkpoint.preprocessor(length), **packing)
    task = cls(backbone, preprocessor=preprocessor, **kwargs)
    # the span head does not read the pooler (BertForQuestionAnswering has none)
    untrained = tuple(name for name in getattr(backbone, "untrained_layers", ()) if name != "pooler")
    if checkpoint.has_head:
        checkpoint.head.copy_dense(task.get_layer("qa_outputs"), checkpoint.prefix,
                                   hint="is it a *ForQuestionAnswering checkpoint with 2 labels (start, end)?")
    else:
        untrained += ("qa_outputs",)
        logger.warning("%s has no question-answering head (%s): the span head starts untrained.",
                       checkpoint.source, checkpoint.head_name())
    task.untrained_layers = untrained
    return task
