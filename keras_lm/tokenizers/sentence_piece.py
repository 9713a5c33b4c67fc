"""SentencePiece tokenizer layer (T5 style): keras-hub's in-graph SentencePiece plus T5's sentinels and training."""
from __future__ import annotations

import base64
import binascii
import io
import os
import random
import re
from typing import Any, Iterable, Union

import keras
import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text
from keras_hub.src.utils.tensor_utils import no_convert_scope, preprocessing_function

from keras_lm.tokenizers.text import (
    as_string_tensor,
    escape_nul,
    ids_in_vocabulary,
    replace_invalid_utf8,
    special_tokens_pattern,
    text_only,
    unescape_nul,
)

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
MODEL_FILE = "spiece.model"
"""File name of the SentencePiece model in T5 checkpoints (and what ``save_model`` writes by default)."""
_USER_DEFINED = 4  # sentencepiece ModelProto.SentencePiece.Type.USER_DEFINED
# Unicode White_Space: what Hugging Face's T5 tokenizer splits words on (after normalization).
_WHITESPACE = [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
               0x205F, 0x3000]

Proto = Union[bytes, str, os.PathLike]


def sentinel_token(index: int) -> str:
    """The text of sentinel ``index`` (``"<extra_id_0>"``, …), as T5 writes it."""
    return f"<extra_id_{index}>"


@keras.saving.register_keras_serializable(package="keras_lm")
class SentencePiece(keras_hub.tokenizers.SentencePieceTokenizer):
    """SentencePiece tokenizer (T5 style) as a Keras layer: strings in, int32 token ids out.

    The ids are T5's: a SentencePiece model (``spiece.model``, ``<pad>`` = 0, ``</s>`` = 1,
    ``<unk>`` = 2 for models ``SentencePiece.train`` makes) followed by ``num_sentinels`` sentinel
    tokens as the last ids, ``<extra_id_0>`` the highest (sentinel ``i`` is
    ``vocabulary_size() - 1 - i``). They equal Hugging Face's T5 tokenizer on the same
    ``spiece.model`` and ``extra_ids``: the sentinels, ``<pad>``, ``</s>`` and ``<unk>`` written
    in the text are their single id, the text between them is split on Unicode whitespace and
    each word is segmented by the SentencePiece model (with its normalization: NFKC for models
    trained here). Invalid UTF-8 is replaced by U+FFFD first.

    As in T5, ``tokenize`` does not append ``</s>``: pass ``add_eos=True`` (ids of Hugging
    Face's default ``tokenizer(text)``) or call ``with_eos(ids)``. ``detokenize`` drops
    ``<pad>`` and ``</s>`` and writes sentinels as their text.

    A ``tf.string`` batch ``[B]`` gives a ``tf.RaggedTensor`` ``[B, None]``; a scalar gives a 1-D
    tensor. Works eagerly, in ``tf.data.Dataset.map`` and in ``tf.function`` graphs saved with
    ``tf.saved_model.save`` (the loading process must import tensorflow_text).

    Args:
        proto: the SentencePiece model: its serialized bytes, the path of a ``.model`` file, or
            the base64 text ``get_config`` stores. Must not already contain the sentinels.
        num_sentinels: number of sentinel tokens appended after the model's pieces.
        sequence_length: if set, outputs are dense, padded with ``pad_id`` / truncated.
        add_eos: append ``</s>`` to every sequence (before truncation to ``sequence_length``).

    Example:
        >>> texts = ["the king is dead", "long live the king", "to be or not to be"] * 20
        >>> tokenizer = SentencePiece.train(texts, vocabulary_size=25, num_sentinels=5)  # doctest: +ELLIPSIS
        SentencePiece.train: 60 lines -> unigram model of 20 pieces + 5 sentinels
        >>> (tokenizer.pad_id, tokenizer.eos_id, tokenizer.unk_id, tokenizer.sentinel_id(0))
        (0, 1, 2, 24)
        >>> ids = tokenizer(["the king <extra_id_0>", "long live"])
        >>> ids.to_list()[0][-1]
        24
        >>> tokenizer.detokenize(ids).numpy().tolist()
        [b'the king<extra_id_0>', b'long live']
    """

    def __init__(
        self,
        proto: Proto | None = None,
        num_sentinels: int = 100,
        sequence_length: int | None = None,
        add_eos: bool = False,
        **kwargs,
    ) -> None:
        if int(num_sentinels) < 0:
            raise ValueError(f"SentencePiece num_sentinels must be >= 0; got {num_sentinels}.")
        self.num_sentinels = int(num_sentinels)
        self.base_proto: bytes | None = None
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("_allow_python_workflow", False)  # always TensorFlow: same ids eagerly and in graphs
        kwargs.pop("add_bos", None)  # T5 has no beginning-of-sequence token
        super().__init__(proto=proto, sequence_length=sequence_length, add_eos=False, **kwargs)
        if not str(self.compute_dtype).startswith("int"):
            raise ValueError(f"SentencePiece outputs integer ids; got dtype={self.compute_dtype!r}.")
        self.add_eos = bool(add_eos)  # appended here, not by the kernel (it runs once per piece of text)

    # -- the model -----------------------------------------------------------------------------

    def set_proto(self, proto: Proto | None) -> None:
        """Set the SentencePiece model (bytes, a file path or base64 text); sentinels are appended."""
        if proto is None:
            self.base_proto = None
            return super().set_proto(None)
        base = _read_proto(proto)
        source = f"SentencePiece model file {os.fspath(proto)}" if isinstance(proto, os.PathLike) or (
            isinstance(proto, str) and os.path.isfile(proto)) else "The SentencePiece proto (bytes)"
        model = _parse_proto(base, source)
        pieces = {piece.piece for piece in model.pieces}
        clashes = [sentinel_token(i) for i in range(self.num_sentinels) if sentinel_token(i) in pieces]
        if clashes:
            raise ValueError(
                f"The SentencePiece model already contains the sentinel pieces {clashes[:3]}…: pass a model "
                "without them (like T5's spiece.model) and num_sentinels, which appends them as the last ids."
            )
        spec = model.trainer_spec
        missing = [name for name, index in (("pad", spec.pad_id), ("eos", spec.eos_id), ("unk", spec.unk_id))
                   if not 0 <= index < len(model.pieces)]
        if missing:
            raise ValueError(
                f"The SentencePiece model has no {', '.join(missing)} piece: SentencePiece needs <pad>, </s> "
                "and <unk> (T5 layout: train with pad_id=0, eos_id=1, unk_id=2, as SentencePiece.train does)."
            )
        for index in reversed(range(self.num_sentinels)):  # <extra_id_0> last
            piece = model.pieces.add()
            piece.piece, piece.score, piece.type = sentinel_token(index), 0.0, _USER_DEFINED
        self.base_proto = base
        super().set_proto(model.SerializeToString())
        self._special_tokens = [self.id_to_token(i) for i in (self.pad_id, self.eos_id, self.unk_id)]
        self._special_tokens += self.sentinel_tokens
        # Whitespace the model's normalization keeps as a character (U+0085 under NFKC) still splits words.
        normalize = self._sentence_piece_spm.normalize
        kept = [c for c in map(chr, _WHITESPACE) if c in normalize(f"a{c}b")]
        self._kept_whitespace = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in kept) + "]" if kept else None

    def save_model(self, path: str | os.PathLike) -> str:
        """Write the SentencePiece model (without the sentinels, like T5's ``spiece.model``); returns the path.

        A directory ``path`` gets ``spiece.model`` inside. ``SentencePiece(path, num_sentinels=...)``
        reads it back; so does ``sentencepiece.SentencePieceProcessor(model_file=path)``.
        """
        self._check_vocabulary()
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, MODEL_FILE)
        with open(path, "wb") as file:
            file.write(self.base_proto)
        return path

    def save_assets(self, dir_path: str) -> None:
        self.save_model(os.path.join(dir_path, "vocabulary.spm"))

    def load_assets(self, dir_path: str) -> None:
        if self.proto is None:  # the config already carries the model otherwise
            with open(os.path.join(dir_path, "vocabulary.spm"), "rb") as file:
                self.set_proto(file.read())

    @property
    def pad_id(self) -> int:
        self._check_vocabulary()
        return int(self._sentence_piece_spm.pad_id())

    @property
    def eos_id(self) -> int:
        self._check_vocabulary()
        return int(self._sentence_piece_spm.eos_id())

    @property
    def unk_id(self) -> int:
        self._check_vocabulary()
        return int(self._sentence_piece_spm.unk_id())

    # keras-hub's preprocessors look for these names.
    pad_token_id = pad_id
    end_token_id = eos_id

    @property
    def sentinel_ids(self) -> list[int]:
        """Ids of the sentinels, sentinel 0 (``<extra_id_0>``, the highest id) first."""
        return [self.sentinel_id(i) for i in range(self.num_sentinels)]

    @property
    def sentinel_tokens(self) -> list[str]:
        return [sentinel_token(i) for i in range(self.num_sentinels)]

    def sentinel_id(self, index: int) -> int:
        """Id of sentinel ``index`` (``<extra_id_{index}>``): ``vocabulary_size() - 1 - index``."""
        if not 0 <= index < self.num_sentinels:
            raise ValueError(f"Sentinel index must lie in [0, {self.num_sentinels}); got {index}.")
        return self.vocabulary_size() - 1 - index

    # -- tokenization --------------------------------------------------------------------------

    @tf.autograph.experimental.do_not_convert  # no tensor-dependent Python control flow: trace it as is
    def tokenize(self, inputs, *args, **kwargs):
        """Token ids of ``inputs``: ``tf.RaggedTensor`` for a batch, 1-D ``tf.Tensor`` for a scalar."""
        self._check_vocabulary()
        with no_convert_scope():  # keep TensorFlow outputs (keras-hub turns ragged ones into lists)
            return self._tokenize_text(as_string_tensor(inputs))

    @preprocessing_function
    def _tokenize_text(self, inputs):
        self._maybe_initialized_tf()
        if isinstance(inputs, tf.RaggedTensor) or (inputs.shape.rank is not None and inputs.shape.rank > 1):
            raise ValueError(f"SentencePiece expects a string or a 1-D batch of strings, got shape {inputs.shape}.")
        unbatched = inputs.shape.rank == 0
        if unbatched:
            inputs = tf.expand_dims(inputs, 0)
        ids = self._ids_of(inputs)
        if self.add_eos:
            eos = tf.fill([ids.nrows(), 1], tf.constant(self.eos_id, ids.dtype))
            ids = tf.concat([ids, tf.RaggedTensor.from_tensor(eos)], axis=1)
        if self.sequence_length:
            ids = ids.to_tensor(default_value=self.pad_id, shape=[None, self.sequence_length])
        if unbatched:
            ids = tf.squeeze(ids, 0)
        return ids

    def _ids_of(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Ids ``[batch, tokens]`` of a 1-D batch: special tokens found in the raw text, the rest by the model."""
        texts = replace_invalid_utf8(texts)
        if self._kept_whitespace:
            texts = tf.strings.regex_replace(texts, self._kept_whitespace, " ")
        pattern = special_tokens_pattern(self._special_tokens)
        pieces = tf_text.regex_split(escape_nul(texts), pattern, pattern)  # [batch, pieces]
        flat = unescape_nul(pieces.flat_values)
        flat = tf.strings.strip(tf.strings.regex_replace(flat, " +", " "))  # words split on whitespace, as T5's
        matches = tf.equal(flat[:, tf.newaxis], tf.constant(self._special_tokens)[tf.newaxis, :])
        special = tf.reduce_any(matches, axis=1)
        special_ids = tf.gather(
            tf.constant([self.token_to_id(t) for t in self._special_tokens], self.compute_dtype),
            tf.argmax(tf.cast(matches, tf.int32), axis=1),
        )
        text_ids = self._sentence_piece.tokenize(tf.where(special, "", flat))  # [pieces, ids]
        ids = tf.concat(
            [text_ids, tf.ragged.boolean_mask(special_ids[:, tf.newaxis], special[:, tf.newaxis])], axis=1
        )  # each piece: its model ids, or its special id
        return tf.RaggedTensor.from_row_splits(ids.flat_values, tf.gather(ids.row_splits, pieces.row_splits))

    def with_eos(self, ids):
        """``ids`` (a ``tokenize`` result without ``sequence_length``) with ``</s>`` appended to each sequence."""
        ids = ids if isinstance(ids, (tf.Tensor, tf.RaggedTensor)) else tf.ragged.constant(ids, dtype=tf.int32)
        if isinstance(ids, tf.RaggedTensor):
            eos = tf.fill(tf.stack([ids.nrows(), 1]), tf.constant(self.eos_id, ids.dtype))
            return tf.concat([ids, tf.RaggedTensor.from_tensor(eos)], axis=1)
        if ids.shape.rank != 1:
            raise ValueError(
                f"SentencePiece.with_eos takes one sequence or a ragged batch, got a dense tensor of shape {ids.shape} "
                "(padded ids): pass add_eos=True to the constructor instead."
            )
        return tf.concat([ids, tf.constant([self.eos_id], ids.dtype)], axis=0)

    @tf.autograph.experimental.do_not_convert
    def detokenize(self, inputs, *args, **kwargs):
        """Text of token ids (``tf.string``): ``<pad>`` and ``</s>`` dropped, sentinels written as ``<extra_id_i>``.

        ``<unk>`` comes back as `` ⁇ `` (as the sentencepiece library writes it).

        Ids must lie in ``[0, vocabulary_size())``: otherwise a ``TokenizerInputError`` (a
        ``ValueError``), or in a graph/SavedModel an ``InvalidArgumentError``.
        """
        self._check_vocabulary()
        inputs = ids_in_vocabulary(inputs, self.vocabulary_size(), "SentencePiece.detokenize")
        with no_convert_scope():
            return self._detokenize_tf(inputs)

    # -- Hugging Face files, training and serialization ------------------------------------------

    @classmethod
    def from_hf(cls, directory: str | os.PathLike, **overrides) -> "SentencePiece":
        """The tokenizer of a Hugging Face T5 checkpoint directory, giving the ids of its T5 tokenizer.

        Reads ``spiece.model`` and the number of sentinels from ``tokenizer_config.json``
        (``extra_ids``, or the ``<extra_id_i>`` tokens it, ``special_tokens_map.json`` or
        ``tokenizer.json`` lists); their ids must follow T5's layout. The ids equal
        ``transformers.T5Tokenizer.from_pretrained(directory)(text, add_special_tokens=False)``
        (``add_eos=True``: with the default ``add_special_tokens=True``).

        Args:
            directory: the checkpoint (or tokenizer) directory.
            **overrides: constructor arguments replacing the ones read (e.g. ``sequence_length``).

        Raises:
            FileNotFoundError: the directory has no ``spiece.model``.
            ValueError: ``spiece.model`` is not a SentencePiece model, or the sentinels are not
                T5's last ids (named in the message).

        Example:
            >>> tokenizer = SentencePiece.from_hf("path/to/t5-small")  # doctest: +SKIP
            >>> tokenizer("Hello <extra_id_0>").numpy().tolist()  # doctest: +SKIP
            [8774, 32099]
        """
        return cls(**{**_hf_options(directory), **overrides})

    @classmethod
    def train(
        cls,
        texts_or_dataset: Iterable[str] | tf.data.Dataset,
        vocabulary_size: int,
        *,
        model_type: str = "unigram",
        num_sentinels: int = 100,
        character_coverage: float = 1.0,
        lowercase: bool = False,
        seed: int = 0,
        max_sentences: int = 2_000_000,
        **spm_options: Any,
    ) -> "SentencePiece":
        """Train a SentencePiece model in memory (``sentencepiece``'s trainer) and return the tokenizer.

        The layout is T5's: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, the learned pieces, then
        the ``num_sentinels`` sentinels, ``<extra_id_0>`` last. Documents are split into lines
        (blank lines dropped); at most ``max_sentences`` lines, sampled with ``seed``, train the
        model (``seed`` picks them). The same text, options and seed give the same model. One progress line is printed.

        Args:
            texts_or_dataset: strings, or a ``tf.data.Dataset`` of strings or of dicts with a
                ``"text"`` key.
            vocabulary_size: total number of ids, sentinels included.
            model_type: ``"unigram"`` (T5's) or ``"bpe"``.
            num_sentinels: sentinel tokens ``<extra_id_0>`` … reserved as the last ids.
            character_coverage: share of characters the model covers (rarer ones become ``<unk>``).
            lowercase: lower-case text (NFKC with case folding) in the model's normalization.
            seed: seed of the trainer's sampling.
            max_sentences: most lines the trainer reads.
            **spm_options: more ``sentencepiece.SentencePieceTrainer.train`` options.

        Raises:
            ValueError: no text, or a ``vocabulary_size`` that cannot hold the special tokens and
                sentinels, or that this text cannot fill (the message gives the trainer's bound).

        Example:
            >>> tokenizer = SentencePiece.train(["the king is dead", "long live the king"] * 20,
            ...                                 vocabulary_size=20, num_sentinels=2)  # doctest: +ELLIPSIS
            SentencePiece.train: 40 lines -> unigram model of 18 pieces + 2 sentinels
            >>> tokenizer.vocabulary_size(), tokenizer.sentinel_ids
            (20, [19, 18])
        """
        proto = _train_model(
            list(_lines(texts_or_dataset)),
            vocabulary_size=vocabulary_size,
            model_type=model_type,
            num_sentinels=num_sentinels,
            character_coverage=character_coverage,
            lowercase=lowercase,
            seed=seed,
            max_sentences=max_sentences,
            **spm_options,
        )
        return cls(proto, num_sentinels=num_sentinels)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("add_bos", None)
        config.update(
            {
                "proto": base64.b64encode(self.base_proto).decode("ascii") if self.base_proto else None,
                "num_sentinels": self.num_sentinels,
                "add_eos": self.add_eos,
            }
        )
        return config


def _read_proto(proto: Proto) -> bytes:
    """The serialized model from bytes, a file path, or base64 text (``get_config``)."""
    if isinstance(proto, (bytes, bytearray)):
        return bytes(proto)
    if not isinstance(proto, (str, os.PathLike)):
        raise TypeError(
            f"SentencePiece proto must be bytes, the path of a .model file or base64 text; got {type(proto).__name__}."
        )
    path = os.fspath(proto)
    if os.path.isfile(path):
        from keras.src.saving import serialization_lib

        if serialization_lib.in_safe_mode():  # a loaded config naming a file outside the archive
            raise ValueError(
                f"SentencePiece: the loaded config names the model file '{path}' outside the archive; pass "
                "safe_mode=False to the loading function if you trust it."
            )
        with open(path, "rb") as file:
            return file.read()
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"SentencePiece model path {path} is a directory: pass the .model file in it, or use "
            "SentencePiece.from_hf for a Hugging Face checkpoint directory."
        )
    try:
        return base64.b64decode(path, validate=True) if len(path) > 256 else _missing(path)
    except binascii.Error:
        return _missing(path)


def _missing(path: str) -> bytes:
    raise FileNotFoundError(f"SentencePiece model file not found: {path}")


def _parse_proto(proto: bytes, source: str):
    """The ``ModelProto`` of ``proto``; a ``ValueError`` naming ``source`` if it is not a SentencePiece model."""
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    try:
        model.ParseFromString(proto)
    except DecodeError as error:
        raise ValueError(f"{source} is not a SentencePiece model (corrupt or another format): {error}") from None
    if not model.pieces:
        raise ValueError(f"{source} is not a SentencePiece model: it holds no pieces.")
    return model


def _lines(texts_or_dataset) -> Iterable[str]:
    """Non-blank lines of the documents, as Python strings."""
    if isinstance(texts_or_dataset, tf.data.Dataset):
        documents = (d.decode("utf-8", "replace") for d in text_only(texts_or_dataset).as_numpy_iterator())
    elif isinstance(texts_or_dataset, (str, bytes)):
        raise TypeError("SentencePiece.train takes a list of strings or a tf.data.Dataset, not a single string.")
    else:
        documents = (d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in texts_or_dataset)
    for document in documents:
        for line in document.splitlines():
            if line.strip():
                yield line


def _train_model(
    lines: list[str],
    vocabulary_size: int,
    model_type: str,
    num_sentinels: int,
    character_coverage: float,
    lowercase: bool,
    seed: int,
    max_sentences: int,
    **spm_options: Any,
) -> bytes:
    """A serialized SentencePiece model in T5's layout (pad 0, eos 1, unk 2), sentinels left out."""
    import sentencepiece as spm

    owner = "SentencePiece.train"
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"{owner}: model_type must be 'unigram' or 'bpe'; got {model_type!r}.")
    if not lines:
        raise ValueError(f"{owner}: the corpus is empty (no non-blank line of text to learn from).")
    pieces = int(vocabulary_size) - int(num_sentinels)
    if pieces <= 3:
        raise ValueError(
            f"{owner}: vocabulary_size={vocabulary_size} leaves {pieces} ids after the {num_sentinels} sentinels; "
            "it needs <pad>, </s>, <unk> and the characters of the text: raise vocabulary_size or lower num_sentinels."
        )
    sampled = f" (a sample of {int(max_sentences):,})" if len(lines) > max_sentences else ""
    print(
        f"{owner}: {len(lines):,} lines{sampled} -> {model_type} model of {pieces:,} pieces + {num_sentinels} sentinels",
        flush=True,
    )
    if sampled:  # the trainer's own sampling ignores the seed when it reads from an iterator
        chosen = sorted(random.Random(seed).sample(range(len(lines)), int(max_sentences)))
        lines = [lines[i] for i in chosen]
    options = dict(
        vocab_size=pieces, model_type=model_type, character_coverage=character_coverage,
        normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece=PAD, eos_piece=EOS, unk_piece=UNK,
        input_sentence_size=0, num_threads=1, minloglevel=2,
    )
    options.update(spm_options)
    spm.set_random_generator_seed(int(seed))
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=writer, **options)
    except RuntimeError as error:
        message = (str(error).strip().splitlines() or [type(error).__name__])[-1].split("] ")[-1]
        raise ValueError(
            f"{owner}: cannot train a model of vocabulary_size={vocabulary_size} ({pieces} pieces + "
            f"{num_sentinels} sentinels) on this text: {message}"
        ) from None
    return writer.getvalue()


# -- Hugging Face T5 directories --------------------------------------------------------------------

_SENTINEL = re.compile(r"^<extra_id_(\d+)>$")


def _hf_options(directory) -> dict:
    """``SentencePiece`` arguments for a Hugging Face T5 directory (``spiece.model`` + configs)."""
    from keras_lm.tokenizers.hf_files import (
        TOKENIZER_FILE,
        UnsupportedTokenizerError,
        read_tokenizer_files,
        token_content,
    )

    owner = "SentencePiece.from_hf"
    files = read_tokenizer_files(directory, owner, ((MODEL_FILE,),))
    path = files.path(MODEL_FILE)
    with open(path, "rb") as file:
        proto = file.read()
    model = _parse_proto(proto, f"{owner}: {path}")
    base_size = len(model.pieces)

    listed = list(files.config.get("additional_special_tokens") or [])
    listed += list(files.config.get("extra_special_tokens") or [])
    listed += list(files.special_tokens_map.get("additional_special_tokens") or [])
    named = {int(i): token_content(t) for i, t in (files.config.get("added_tokens_decoder") or {}).items()}
    if files.tokenizer:
        named.update({int(t["id"]): t["content"] for t in files.tokenizer.get("added_tokens") or []})
    sentinels = {token_content(t) for t in listed} | set(named.values())
    sentinels = {t for t in sentinels if t and _SENTINEL.match(t)}
    extra_ids = files.config.get("extra_ids")
    # transformers' T5Tokenizer adds 100 sentinels unless told otherwise
    num_sentinels = int(extra_ids) if extra_ids is not None else len(sentinels) if sentinels else 100
    expected = {sentinel_token(i) for i in range(num_sentinels)}
    if sentinels - expected or (extra_ids is not None and sentinels and sentinels != expected):
        raise UnsupportedTokenizerError(
            f"{owner}: '{files.directory}' lists the sentinels {sorted(sentinels)[:3]}… but extra_ids={num_sentinels}: "
            f"SentencePiece needs <extra_id_0> … <extra_id_{num_sentinels - 1}>."
        )
    for token_id, token in named.items():
        match = _SENTINEL.match(token or "")
        if match and token_id != base_size + num_sentinels - 1 - int(match.group(1)):
            source = files.path(TOKENIZER_FILE) if files.tokenizer else files.path("tokenizer_config.json")
            raise UnsupportedTokenizerError(
                f"{owner}: {source} gives {token} the id {token_id}; T5's layout gives it "
                f"{base_size + num_sentinels - 1 - int(match.group(1))} (the last ids, <extra_id_0> highest)."
            )
    return {"proto": proto, "num_sentinels": num_sentinels}
