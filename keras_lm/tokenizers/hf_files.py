"""Reading the tokenizer files of a Hugging Face checkpoint directory, without transformers or network.

A directory holds ``tokenizer.json`` (the fast tokenizer: normalizer, pre-tokenizer, model, added
tokens), and/or the files of the slow tokenizer: ``vocab.txt`` (WordPiece) or ``vocab.json`` +
``merges.txt`` (byte-level BPE), with ``tokenizer_config.json`` and ``special_tokens_map.json``.
``tokenizer.json`` is what Hugging Face's fast tokenizers run, so it wins when present.
``word_piece_options`` and ``byte_pair_options`` turn the files into constructor arguments of
``WordPiece`` and ``BytePair``, or raise one error naming the file and the setting they cannot
reproduce exactly.
"""
from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass, field

from keras_lm.tokenizers.byte_pair_split import PATTERNS

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
WORD_PIECE_VOCABULARY_FILE = "vocab.txt"
BYTE_PAIR_VOCABULARY_FILE = "vocab.json"
BYTE_PAIR_MERGES_FILE = "merges.txt"
# model_max_length of configs that set none (transformers writes int(1e30)).
_NO_LENGTH = 10**9


class UnsupportedTokenizerError(ValueError):
    """A Hugging Face tokenizer setting that keras_lm cannot reproduce exactly."""


def read_json(path: str) -> dict:
    """The JSON object in ``path``; a ``ValueError`` naming the file if it is not one."""
    try:
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}.")
    return value


def token_content(value) -> str | None:
    """A token given as a string or as a serialized ``AddedToken`` (``{"content": ...}``)."""
    if isinstance(value, dict):
        value = value.get("content")
    return None if value is None else str(value)


@dataclass
class TokenizerFiles:
    """The JSON tokenizer files of one directory (missing ones are ``None`` / empty)."""

    directory: str
    tokenizer: dict | None = None
    config: dict = field(default_factory=dict)
    special_tokens_map: dict = field(default_factory=dict)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def has(self, name: str) -> bool:
        return os.path.isfile(self.path(name))

    def special_token(self, name: str) -> str | None:
        """``tokenizer_config.json``'s ``name`` (e.g. ``"eos_token"``), else ``special_tokens_map.json``'s."""
        for source in (self.config, self.special_tokens_map):
            if source.get(name) is not None:
                return token_content(source[name])
        return None

    def model_max_length(self) -> int | None:
        length = self.config.get("model_max_length")
        return int(length) if isinstance(length, (int, float)) and 0 < length < _NO_LENGTH else None


def read_tokenizer_files(directory, owner: str, alternatives: tuple[tuple[str, ...], ...]) -> TokenizerFiles:
    """The tokenizer files of ``directory``, which must hold one of ``alternatives`` (sets of file names)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{owner}: '{directory}' is not a directory holding Hugging Face tokenizer files.")
    files = TokenizerFiles(directory)
    if not any(all(files.has(name) for name in names) for names in alternatives):
        expected = " or ".join(" + ".join(names) for names in alternatives)
        raise FileNotFoundError(
            f"{owner}: no tokenizer in '{directory}': expected {expected} (found "
            f"{', '.join(sorted(os.listdir(directory))) or 'no files'})."
        )
    if files.has(TOKENIZER_FILE):
        files.tokenizer = read_json(files.path(TOKENIZER_FILE))
    if files.has(TOKENIZER_CONFIG_FILE):
        files.config = read_json(files.path(TOKENIZER_CONFIG_FILE))
    if files.has(SPECIAL_TOKENS_MAP_FILE):
        files.special_tokens_map = read_json(files.path(SPECIAL_TOKENS_MAP_FILE))
    return files


def model_max_length(directory) -> int | None:
    """``model_max_length`` of the directory's ``tokenizer_config.json``, if it sets a real one."""
    path = os.path.join(os.fspath(directory), TOKENIZER_CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    return TokenizerFiles(os.fspath(directory), config=read_json(path)).model_max_length()


def _model(files: TokenizerFiles, expected: str, owner: str, other: str) -> dict:
    model = files.tokenizer.get("model") or {}
    kind = model.get("type") or ("BPE" if "merges" in model else "WordPiece" if "vocab" in model else None)
    if kind != expected:
        raise UnsupportedTokenizerError(
            f"{owner}: {files.path(TOKENIZER_FILE)} holds a {kind} model, not {expected}{other}."
        )
    return model


def _vocabulary_by_id(vocabulary: dict, source: str) -> list[str]:
    """Tokens in id order; ids must be exactly 0 … n-1."""
    tokens = sorted(vocabulary, key=lambda token: vocabulary[token])
    ids = [vocabulary[token] for token in tokens]
    if ids != list(range(len(ids))):
        missing = sorted(set(range(max(ids) + 1)) - set(ids))[:5] if ids else []
        raise UnsupportedTokenizerError(
            f"{source}: token ids must be 0 … {len(ids) - 1} without gaps or repeats (e.g. missing {missing})."
        )
    return tokens


def _added_tokens(files: TokenizerFiles, owner: str) -> list[dict]:
    """``tokenizer.json``'s added tokens, checked to be matchable in raw text as keras_lm does."""
    added = []
    for token in files.tokenizer.get("added_tokens") or []:
        flags = [flag for flag in ("single_word", "lstrip", "rstrip") if token.get(flag)]
        if flags:
            raise UnsupportedTokenizerError(
                f"{owner}: added token {token.get('content')!r} in {files.path(TOKENIZER_FILE)} sets "
                f"{', '.join(flags)}, which keras_lm does not reproduce."
            )
        added.append(token)
    return added


# -- WordPiece --------------------------------------------------------------------------------------

_WORD_PIECE_SPECIALS = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")


def word_piece_options(directory) -> dict:
    """``WordPiece`` constructor arguments giving the ids of the directory's Hugging Face BERT tokenizer.

    Raises:
        FileNotFoundError: neither ``tokenizer.json`` nor ``vocab.txt`` is there.
        UnsupportedTokenizerError: ``tokenizer.json`` is not a BERT WordPiece tokenizer.
    """
    owner = "WordPiece.from_hf"
    files = read_tokenizer_files(directory, owner, ((TOKENIZER_FILE,), (WORD_PIECE_VOCABULARY_FILE,)))
    options = {name: files.special_token(name) for name in _WORD_PIECE_SPECIALS}
    options = {name: token for name, token in options.items() if token is not None}
    if files.tokenizer is None:
        return {**_word_piece_slow_options(files), **options}
    return {**options, **_word_piece_fast_options(files, owner)}


def _word_piece_slow_options(files: TokenizerFiles) -> dict:
    """``vocab.txt`` + ``tokenizer_config.json``, as transformers' ``BertTokenizer`` reads them."""
    config = files.config
    lowercase = bool(config.get("do_lower_case", True))
    strip_accents = config.get("strip_accents")
    special = [token_content(entry) for entry in (config.get("added_tokens_decoder") or {}).values()]
    special += [token_content(t) for t in files.special_tokens_map.get("additional_special_tokens") or []]
    # never_split is ignored, as transformers' (fast) BertTokenizer ignores it.
    return {
        "vocabulary": files.path(WORD_PIECE_VOCABULARY_FILE),
        "lowercase": lowercase,
        "strip_accents": lowercase if strip_accents is None else bool(strip_accents),
        "split_on_cjk": bool(config.get("tokenize_chinese_chars", True)),
        "clean_text": True,
        "special_tokens_in_strings": True,
        "special_tokens": sorted({t for t in special if t}) or None,
    }


def _word_piece_fast_options(files: TokenizerFiles, owner: str) -> dict:
    path = files.path(TOKENIZER_FILE)
    model = _model(files, "WordPiece", owner, " (use BytePair.from_hf for byte-level BPE)")
    vocabulary = _vocabulary_by_id(model.get("vocab") or {}, f"{path} model.vocab")
    normalizer = files.tokenizer.get("normalizer") or {}
    if normalizer.get("type") != "BertNormalizer":
        raise UnsupportedTokenizerError(
            f"{owner}: {path} has the normalizer {normalizer.get('type')!r}; only BertNormalizer is supported."
        )
    pre_tokenizer = (files.tokenizer.get("pre_tokenizer") or {}).get("type")
    if pre_tokenizer != "BertPreTokenizer":
        raise UnsupportedTokenizerError(
            f"{owner}: {path} has the pre-tokenizer {pre_tokenizer!r}; only BertPreTokenizer is supported."
        )
    if not normalizer.get("clean_text", True):
        raise UnsupportedTokenizerError(f"{owner}: {path} sets clean_text=false, which is not supported.")
    index = {token: i for i, token in enumerate(vocabulary)}
    added = _added_tokens(files, owner)
    for token in added:
        if index.get(token["content"]) != token["id"]:
            raise UnsupportedTokenizerError(
                f"{owner}: added token {token['content']!r} has id {token['id']} in {path}, but the WordPiece "
                f"vocabulary gives it {index.get(token['content'])}."
            )
        if token.get("normalized") and not token.get("special"):
            raise UnsupportedTokenizerError(
                f"{owner}: added token {token['content']!r} in {path} is matched after normalization, "
                "which keras_lm does not reproduce."
            )
    lowercase = bool(normalizer.get("lowercase", True))
    strip_accents = normalizer.get("strip_accents")
    return {
        "vocabulary": vocabulary,
        "lowercase": lowercase,
        "strip_accents": lowercase if strip_accents is None else bool(strip_accents),
        "split_on_cjk": bool(normalizer.get("handle_chinese_chars", True)),
        "clean_text": True,
        "suffix_indicator": model.get("continuing_subword_prefix") or "##",
        "max_input_chars_per_word": int(model.get("max_input_chars_per_word") or 100),
        "unk_token": model.get("unk_token") or "[UNK]",
        "special_tokens_in_strings": True,
        "special_tokens": sorted(token["content"] for token in added) or None,
    }


# -- byte-level BPE ---------------------------------------------------------------------------------

def byte_pair_options(directory) -> dict:
    """``BytePair`` constructor arguments giving the ids of the directory's Hugging Face byte-level BPE.

    Raises:
        FileNotFoundError: neither ``tokenizer.json`` nor ``vocab.json`` + ``merges.txt`` is there.
        UnsupportedTokenizerError: a model, normalizer, pre-tokenizer or added token that BytePair
            cannot reproduce exactly (e.g. a SentencePiece-style BPE, an unknown split pattern).
    """
    owner = "BytePair.from_hf"
    files = read_tokenizer_files(
        directory, owner, ((TOKENIZER_FILE,), (BYTE_PAIR_VOCABULARY_FILE, BYTE_PAIR_MERGES_FILE))
    )
    if files.tokenizer is None:
        options = _byte_pair_slow_options(files)
    else:
        options = _byte_pair_fast_options(files, owner)
    vocabulary = options["vocabulary"]
    end_token = files.special_token("eos_token")
    if end_token is None or end_token not in vocabulary:
        end_token = next((t for t in ("<|endoftext|>", *options["special_tokens"]) if t in vocabulary), None)
    if end_token is None:
        raise UnsupportedTokenizerError(
            f"{owner}: '{files.directory}' names no end-of-text token (eos_token) in its vocabulary; pass "
            "end_token= (a token of the vocabulary)."
        )
    options["end_token"] = end_token
    options["special_tokens"] = [t for t in options["special_tokens"] if t != end_token]
    return options


def _byte_pair_slow_options(files: TokenizerFiles) -> dict:
    """``vocab.json`` + ``merges.txt`` + ``tokenizer_config.json``, as transformers' ``GPT2Tokenizer`` reads them."""
    from keras_lm.tokenizers.byte_pair import read_merges, read_vocabulary

    vocabulary = read_vocabulary(files.path(BYTE_PAIR_VOCABULARY_FILE))
    special = [token_content(entry) for entry in (files.config.get("added_tokens_decoder") or {}).values()]
    special += [token_content(t) for t in files.special_tokens_map.get("additional_special_tokens") or []]
    special += [files.special_token(name) for name in ("bos_token", "eos_token", "unk_token", "pad_token")]
    return {
        "vocabulary": vocabulary,
        "merges": read_merges(files.path(BYTE_PAIR_MERGES_FILE)),
        "special_tokens": sorted({t for t in special if t and t in vocabulary}),
        "add_prefix_space": bool(files.config.get("add_prefix_space", False)),
    }


def _merge_rule(merge, path: str) -> str:
    parts = merge.split(" ") if isinstance(merge, str) else list(merge)
    if len(parts) != 2 or any(" " in part for part in parts):
        raise UnsupportedTokenizerError(f"BytePair.from_hf: invalid merge {merge!r} in {path}.")
    return " ".join(parts)


def _byte_pair_fast_options(files: TokenizerFiles, owner: str) -> dict:
    path = files.path(TOKENIZER_FILE)
    model = _model(files, "BPE", owner, " (use WordPiece.from_hf for BERT tokenizers)")
    for name, allowed in (("dropout", (None, 0, 0.0)), ("continuing_subword_prefix", (None, "")),
                          ("end_of_word_suffix", (None, "")), ("byte_fallback", (None, False))):
        if model.get(name) not in allowed:
            raise UnsupportedTokenizerError(
                f"{owner}: {path} sets model.{name}={model.get(name)!r}; only byte-level BPE without it is supported."
            )
    vocabulary = {str(token): int(i) for token, i in (model.get("vocab") or {}).items()}
    added = _added_tokens(files, owner)
    for token in added:
        content, token_id = token["content"], int(token["id"])
        if vocabulary.setdefault(content, token_id) != token_id:
            raise UnsupportedTokenizerError(
                f"{owner}: added token {content!r} has id {token_id} in {path}, but the BPE vocabulary gives it "
                f"{vocabulary[content]}."
            )
    _vocabulary_by_id(vocabulary, f"{path} (model.vocab with the added tokens)")
    normalization = _byte_pair_normalization(files.tokenizer.get("normalizer"), path, owner)
    for token in added:
        content = token["content"]
        if token.get("normalized") and normalization and unicodedata.normalize(normalization, content) != content:
            raise UnsupportedTokenizerError(
                f"{owner}: added token {content!r} in {path} changes under {normalization}, which is not supported."
            )
    return {
        "vocabulary": vocabulary,
        "merges": [_merge_rule(merge, path) for merge in model.get("merges") or []],
        "special_tokens": [token["content"] for token in added],
        "ignore_merges": bool(model.get("ignore_merges", False)),
        "normalization": normalization,
        **_byte_pair_pre_tokenizer(files.tokenizer.get("pre_tokenizer"), path, owner),
    }


def _byte_pair_normalization(normalizer: dict | None, path: str, owner: str) -> str | None:
    if not normalizer:
        return None
    kind = normalizer.get("type")
    if kind == "Sequence" and not normalizer.get("normalizers"):
        return None
    if kind == "NFC":
        return "NFC"
    raise UnsupportedTokenizerError(
        f"{owner}: {path} has the normalizer {kind!r}; byte-level BPE supports none or NFC "
        "(a SentencePiece-style tokenizer is not byte-level BPE)."
    )


def _byte_pair_pre_tokenizer(pre_tokenizer: dict | None, path: str, owner: str) -> dict:
    """``split_pattern``, ``split_digits``, ``add_prefix_space`` for [Digits] [Split] ByteLevel."""
    steps = [] if not pre_tokenizer else (
        pre_tokenizer.get("pretokenizers") or [] if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    )
    kinds = [step.get("type") for step in steps]
    if not kinds or kinds[-1] != "ByteLevel":
        raise UnsupportedTokenizerError(
            f"{owner}: {path} has the pre-tokenizers {kinds}; byte-level BPE needs ByteLevel last "
            "(a Metaspace/SentencePiece-style tokenizer is not byte-level BPE)."
        )
    byte_level, options = steps[-1], {"split_pattern": None, "split_digits": None, "add_prefix_space": False}
    for step in steps[:-1]:
        kind = step.get("type")
        if kind == "Digits" and options["split_pattern"] is None and options["split_digits"] is None:
            options["split_digits"] = "individual" if step.get("individual_digits") else "runs"
        elif kind == "Split" and options["split_pattern"] is None:
            options["split_pattern"] = _split_pattern_name(step, path, owner)
        else:
            raise UnsupportedTokenizerError(
                f"{owner}: {path} has the pre-tokenizers {kinds}; supported: [Digits], [Split], ByteLevel in this order."
            )
    if byte_level.get("use_regex", True):
        if options["split_pattern"] is not None:
            raise UnsupportedTokenizerError(f"{owner}: {path} splits with a pattern and with ByteLevel's regex.")
        options["split_pattern"] = "gpt2"
    if byte_level.get("add_prefix_space"):
        if len(steps) > 1:
            raise UnsupportedTokenizerError(
                f"{owner}: {path} sets ByteLevel add_prefix_space after other pre-tokenizers, which is not supported."
            )
        options["add_prefix_space"] = True
    return options


def _split_pattern_name(step: dict, path: str, owner: str) -> str:
    pattern = step.get("pattern") or {}
    expression = pattern.get("Regex", pattern.get("String"))
    if step.get("invert") or str(step.get("behavior", "")).lower() != "isolated":
        raise UnsupportedTokenizerError(
            f"{owner}: {path} has a Split pre-tokenizer with behavior={step.get('behavior')!r}, "
            f"invert={step.get('invert')!r}; only Isolated, not inverted, is supported."
        )
    for name, known in PATTERNS.items():
        if expression == known:
            return name
    raise UnsupportedTokenizerError(
        f"{owner}: {path} splits words with the pattern {expression!r}, which keras_lm cannot reproduce exactly "
        f"in TensorFlow (known patterns: {', '.join(PATTERNS)})."
    )
