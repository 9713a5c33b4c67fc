"""The shared report writer: copied reports name no folder of the machine that ran them."""
import os

from keras_lm.recipes.report_files import write_report


def test_paths_inside_the_run_folder_are_written_as_output(tmp_path):
    output = tmp_path / "runs" / "peft"
    results = tmp_path / "applications" / "peft"
    (output).mkdir(parents=True)
    (output / "peft.png").write_bytes(b"png")
    lines = ["# PEFT", f"Start: the encoder export {output / 'encoder'}.", "![plot](peft.png)"]
    path = write_report(str(output), "peft.md", lines, results=str(results), copies=("peft.png",))
    for written in (path, results / "peft.md"):
        text = open(written, encoding="utf-8").read()
        assert "Start: the encoder export OUTPUT/encoder." in text
        assert str(tmp_path) not in text
    assert (results / "peft.png").read_bytes() == b"png"


def test_a_relative_run_folder_is_replaced_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("runs/a")
    path = write_report("runs/a", "a.md", ["# A", "Start: runs/a/encoder and /elsewhere/encoder", "end"])
    assert open(path, encoding="utf-8").read() == "# A\nStart: OUTPUT/encoder and /elsewhere/encoder\nend\n"
