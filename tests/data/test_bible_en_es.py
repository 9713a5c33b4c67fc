"""The bible_en_es corpus: OSIS verse markup cleaned to text, verses paired by reference with the
drop rules counted, whole books per split; the prepared corpus built from the real Debian packages;
and fetch_debian_package's errors (no network: the mirror is a closed local port)."""
import shutil
import subprocess

import pytest
import tensorflow_datasets as tfds

import keras_lm.data
from keras_lm.data.builders.bible_en_es import (
    SHIFTED_CHAPTERS,
    TEST_BOOKS,
    VALIDATION_BOOKS,
    BibleEnEs,
    aligned_pairs,
    clean_verse,
    read_verses,
    split_of,
)
from keras_lm.data.errors import DataUnavailableError
from keras_lm.data.fetch import _unpack_deb, fetch_debian_package
from keras_lm.data.translation_metrics import copy_source_bleu

# Genesis 1:1 and Matthew 21:1 of sword-text-web, as the module stores them.
GENESIS_1_1_EN = (
    '<w lemma="strong:H0430">In</w> <w lemma="strong:H0853">the</w> <w lemma="strong:H7225">beginning</w>, '
    '<w lemma="strong:H0430">God</w><note placement="foot"><reference type="annotateRef">1:1 </reference>'
    "The Hebrew word rendered “God” is “אֱלֹהִ֑ים” (Elohim).</note><w lemma=\"strong:H1254\">created</w> "
    '<w lemma="strong:H0853">the</w> <w lemma="strong:H8064">heavens</w> <w lemma="strong:H0430">and</w> '
    '<w lemma="strong:H0853">the</w> <w lemma="strong:H0776">earth</w>. '
)
MATTHEW_21_1_EN = (
    '<w lemma="strong:G2064">came</w> <w lemma="strong:G1519">to</w> Bethsphage,<note placement="foot">'
    '<reference type="annotateRef">21:1 </reference>TR &amp;NU read “Bethphage” instead of “Bethsphage”</note> '
    '<w lemma="strong:G1519">to</w> the Mount'
)


def test_notes_become_a_space_before_the_other_tags_go():
    assert clean_verse(GENESIS_1_1_EN) == "In the beginning, God created the heavens and the earth."
    assert clean_verse(MATTHEW_21_1_EN) == "came to Bethsphage, to the Mount"  # the note's &amp; goes with it
    # a note right before punctuation leaves no space; a cross reference is a note too
    assert clean_verse('incomprehensible<note placement="foot">Or, wonderful</note>?”') == "incomprehensible?”"
    assert clean_verse('evaluated,<note type="crossReference"><reference>Exodus 30:12</reference></note> and') == (
        "evaluated, and"
    )


def test_strongs_tags_markup_and_headings_go_canonical_titles_stay():
    assert clean_verse("<G2316>God</G2316> <H3068>Yahweh</H3068> &amp; <G1>all") == "God Yahweh & all"
    assert clean_verse(
        '<div type="x-milestone" subType="x-preverse" sID="pv4877"/><title canonical="true" type="psalm">'
        'A Psalm by David.</title> <lg sID="gen7860"/> <l level="1" sID="gen7861"/>Yahweh, how'
        '<l eID="gen7861" level="1"/>'
    ) == "A Psalm by David. Yahweh, how"
    assert clean_verse('<speaker>Beloved</speaker> <lg sID="g1"/>Let him kiss me') == "Let him kiss me"
    assert clean_verse('amen.<title level="1" type="main">Heading</title> end') == "amen. end"
    # the Spanish module writes some words with no space between their elements
    assert clean_verse(
        '<w lemma="strong:H8416">su alabanza</w><transChange type="added">sea</transChange>'
        '<w lemma="strong:H6951">en la congregación</w> preguntándo<transChange type="added">le</transChange>,'
    ) == "su alabanza sea en la congregación preguntándole,"
    # everything after the end of a book (the WEB's glossary after Revelation 22:21) is dropped
    assert clean_verse(
        'with all the saints. Amen.<div canonical="true" eID="gen1" osisID="Rev" type="book"/>'
        ' <div sID="gen2" type="glossary"/> Abba is Father'
    ) == "with all the saints. Amen."
    assert clean_verse('<w lemma="strong:H1">  </w><note>only a note</note>') == ""


def test_pairs_follow_the_spanish_order_and_each_drop_is_counted():
    english = {("Gen", 1, 1): "In the beginning", ("Gen", 1, 2): "<note>n</note>", ("Gen", 1, 3): "abcd",
               ("Gen", 1, 4): "abcd", ("Gen", 1, 5): "abcd", ("Num", 13, 1): "Yahweh spoke",
               ("Tob", 1, 1): "only in English"}
    spanish = {("Gen", 1, 4): "ab", ("Gen", 1, 1): "EN el principio", ("Gen", 1, 2): "Y la tierra",
               ("Gen", 1, 3): "a", ("Gen", 1, 5): "abcdefghi", ("Num", 13, 1): "Y movió el pueblo",
               ("Rev", 99, 1): "only in Spanish"}
    pairs, dropped = aligned_pairs(english, spanish)
    assert [(p["book"], p["chapter"], p["verse"], p["en"], p["es"]) for p in pairs] == [
        ("Gen", 1, 4, "abcd", "ab"),  # a ratio of exactly 2 is kept
        ("Gen", 1, 1, "In the beginning", "EN el principio"),
    ]
    assert dict(dropped) == {
        "with an empty side": 1,
        "with lengths too different": 2,  # 4/1 and 4/9
        "in chapters numbered differently": 1,
    }
    assert ("Num", 13) in SHIFTED_CHAPTERS


def test_splits_hold_whole_books():
    assert [split_of(book) for book in ("Gen", "Josh", "John", "Judg", "Ruth", "Rom", "Heb", "Jas", "Rev")] == [
        "train", "test", "test", "validation", "validation", "validation", "validation", "validation", "train"
    ]


def test_a_missing_sword_library_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No SWORD library \(a mods.d folder\) at .*nowhere"):
        read_verses(tmp_path / "nowhere", "engWEB2015eb")
    (tmp_path / "mods.d").mkdir()
    with pytest.raises(FileNotFoundError, match=r"No SWORD module 'engWEB2015eb' in .*mods.d"):
        read_verses(tmp_path, "engWEB2015eb")


def test_prepared_corpus_from_the_real_packages(prepared_data_dir):
    splits = BibleEnEs(data_dir=prepared_data_dir).info.splits
    assert {s: splits[s].num_examples for s in splits} == {"train": 27723, "validation": 1540, "test": 1537}
    data = {s: list(tfds.as_numpy(keras_lm.data.load("bible_en_es", split=s))) for s in splits}
    first = {s: data[s][0] for s in data}
    assert (first["train"]["en"].decode(), first["train"]["es"].decode()) == (
        "In the beginning, God created the heavens and the earth.",
        "EN el principio crió Dios los cielos y la tierra.",
    )
    assert (first["test"]["book"], first["test"]["chapter"], first["test"]["verse"]) == (b"Josh", 1, 1)
    assert first["test"]["es"].decode() == (
        "Y ACONTECIÓ después de la muerte de Moisés siervo de Jehová, que Jehová habló á Josué hijo de Nun, "
        "ministro de Moisés, diciendo:"
    )
    assert first["validation"]["en"].decode() == (
        "After the death of Joshua, the children of Israel asked of Yahweh, saying, “Who should go up for us "
        "first against the Canaanites, to fight against them?”"
    )
    last_test = data["test"][-1]
    assert (last_test["book"], last_test["chapter"], last_test["verse"]) == (b"John", 21, 25)

    books = {s: {e["book"].decode() for e in data[s]} for s in data}
    assert books["test"] == set(TEST_BOOKS) and books["validation"] == set(VALIDATION_BOOKS)
    assert len(books["train"]) == 59 and not books["train"] & (books["test"] | books["validation"])
    references = [(e["book"], e["chapter"], e["verse"]) for s in data for e in data[s]]
    assert len(set(references)) == len(references) == 30_800
    assert not {(b.decode(), c) for b, c, _ in references} & SHIFTED_CHAPTERS
    for example in (e for s in data for e in data[s]):
        for text in (example["en"].decode(), example["es"].decode()):
            assert text and text == " ".join(text.split()), example
            assert not set(text) & set("<>&"), example  # no markup or entity is left
        assert 0.5 <= len(example["en"].decode()) / len(example["es"].decode()) <= 2

    # the copy-the-source baseline a translation of the test split must beat
    test = data["test"]
    assert round(copy_source_bleu([e["en"] for e in test], [e["es"] for e in test]), 2) == 0.11


@pytest.fixture
def unreachable_debian_mirror(monkeypatch, tmp_path):
    """apt-get with only its main configuration and a proxy on a closed local port; an empty keras_lm cache."""
    (tmp_path / "no-apt-parts").mkdir()
    config = tmp_path / "apt.conf"
    config.write_text(
        f'Dir::Etc::Parts "{tmp_path / "no-apt-parts"}";\n'
        'Acquire::http::Proxy "http://127.0.0.1:9";\nAcquire::https::Proxy "http://127.0.0.1:9";\n'
    )
    monkeypatch.setenv("APT_CONFIG", str(config))
    monkeypatch.setenv("KERAS_LM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_an_unreachable_mirror_raises_one_clear_error_and_leaves_no_cache(unreachable_debian_mirror):
    with pytest.raises(DataUnavailableError) as raised:
        fetch_debian_package("sword-text-web", "426.0-1", retries=0, timeout=5)
    message = str(raised.value)
    assert message.startswith(
        "Could not fetch the Debian package sword-text-web=426.0-1: the Debian mirror could not be reached"
    )
    assert "Could not connect to 127.0.0.1:9" in message  # apt's own error line
    assert "python -m keras_lm.data.prepare" in message and "\n" not in message
    assert list((unreachable_debian_mirror / "debian").iterdir()) == []


def test_an_unknown_version_says_so(unreachable_debian_mirror):
    with pytest.raises(DataUnavailableError, match=r"apt-get: E: Version '0\.0-0' for 'sword-text-web' was not found"):
        fetch_debian_package("sword-text-web", "0.0-0")


def test_missing_apt_get_says_what_is_needed(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_LM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(DataUnavailableError, match=r"the `apt-get` and `dpkg-deb` commands were not found on PATH"):
        fetch_debian_package("sword-text-web", "426.0-1")
    assert not (tmp_path / "cache" / "debian").exists()


def test_a_package_of_another_version_is_refused(tmp_path):
    dpkg_deb = shutil.which("dpkg-deb")

    def build(version):
        root = tmp_path / f"pkg-{version}"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: sword-text-web\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: nobody <nobody@example.org>\nDescription: test\n"
        )
        (root / "usr" / "share").mkdir(parents=True)
        (root / "usr" / "share" / "verse.txt").write_text("Jesus wept.")
        archive = tmp_path / f"sword-text-web_{version}_all.deb"
        subprocess.run([dpkg_deb, "--build", str(root), str(archive)], check=True, capture_output=True)
        return archive

    with pytest.raises(DataUnavailableError, match=r"for sword-text-web=426\.0-1 .* is sword-text-web=1\.0-1"):
        _unpack_deb(dpkg_deb, build("1.0-1"), tmp_path / "wrong", "sword-text-web", "426.0-1")
    unpacked = _unpack_deb(dpkg_deb, build("426.0-1"), tmp_path / "right", "sword-text-web", "426.0-1")
    assert (unpacked / "usr" / "share" / "verse.txt").read_text() == "Jesus wept."
