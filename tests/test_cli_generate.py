"""`keras-lm generate` streams: each line is written piece by piece as tokens come, and ends as the
non-streamed generation ends, for a .keras CausalLM and for its generation export."""
import io

import pytest

from keras_lm.recipes.gpt import generate_text, print_generation

PROMPTS = ["My lord,", "To be"]


class Recorder(io.StringIO):
    """A text stream that remembers each write."""

    def __init__(self):
        super().__init__()
        self.pieces = []

    def write(self, text):
        self.pieces.append(text)
        return super().write(text)


@pytest.fixture(scope="module")
def causal_lm(tmp_path_factory):
    """A tiny GPT-2 on bytes with random weights, as a .keras file and as a generation export."""
    import keras_hub
    import numpy as np

    import keras_lm

    backbone = keras_lm.applications.Gpt2("tiny", vocabulary_size=256, hidden_dim=16, num_heads=2,
                                          max_sequence_length=32)
    rng = np.random.default_rng(0)
    for weight in backbone.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
    model = keras_lm.tasks.CausalLM(backbone, keras_hub.tokenizers.ByteTokenizer(lowercase=False))
    model.generate(["a"], max_new_tokens=1)  # builds the tokenizer, which the export tracks
    folder = tmp_path_factory.mktemp("lm")
    model.save(str(folder / "lm.keras"))
    keras_lm.export.serving(model, str(folder / "export"))
    return str(folder / "lm.keras"), str(folder / "export")


@pytest.mark.parametrize("sampling", [{}, {"temperature": 1.0, "top_k": 20, "seed": 3}], ids=["greedy", "sampled"])
def test_generation_is_written_as_it_is_produced_and_ends_as_the_export_generates(causal_lm, sampling):
    keras_file, export = causal_lm
    expected = [prompt + generate_text(export, [prompt], max_new_tokens=8, **sampling)[0] for prompt in PROMPTS]
    for model in (keras_file, export):
        stream = Recorder()
        lines = print_generation(model, PROMPTS, max_new_tokens=8, stream=stream, **sampling)
        assert lines == expected, model
        assert stream.getvalue() == "".join(line + "\n" for line in expected)
        assert stream.pieces[0] == PROMPTS[0]  # the prompt is shown before the first new token
        first_line = stream.pieces[:stream.pieces.index("\n") + 1]
        assert len(first_line) >= 4, (model, first_line)  # the continuation came in several pieces


def test_generate_checks_its_arguments_before_printing(causal_lm, capsys):
    from keras_lm import cli

    keras_file, _ = causal_lm
    assert cli.main(["generate", "--model", keras_file, "--max-new-tokens", "40", "My lord,"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("keras-lm: error: max_new_tokens=40 leaves no room for a prompt in the context of "
                            "32 tokens.\n")
    assert cli.main(["generate", "--model", keras_file, "--top-p", "0", "My lord,"]) == 2
    assert capsys.readouterr().err.startswith("keras-lm: error: top_p must be a number in (0, 1]")
