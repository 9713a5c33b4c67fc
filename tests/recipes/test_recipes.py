"""Recipes and the keras-lm command."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from keras_lm.recipes import RecipeError, load_recipe, run_recipe, validate_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shipped_recipes_are_valid():
    folder = os.path.join(ROOT, "applications")
    recipes = [f for f in os.listdir(folder) if f.endswith(".yaml")]
    assert "quickstart.yaml" in recipes
    for name in recipes:
        load_recipe(os.path.join(folder, name))


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"pretrain": {"size": "mini", "stpes": 3}}, "unknown key 'pretrain.stpes'"),
        ({"pretrian": {"size": "mini"}}, "unknown step 'pretrian'"),
        ({"finetune": ["epochs", 2]}, "step 'finetune' must map"),
        ({"pretrain": {"output": "x"}}, "unknown key 'pretrain.output'"),
        # Values of the wrong type or range fail before any work, naming step.key, type and value.
        ({"train_vocabulary": {"lowercase": "false"}},
         "train_vocabulary.lowercase must be true or false, got 'false' (str)"),
        ({"train_vocabulary": {"vocabulary_size": "lots"}},
         "train_vocabulary.vocabulary_size must be an integer, got 'lots' (str)"),
        ({"pretrain": {"steps": True}}, "pretrain.steps must be an integer, got True (bool)"),
        ({"pretrain": {"steps": 2.5}}, "pretrain.steps must be an integer, got 2.5 (float)"),
        ({"pretrain": {"learning_rate": "fast"}}, "pretrain.learning_rate must be a number, got 'fast'"),
        ({"pretrain": {"strategy": 3}}, "pretrain.strategy must be a string (or null), got 3 (int)"),
        ({"pretrain": {"size": "huge"}}, "pretrain.size must be one of tiny, mini"),
        ({"pretrain": {"steps": -5}}, "pretrain.steps must be at least 1, got -5"),
        ({"finetune": {"max_train_examples": 0}}, "finetune.max_train_examples must be at least 1"),
        ({"serve": {"sentences": "one sentence"}}, "serve.sentences must be a list, got 'one sentence'"),
        ({"pretrain_causal_lm": {"batch_size": "16"}}, "pretrain_causal_lm.batch_size must be an integer"),
        ({"pretrain": {"objective": "nsp"}}, "pretrain.objective must be one of mlm, mlm+nsp, rtd, got 'nsp'"),
        ({"pretrain": {"corpus": []}}, "pretrain.corpus must name at least one corpus"),
        ({"train_vocabulary": {"corpus": 3}}, "train_vocabulary.corpus must be a string or a list, got 3"),
        ({"finetune": {"seeds": [0, 0]}}, "finetune.seeds must not repeat a seed, got [0, 0]"),
        ({"finetune": {"seeds": "0,1"}}, "finetune.seeds must be a list (or null), got '0,1'"),
        ({"finetune": {"seeds": [0, 1.5]}}, "finetune.seeds must be a list (or null), got [0, 1.5]"),
        ({"finetune": {"random_init_learning_rate": 0}}, "finetune.random_init_learning_rate must be a positive number"),
        ({"finetune": {"random_init_epochs": 0}}, "finetune.random_init_epochs must be at least 1"),
        ({"report": {"tried": [{"option": "x"}]}}, "report.tried entry 1 needs 'lever' and 'option'"),
    ],
)
def test_bad_recipes_name_the_problem(recipe, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        validate_recipe(recipe)


def test_values_of_the_right_type_are_accepted():
    validate_recipe({
        "train_vocabulary": {"lowercase": False, "vocabulary_size": 100, "corpus": ["movie_snippets", "shakespeare"]},
        "pretrain": {"learning_rate": 1, "vocabulary": None, "strategy": "one_device", "size": "tiny",
                     "corpus": "shakespeare", "objective": "mlm"},
        "finetune": {"max_train_examples": None, "compare_random_init": True, "seeds": [0, 1, 2],
                     "random_init_learning_rate": 0.001, "random_init_epochs": 2},
        "serve": {"sentences": ["a", "b"], "labels": ["n", "p"]},
        "report": {"tried": [{"lever": "epochs", "option": "3", "pretrained_validation": 0.8, "chosen": True}]},
    })


def test_a_bad_override_fails_before_any_work(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"train_vocabulary": {"vocabulary_size": 100}, "pretrain": {"steps": 2}}))
    output = tmp_path / "run"
    with pytest.raises(RecipeError, match="pretrain.steps must be an integer, got 'many'"):
        run_recipe(str(recipe), str(output), {"pretrain.steps": "many"})
    assert not output.exists()  # the vocabulary step did not start


def test_cli_reports_a_bad_key_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"pretrain": {"size": "mini", "batch": 3}}))
    process = subprocess.run(
        [sys.executable, "-m", "keras_lm.cli", "run", str(path), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 2
    assert "unknown key 'pretrain.batch'" in process.stderr
    assert "Traceback" not in process.stderr


@pytest.mark.slow  # long: run with -m slow
def test_miniature_quickstart_through_the_cli(tmp_path):
    """The quickstart recipe end to end at toy scale: every artefact and figure is produced."""
    output = tmp_path / "run"
    overrides = [
        "train_vocabulary.vocabulary_size=1000",
        "train_vocabulary.corpus=[movie_snippets]",
        "pretrain.size=tiny",
        "pretrain.steps=6",
        "pretrain.warmup=2",
        "pretrain.sequence_length=32",
        "pretrain.batch_size=8",
        "pretrain.evaluations=2",
        "pretrain.embedding_corpus=[movie_snippets]",  # the co-occurrence start on one corpus: quicker
        "finetune.epochs=1",
        "finetune.random_init_epochs=1",
        "finetune.max_train_examples=64",
        "finetune.seeds=[0, 1]",
    ]
    command = [sys.executable, "-m", "keras_lm.cli", "run", os.path.join(ROOT, "applications", "quickstart.yaml"), "--output", str(output)]
    for override in overrides:
        command += ["--set", override]
    process = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    for artefact in ("vocab.txt", "pretrainer.keras", "encoder/keras_lm.json", "classifier.keras",
                     "serving/1/saved_model.pb", "report.md", "loss_curves.png"):
        assert (output / artefact).exists(), artefact
    metrics = json.loads((output / "metrics.json").read_text())
    pretraining = metrics["pretraining"]
    assert len(pretraining["train_loss_curve"]) == 6
    assert [point["step"] for point in pretraining["held_out_curve"]] == [3, 6]
    objectives = {"mlm": {"mlm_loss", "mlm_accuracy"}, "mlm+nsp": {"mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy"}}
    assert set(pretraining["train_curves"]) == objectives[pretraining["objective"]]
    finetuning = metrics["finetuning"]
    for start in ("pretrained", "random_init"):
        section = finetuning[start]
        assert [run["seed"] for run in section["runs"]] == [0, 1]
        tests = [run["test_accuracy"] for run in section["runs"]]
        assert section["test_accuracy"] == pytest.approx(sum(tests) / 2)
        assert (section["test_accuracy_min"], section["test_accuracy_max"]) == (min(tests), max(tests))
        assert all(len(run["validation_accuracy"]) == 1 and len(run["train_loss_curve"]) == 2 for run in section["runs"])
    served = finetuning["served"]
    finals = {run["seed"]: run["validation_accuracy"][-1] for run in finetuning["pretrained"]["runs"]}
    assert served["seed"] == max(finals, key=lambda seed: (finals[seed], -seed))
    assert finetuning["difference"] == pytest.approx(
        finetuning["pretrained"]["test_accuracy"] - finetuning["random_init"]["test_accuracy"])
    assert metrics["what_was_tried"] and all({"lever", "option"} <= set(e) for e in metrics["what_was_tried"])
    answers = metrics["serving"]["answers"]
    assert len(answers) == 3 and {a["label"] for a in answers} <= {"negative", "positive"}
    report = (output / "report.md").read_text()
    assert "test accuracy (mean ± std)" in report and "| random init |" in report
    assert "What was tried" in report and f"seed {served['seed']}" in report
    _assert_classifier_started_from_the_pretrained_encoder(output, metrics)


def _token_embedding(model, vocabulary_size):
    """The one [vocabulary, hidden] weight of an encoder (its token embedding), as numpy."""
    found = [w.numpy() for w in model.weights if len(w.shape) == 2 and w.shape[0] == vocabulary_size]
    assert len(found) == 1, [w.name for w in model.weights]
    return found[0]


def _assert_classifier_started_from_the_pretrained_encoder(output, metrics):
    import keras
    import numpy as np

    from keras_lm.tasks import SavedModelEncoder

    backbone = keras.saving.load_model(str(output / "pretrainer.keras")).backbone
    size = backbone.vocabulary_size
    pretrained = _token_embedding(backbone, size)
    exported = _token_embedding(SavedModelEncoder(str(output / "encoder" / "encoder")), size)
    np.testing.assert_array_equal(exported, pretrained)  # the export carries the trained weights
    fine_tuned = _token_embedding(keras.saving.load_model(str(output / "classifier.keras")).backbone, size)
    # One Adam step moves a weight by at most lr * (1 - beta_1) / sqrt(1 - beta_2) (Kingma & Ba, 2.1):
    # the served classifier, fine-tuned from the pretrained encoder, stays within that of it, while
    # any other start (a random init has std 0.02, another seed's run) is much further away.
    finetuning = metrics["finetuning"]
    served = next(run for run in finetuning["pretrained"]["runs"] if run["seed"] == finetuning["served"]["seed"])
    steps, learning_rate = len(served["train_loss_curve"]), finetuning["pretrained"]["learning_rate"]
    assert 0 < steps <= 10
    bound = 1.2 * steps * learning_rate * (1 - 0.9) / np.sqrt(1 - 0.999)
    drift = np.abs(fine_tuned - pretrained).max()
    assert 0 < drift <= bound, (drift, bound)


def test_training_batches_hold_every_example_once_in_batches_of_similar_length():
    import numpy as np
    import tensorflow as tf

    from keras_lm.recipes.workflows import SORT_WINDOW, training_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=1000)
    texts = [" ".join(["w"] * int(n)) + f" #{i}" for i, n in enumerate(lengths)]
    examples = tf.data.Dataset.from_tensor_slices((texts, np.arange(1000)))
    batches = training_batches(examples, batch_size=8, seed=3)
    assert int(batches.cardinality()) == 125
    epochs = [[(t.numpy(), l.numpy()) for t, l in batches] for _ in range(2)]
    for epoch in epochs:
        labels = np.concatenate([label for _, label in epoch])
        assert sorted(labels.tolist()) == list(range(1000))  # each example exactly once
        spread = np.mean([lengths[label].max() - lengths[label].min() for _, label in epoch])
        assert spread < 10  # vs about 45 for batches of random neighbours (lengths 1-59)
        for text, label in epoch:  # texts stay with their labels
            assert [t.decode().rsplit("#", 1)[1] for t in text] == [str(n) for n in label]
    first, second = ([label.tolist() for _, label in epoch] for epoch in epochs)
    assert first != second  # reshuffled every epoch
    assert SORT_WINDOW * 8 < 1000  # more than one window was sorted


def test_step_history_recovers_each_step_from_the_running_means():
    import keras
    import numpy as np

    from keras_lm.recipes.workflows import StepHistory

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    targets = np.array([[1.0], [3.0], [2.0], [5.0], [0.0], [4.0]], "float32")
    history = StepHistory()
    model.fit(np.zeros((6, 1), "float32"), targets, batch_size=2, epochs=2, shuffle=False,
              callbacks=[history], verbose=0)
    per_batch = [(1 + 9) / 2, (4 + 25) / 2, (0 + 16) / 2]  # the model always predicts 0
    np.testing.assert_allclose(history.losses, per_batch * 2, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_snippet_classifiers():
    """`(new_classifier(seed), (train, validation, test))`: a one-block classifier on a 300-token
    vocabulary and 64/32/32 movie snippets, shared by the tests of the fine-tuning runs."""
    import keras

    import keras_lm
    from keras_lm.recipes.workflows import _labelled

    texts = keras_lm.data.load("movie_snippets", split="train").take(200).map(lambda e: e["text"])
    tokenizer = keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=300)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)

    def new_classifier(seed):
        keras.utils.set_random_seed(seed)
        backbone = keras_lm.applications.Bert(None, vocabulary_size=tokenizer.vocabulary_size(), num_layers=1,
                                              hidden_dim=32, num_heads=2, max_sequence_length=32)
        return keras_lm.tasks.Classifier(backbone, num_classes=2, preprocessor=preprocessor)

    snippets = _labelled(keras_lm.data.load("movie_snippets", split="train"))
    data = (snippets.take(64).cache(), snippets.skip(64).take(32).cache(), snippets.skip(96).take(32).cache())
    return new_classifier, data


@pytest.mark.slow  # long: run with -m slow
def test_seed_runs_restart_from_scratch_each_time(tiny_snippet_classifiers):
    """Seeds 0, 1, 0 on one compiled classifier: the third run repeats the first exactly (weights,
    optimizer state and dropout all restarted), the second differs."""
    import numpy as np

    from keras_lm.recipes.workflows import _finetune_run, _SeedRuns

    new_classifier, data = tiny_snippet_classifiers
    runs = _SeedRuns(new_classifier(0), learning_rate=1e-3, steps=4)
    results = [
        _finetune_run(runs, [v.numpy() for v in new_classifier(seed).variables], "test", seed, data, epochs=2, batch_size=32,
                      learning_rate=1e-3)
        for seed in (0, 1, 0)
    ]
    first, second, third = ([r["train_loss_curve"], r["validation_accuracy"], r["test_loss"]] for r in results)
    assert len(first[0]) == 4
    np.testing.assert_array_equal(np.array(third[0]), np.array(first[0]))
    assert third[1:] == first[1:]
    assert second[0] != first[0]
    assert int(runs.classifier.optimizer.iterations.numpy()) == 4  # counted from 0 again


@pytest.mark.slow  # long: run with -m slow
def test_l2_sp_keeps_the_pretrained_start_closer_and_is_re_anchored_each_run(tiny_snippet_classifiers):
    """An L2-SP anchor on the backbone: after restart the anchors hold that run's starting values, and
    a strong penalty keeps the fine-tuned backbone nearer its start than the same run without it."""
    import numpy as np

    import keras_lm
    from keras_lm.recipes.workflows import _finetune_run, _SeedRuns, check_values, finetune

    new_classifier, data = tiny_snippet_classifiers
    start = [v.numpy() for v in new_classifier(1).variables]

    def drift(alpha):
        classifier = new_classifier(0)
        anchor = keras_lm.training.L2SP(classifier.backbone, alpha=alpha).attach() if alpha else None
        runs = _SeedRuns(classifier, learning_rate=3e-3, steps=8, anchor=anchor)
        _finetune_run(runs, start, "test", 1, data, epochs=4, batch_size=32, learning_rate=3e-3)
        if anchor is not None:  # re-anchored at this run's start (seed 1's), not at the model as built (seed 0's)
            by_id = {id(v): value for v, value in zip(classifier.variables, start)}
            for anchor_value, variable in zip(anchor.anchors, anchor.variables):
                np.testing.assert_array_equal(anchor_value.numpy(), by_id[id(variable)])
        by_id = {id(v): value for v, value in zip(classifier.variables, start)}
        return sum(float(np.sum((v.numpy() - by_id[id(v)]) ** 2)) for v in classifier.backbone.trainable_variables)

    assert drift(10.0) < 0.5 * drift(0.0)
    assert check_values(finetune, {"l2_sp": -1.0}) == ("l2_sp", "must be 0 or more, got -1.0.")


def test_pretraining_documents_group_labelled_sentences_and_mix_corpora():
    import tensorflow_datasets as tfds

    import keras_lm
    from keras_lm.recipes.workflows import SENTENCES_PER_DOCUMENT, documents

    snippets = [e["text"].decode() for e in tfds.as_numpy(keras_lm.data.load("movie_snippets", split="train"))]
    grouped = [d["text"].decode() for d in tfds.as_numpy(documents("movie_snippets"))]
    assert len(grouped) == -(-len(snippets) // SENTENCES_PER_DOCUMENT)
    assert grouped[0].split("\n") == snippets[:SENTENCES_PER_DOCUMENT]
    assert "\n".join(grouped).split("\n") == snippets  # every train sentence once, in order
    mixed = [d["text"].decode() for d in tfds.as_numpy(documents(["movie_snippets", "shakespeare"]))]
    works = [w["text"].decode() for w in tfds.as_numpy(keras_lm.data.load("shakespeare", split="train"))]
    assert mixed == grouped + works
    validation = {e["text"].decode() for e in tfds.as_numpy(keras_lm.data.load("movie_snippets", split="validation"))}
    assert not validation & set("\n".join(mixed).split("\n"))  # pretraining text is train text only


def test_transfer_embeddings_keeps_the_embedding_block_and_draws_the_blocks_like_random_init(tmp_path):
    import keras
    import numpy as np

    import keras_lm
    from keras_lm.recipes.workflows import _update_metrics, _with_new_blocks

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "a the film is good bad dull fine".split()
    preprocessor = keras_lm.tokenizers.BertPreprocessor(
        keras_lm.tokenizers.WordPiece(vocabulary=vocabulary), sequence_length=16)
    pretrained = keras_lm.applications.Bert(None, vocabulary_size=len(vocabulary), num_layers=1, hidden_dim=16,
                                            num_heads=2, max_sequence_length=16, norm_first=True, dropout=0.0)
    for weight in pretrained.weights:  # "pretrained": far from any random initialisation
        weight.assign(np.full(weight.shape, 0.5, "float32"))
    keras_lm.export.encoder(pretrained, preprocessor, str(tmp_path / "encoder"))
    _update_metrics(str(tmp_path), "pretraining",
                    {"backbone_config": keras.saving.serialize_keras_object(pretrained.get_config())})
    classifier = keras_lm.tasks.Classifier.from_saved_model(str(tmp_path / "encoder"), num_classes=2)
    exported = {id(v): v.numpy() for v in classifier.backbone.variables}

    values = _with_new_blocks(classifier.backbone, exported, str(tmp_path), seed=7)

    keras.utils.set_random_seed(7)  # what the random-init start of seed 7 draws
    random_start = {w.path.replace("/", "_"): w.numpy() for w in keras_lm.applications.Bert.from_config(pretrained.get_config()).weights}
    names = [v.name for v in classifier.backbone.variables]
    assert any(n.startswith("transformer_layer_0") for n in names) and "token_embedding_embeddings" in names
    for variable in classifier.backbone.variables:
        if variable.name == "seed_generator_state":
            continue
        if variable.name.startswith(("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm")):
            np.testing.assert_array_equal(values[id(variable)], np.full(variable.shape, 0.5, "float32"))
        else:
            np.testing.assert_array_equal(values[id(variable)], random_start[variable.name])


@pytest.mark.slow  # long: run with -m slow
def test_pretraining_starts_token_embeddings_from_cooccurrences_and_can_keep_them(tmp_path, movie_vocabulary):
    """token_embeddings="cooccurrence": the seen tokens start at the PPMI + SVD vectors of the corpus;
    with train_token_embeddings=False masked LM trains everything but them."""
    import keras
    import numpy as np

    import keras_lm
    from keras_lm.recipes import workflows

    (tmp_path / "vocab.txt").write_text("\n".join(movie_vocabulary) + "\n")
    workflows.pretrain(str(tmp_path), corpus="movie_snippets", size="tiny", objective="mlm", steps=3, warmup=1,
                       sequence_length=32, batch_size=4, evaluations=1, mixed_precision="float32",
                       token_embeddings="cooccurrence", train_token_embeddings=False)
    backbone = keras.saving.load_model(str(tmp_path / "pretrainer.keras")).backbone
    table = backbone.token_embedding.embeddings.numpy()
    tokenizer = workflows._load_tokenizer(str(tmp_path), None)
    rows = [row for batch in workflows._texts(workflows.documents("movie_snippets")).batch(256).map(tokenizer)
            for row in batch.to_list()]
    special = [tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id, tokenizer.unk_id]
    expected = keras_lm.pretraining.cooccurrence_embeddings(
        rows, len(movie_vocabulary), table.shape[1], window=workflows.COOCCURRENCE_WINDOW, exclude=special,
        norm=workflows.COOCCURRENCE_NORM, initial=np.zeros_like(table))
    seen = np.abs(expected).sum(axis=1) > 0
    assert seen.sum() > 0.9 * len(movie_vocabulary)
    np.testing.assert_allclose(table[seen], expected[seen], atol=1e-5)  # unchanged by the 3 MLM steps
    np.testing.assert_allclose(np.linalg.norm(table[seen], axis=1), workflows.COOCCURRENCE_NORM, rtol=1e-4)
    assert 0.005 < table[special].std() < 0.05  # special tokens keep their random start (stddev 0.02)
    pretraining = workflows.read_metrics(str(tmp_path))["pretraining"]
    assert pretraining["token_embeddings"] == "cooccurrence" and pretraining["embedding_corpus"] == ["movie_snippets"]
    assert pretraining["train_token_embeddings"] is False
    with pytest.raises(ValueError, match="`token_embeddings` must be one of random, cooccurrence"):
        workflows.pretrain(str(tmp_path), token_embeddings="word2vec")
