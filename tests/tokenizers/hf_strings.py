"""Text shared by the Hugging Face tokenizer parity tests: training text and varied test strings."""
import numpy as np

# Training text with the scripts the test strings use, so most words are partly in the vocabulary.
MULTILINGUAL = """Café naïve Ångström Zoë résumé façade coöperate déjà vu. Crème brûlée à la française.
Σωκράτης ὁ φιλόσοφος ἀρετή. Ὀδυσσεύς. Москва — столица России; привет, мир! Українська мова.
漢字かな交じり文 東京は日本の首都です。 中文，标点！ 한국어 문장입니다. 서울은 수도입니다.
مرحبا بالعالم. العربية لغة جميلة. नमस्ते दुनिया। हिन्दी भाषा। שלום עולם.
Straße groß Fuß. İstanbul. ﬁne ｆｕｌｌ width ½ ² ⅷ. 😀👍🏽 🇫🇷 👨‍👩‍👧 ❤️ 🙂🙂.
$5.00 ^_^ `quoted` ~tilde @user #tag https://example.com/a?b=c&d=e 12,345.67 3.14159 -42 1e-7 2024-06-01.
def main(argv): return {"key": [1, 2, 3]}  # a comment
I'm sure you're right, we've seen they'll say he'd do it. Don't! I'll go. It's 100% true.
"""

VARIED = [
    "", " ", "  ", "\n", "\t", "Hello world", "hello  world", " leading space", "trailing space ",
    "   three leading", "three trailing   ", "a  b   c    d     e", "first line\nsecond line", "para one\n\npara two",
    "a \n b", "\t\tindented\ttab\t", "windows\r\nline end", "  \n  \n", "x\x0by\x0cz",
    # accents, combining marks, case
    "Café naïve Ångström Zoë", "RÉSUMÉ déjà vu", "e\u0301 combining acute", "a\u0308\u0304 stacked marks",
    "ΣΊΣΥΦΟΣ Ὀδυσσεύς σοφός", "İstanbul Straße ﬁne ｆｕｌｌ", "ǅungla ⅷ ½ ²", "The KING and the King",
    "MiXeD CaSe WoRdS", "ALL CAPS SENTENCE!",
    # CJK, Korean, other scripts
    "漢字かな交じり文", "東京は日本の首都です。", "中文，标点！", "한국어 문장입니다", "서울", "mixed東京text",
    "Москва — столица", "Привет, мир", "مرحبا بالعالم ١٢٣", "नमस्ते दुनिया १२३", "שלום עולם", "ไทย ภาษา",
    # emoji
    "👍🏽", "🇫🇷", "👨\u200d👩\u200d👧 family", "emoji 😀👍🏽 ok", "🙂🙂🙂", "❤️ heart",
    # punctuation runs and symbols
    "!!!???", "...", "—", "–-‐", "$5.00", "^_^", "`quoted`", "~", "@user #tag", "a--b", "(x) [y] {z} <a/>",
    "«guillemets» „quotes“ ‘single’", "100% 50‰ §3 ¶2 †‡", "a+b=c <tag> a|b ~x^y", "¿Qué? ¡Sí!", "…",
    # whitespace and invisible characters
    "no-break\u00a0space", "ideographic\u3000space", "zero\u200bwidth\u200bspace", "thin\u2009space",
    "soft\u00adhyphen", "\ufeffBOM start", "left\u200eright\u200fmarks", "line\u2028separator", "x\x85y",
    # control characters, replacement character, private use
    "nul\x00byte", "\x00", "bell\x07ring", "escape\x1b[31mred", "delete\x7fchar", "replacement\ufffdchar",
    "\ufffd", "private\ue000use", "tab\tbell\x07 nul\x00 escape\x1b[31m",
    # unknown characters and long words
    "x" * 150, "é" * 60, "a" * 100, "a" * 101, "pneumonoultramicroscopicsilicovolcanoconiosis", "zyxwvq qqqq",
    "☃ ♞ ⚙ ∑ ∫ √", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕓𝕠𝕝𝕕", "ꙮ", "\U0002B820\U0002B920",
    # numbers, URLs, code
    "12345678", "3.14159 -42 1e-7", "2024-06-01T12:00:00Z", "12,345.67", "0x1F 0b1010 1_000_000",
    "https://example.com/a?b=c&d=e#frag", "user@example.com", "C:\\Users\\name\\file.txt",
    "def main(argv): return {\"key\": [1, 2, 3]}", "if (a && b || !c) { x += 1; }", "print('hi')  # comment",
    # contractions
    "don't I'll we've they're it's", "I'M YOU'RE WE'VE", "rock 'n' roll", "o'er 'tis",
    # special tokens written in the text
    "[CLS] [SEP] [PAD] [MASK] [UNK] written as text", "The [MASK] is here", "[CLS]joined[SEP]", "[mask] lower",
    "[[MASK]]", "[MASK", "<|endoftext|>", "one<|endoftext|>two", "<|im_start|>user\nhi<|im_end|>",
]


def random_strings(count: int, seed: int = 0, length: int = 14) -> list:
    """Random strings over an alphabet full of boundary cases (spaces, marks, scripts, controls)."""
    rng = np.random.default_rng(seed)
    alphabet = list(" \t\n\r\u00a0\u3000\u200b'sdtmlrevaZSDTMLRE09٣½!?.,/é東한😀\x00\x07\u0301-Ǆ#[]") + [
        "'s", "'LL", "\r\n", "  ", "[MASK]", "<|endoftext|>", "the", "king", "Café",
    ]
    return ["".join(rng.choice(alphabet, size=rng.integers(0, length))) for _ in range(count)]


def corpus_text(max_chars: int = 300_000) -> str:
    """The first Shakespeare work of the train split (prepared by `python -m keras_lm.data.prepare`)."""
    import keras_lm

    work = next(iter(keras_lm.data.load("shakespeare", split="train")))
    return work["text"].numpy().decode("utf-8")[:max_chars]


def corpus_lines(count: int = 100) -> list:
    """Non-empty lines of a Shakespeare work of the validation split, spread over the work."""
    import keras_lm

    work = next(iter(keras_lm.data.load("shakespeare", split="validation")))
    lines = [line for line in work["text"].numpy().decode("utf-8").split("\n") if line.strip()]
    return lines[:: max(1, len(lines) // count)][:count]


def varied_strings() -> list:
    """At least 200 strings: the hand-written cases, real lines and random strings."""
    return VARIED + corpus_lines(100) + random_strings(100)
