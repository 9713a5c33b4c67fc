"""Labelled examples from CSV, TSV and JSON Lines files: every bad row counted and named by its line."""
import json

import pytest

from keras_lm.data.labelled import BadRow, BadRowError, read_labelled


def _write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


PLANTED_CSV = (
    "id,review,sentiment\n"                              # line 1: header
    "1,A gripping film.,positive\n"                        # line 2
    '2,"Dull, lifeless and\nfar too long.",negative\n'    # lines 3-4: one quoted text over two lines
    "3,,positive\n"                                        # line 5: empty text
    "4,   ,negative\n"                                     # line 6: blank text
    "5,Fine cast,\n"                                       # line 7: empty label
    "6,Not quoted, so split,negative\n"                   # line 8: four fields
    "7,Too few\n"                                          # line 9: two fields
    "\n"                                                   # line 10: blank line, no row
).encode("utf-8") + b"8,Caf\xe9 scenes,positive\n" + (  # line 11: latin-1 byte, not UTF-8
    "9,Charming but thin.,mixed\n"                         # line 12
    "10,The plot works.,positive\n"                        # line 13
).encode("utf-8")


def test_a_csv_with_planted_bad_rows_reports_each_by_its_line(tmp_path, capsys):
    path = _write(tmp_path / "reviews.csv", PLANTED_CSV)
    read = read_labelled(path, text="review", label="sentiment")
    assert read.bad_rows == [
        BadRow(5, "empty text (column review)"),
        BadRow(6, "empty text (column review)"),
        BadRow(7, "empty label"),
        BadRow(8, "4 fields where the header has 3 (an unquoted ',' in a text? quote the field)"),
        BadRow(9, "2 fields where the header has 3 (an unquoted ',' in a text? quote the field)"),
        BadRow(11, "not valid UTF-8 (byte 0xE9); save the file as UTF-8"),
    ]
    assert read.texts == ["A gripping film.", "Dull, lifeless and\nfar too long.", "Charming but thin.",
                          "The plot works."]
    assert read.lines == [2, 3, 12, 13]
    assert read.label_names == ("mixed", "negative", "positive")  # names sorted, then ids
    assert read.labels.tolist() == [2, 1, 0, 2]
    assert read.rows == 10 and read.num_classes == 3
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (f"[data] {path}: 4 examples of 10 rows, skipped 6 bad rows; "
                          "3 classes (mixed 1, negative 1, positive 2)")
    assert printed[1:] == [f"[data]   skipped {bad}" for bad in read.bad_rows]


def test_strict_stops_at_the_first_bad_row(tmp_path):
    path = _write(tmp_path / "reviews.csv", PLANTED_CSV)
    with pytest.raises(BadRowError, match=r"reviews.csv' line 5: empty text \(column review\)\. Fix the row"):
        read_labelled(path, text="review", label="sentiment", strict=True, quiet=True)


def test_the_training_names_map_the_validation_file_and_unknown_names_are_bad_rows(tmp_path):
    path = _write(tmp_path / "validation.csv", "text,label\nGood.,positive\nBad.,negative\nOdd.,neutral\nOk.,1\n")
    read = read_labelled(path, label_names=("negative", "positive"), quiet=True)
    assert read.labels.tolist() == [1, 0, 1]  # "1" is a valid class id of the two names
    assert read.bad_rows == [BadRow(4, "unknown label 'neutral'; the labels are negative, positive")]
    assert read.label_names == ("negative", "positive")


def test_json_lines_with_integer_labels(tmp_path):
    rows = [
        json.dumps({"text": "A gem.", "label": 1}),               # 1
        json.dumps({"text": "A dud.", "label": "0"}),             # 2: integer text is an id too
        "{not json",                                              # 3
        "",                                                       # 4: blank line, no row
        json.dumps(["A list", 1]),                                # 5
        json.dumps({"text": "No label"}),                         # 6
        json.dumps({"text": "Worse.", "label": "bad"}),           # 7: a name in a file of ids
        json.dumps({"text": "Half.", "label": 0.5}),              # 8
        json.dumps({"text": 42, "label": 1}),                     # 9
        json.dumps({"text": "Yes.", "label": True}),              # 10
        json.dumps({"text": "Minus.", "label": -1}),              # 11
        json.dumps({"text": "Three.", "label": 3.0}),             # 12
    ]
    path = _write(tmp_path / "train.jsonl", "\n".join(rows) + "\n")
    read = read_labelled(path, quiet=True)
    assert read.bad_rows == [
        BadRow(3, "not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
        BadRow(5, "a JSON list, not an object with fields"),
        BadRow(6, "no field 'label'"),
        BadRow(7, "label 'bad' is not a class id: this file's labels are integer ids (from line 1)"),
        BadRow(8, "label 0.5 is neither a class id (an integer) nor a class name"),
        BadRow(9, "text is a number, not a text"),
        BadRow(10, "label true is neither a class id (an integer) nor a class name"),
        BadRow(11, "label -1 is negative; class ids start at 0"),
    ]
    assert read.texts == ["A gem.", "A dud.", "Three."]
    assert read.labels.tolist() == [1, 0, 3]
    assert read.label_names is None and read.num_classes == 4


def test_tsv_keeps_quotes_as_text_and_reads_a_text_pair(tmp_path):
    path = _write(tmp_path / "pairs.tsv",
                  'premise\thypothesis\tlabel\n'
                  'He said "hi".\tHe spoke.\tentailment\n'
                  'A cat.\tA dog.\n'
                  'A cat.\tAn animal.\tentailment\n')
    read = read_labelled(path, text="premise", text_pair="hypothesis", quiet=True)
    assert read.texts == ['He said "hi".', "A cat."]
    assert read.text_pairs == ["He spoke.", "An animal."]
    assert read.bad_rows == [BadRow(3, "2 fields where the header has 3")]
    dataset = read.dataset()
    assert dataset.label_names == ("entailment",) and dataset.bad_rows == read.bad_rows
    first = next(iter(dataset))
    assert sorted(first) == ["label", "text", "text_pair"]
    assert first["text_pair"].numpy().decode() == "He spoke."


def test_keras_lm_data_load_reads_labelled_files_and_tfds_features(tmp_path):
    import keras_lm

    path = _write(tmp_path / "reviews.csv", "review,stars\nLovely.,good\nAwful.,bad\n")
    dataset = keras_lm.data.load(str(path), text="review", label="stars")
    assert dataset.label_names == ("bad", "good")
    assert [(ex["text"].decode(), int(ex["label"])) for ex in dataset.as_numpy_iterator()] == [
        ("Lovely.", 1), ("Awful.", 0)]
    with pytest.raises(ValueError, match=r"has no column 'text'; its header \(line 1\) names 'review', 'stars'"):
        keras_lm.data.load(str(path), label="stars")
    with pytest.raises(ValueError, match="is a single split"):
        keras_lm.data.load(str(path), split="validation", text="review", label="stars")
    snippets = keras_lm.data.load("movie_snippets", split="validation", text="text", label="label")
    assert snippets.label_names == ("negative", "positive")
    assert sorted(snippets.element_spec) == ["label", "text"]
    with pytest.raises(ValueError, match="has no feature 'sentence'; its features are 'id', 'label'"):
        keras_lm.data.load("movie_snippets", split="validation", text="sentence", label="label")
