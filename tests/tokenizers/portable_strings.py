"""Varied real texts and hand-made edge cases for the portable tokenizer tests."""
import itertools

EDGE_CASES = [
    "",
    " ",
    "\t\n\r\x0b\x0c \u00a0\u1680\u2000\u2003\u200a\u2028\u2029\u202f\u205f\u3000",
    "Ångström café naïve façade résumé Þór Øresund İstanbul ΣΟΦΟΣ ὈΔΥΣΣΕΎΣ",
    "东京 北京市 漢字かな交じり文 한국어 텍스트 𠀋𡈽 ｆｕｌｌ－ｗｉｄｔｈ",
    "emoji 😀👍🏽 👨‍👩‍👧 🇫🇷 ❤️ flags",
    "punctuation!!!??...,,,;;::---___(((]]]{{{}}}@@@###$$$%%%^^^&&&***''\"\"``~~",
    "«guillemets» „quotes“ ‘single’ — dash – en… ¿qué? ¡sí! ※ ・",
    "control\x07bell\x1b[31mescape\x00nul\x7fdel\x85nel",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u00adsoft",
    "private\ue000use\U000f0000plane \ufffd replacement",
    "a" * 101,
    "supercalifragilisticexpialidocious " * 3 + "x" * 100,
    "kings kingdom walk walked walking WALK Walk",
    "[CLS] [SEP] [PAD] [MASK] [UNK] written as text [MASK][SEP]x[MASK]",
    "ﬁ ß ẞ Ǆ ǅ ǆ ΐ ﬀ ℌ Ⅻ ⓐ ①",
    "combining e\u0301 a\u0300\u0316 o\u0308\u0304 hangul 가각 jamo \u1100\u1161",
    "arabic مرحبا بالعالم hebrew שלום devanagari नमस्ते thai สวัสดี",
    "mixedCASE Words With 123 numbers 4.5e-3 and URLs https://example.com/a?b=c&d=e#f",
    "tab\tseparated\tvalues\nnew\nlines\r\nwindows",
]


def varied_texts(count: int = 1000) -> list:
    """``count`` texts: movie reviews, Shakespeare and WordNet glosses interleaved, then the edge cases."""
    import keras_lm

    sources = []
    for name in ("movie_snippets", "shakespeare", "wordnet_glosses"):
        rows = keras_lm.data.load(name, split="train").take(count)
        sources.append([row["text"].numpy().decode("utf-8") for row in rows])
    mixed = [t for row in itertools.zip_longest(*sources) for t in row if t is not None]
    return mixed[: count - len(EDGE_CASES)] + EDGE_CASES
