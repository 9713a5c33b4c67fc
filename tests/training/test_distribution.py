"""Strategies: names, mirrored over 2 logical CPUs, two real workers on 127.0.0.1, a dead peer."""
import importlib.util
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import keras_lm
from keras_lm.training import jit_compile_for, strategy

HERE = os.path.dirname(os.path.abspath(__file__))
JOB = os.path.join(HERE, "multi_worker_job.py")
WORKER_SECONDS = 150  # hard bound on every worker process (`timeout -k 5`)


def load_job():
    spec = importlib.util.spec_from_file_location("multi_worker_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(tmp_path, extra_args=((), ())):
    ports = ",".join(map(str, free_ports(2)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.path.dirname(os.path.dirname(HERE)))
    env.pop("TF_CONFIG", None)
    processes = []
    for index in range(2):
        command = [
            "timeout", "-k", "5", str(WORKER_SECONDS), sys.executable, JOB,
            str(tmp_path / f"worker{index}.npz"), "--index", str(index), "--ports", ports,
            *extra_args[index],
        ]
        processes.append(
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    return processes


def finish(processes):
    results = []
    for process in processes:
        out, err = process.communicate(timeout=WORKER_SECONDS + 30)
        results.append((process.returncode, out, err))
    return results


def test_unknown_strategy_name_lists_the_names():
    with pytest.raises(ValueError, match="auto, one_device, mirrored, multi_worker, tpu"):
        strategy("horovod")


def test_one_device_and_auto_on_this_machine():
    one = strategy("one_device")
    assert one.num_replicas_in_sync == 1
    assert strategy("auto").num_replicas_in_sync == 1  # no TF_CONFIG, no GPU here
    assert jit_compile_for(one) is False  # CPU: XLA is slower (measured) and never crashes


def test_multi_worker_without_tf_config_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        strategy("multi_worker")


def test_tpu_without_a_tpu_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(RuntimeError, match="No TPU found"):
        strategy("tpu")


MIRRORED = textwrap.dedent(
    """
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, keras_lm
    mirrored = keras_lm.training.strategy("mirrored")
    single = keras_lm.training.strategy("one_device")
    sys.path.insert(0, sys.argv[1])
    import multi_worker_job as job
    results = {}
    for name, distribution in (("mirrored", mirrored), ("single", single)):
        weights, history = job.train(distribution)
        results[name] = [w.tolist() for w in weights]
    print("REPLICAS", mirrored.num_replicas_in_sync, "JIT", keras_lm.training.jit_compile_for(mirrored))
    difference = max(float(np.max(np.abs(np.array(a) - np.array(b))))
                     for a, b in zip(results["mirrored"], results["single"]))
    print("DIFF", difference)
    with mirrored.scope():
        backbone = keras_lm.applications.Bert("tiny", vocabulary_size=40, max_sequence_length=8)
        pretrainer = keras_lm.pretraining.BertPretrainer(backbone, max_predictions=2)
        pretrainer.compile(optimizer=keras_lm.training.adamw(1e-3),
                           jit_compile=keras_lm.training.jit_compile_for(mirrored))
    ids = np.random.RandomState(0).randint(5, 40, (8, 8)).astype("int32")
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids),
         "mask_positions": np.tile(np.array([[1, 4]], "int32"), (8, 1))}
    y = {"mlm": ids[:, [1, 4]], "nsp": ids[:, 0] % 2}
    history = pretrainer.fit(tf.data.Dataset.from_tensors((x, y)).repeat(3), verbose=0)
    print("PRETRAINER", int(np.isfinite(history.history["loss"]).all()))
    """
)


@pytest.mark.slow  # long: run with -m slow
def test_mirrored_over_two_cpu_devices_equals_one_device():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run(
        ["timeout", "-k", "5", "240", sys.executable, "-c", MIRRORED, HERE],
        capture_output=True, text=True, env=env,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in process.stdout.splitlines() if line[:4] in ("REPL", "DIFF", "PRET"))
    assert lines["REPLICAS"] == "2 JIT False"
    assert float(lines["DIFF"]) < 1e-5
    assert lines["PRETRAINER"] == "1"  # BertPretrainer builds and fits under the mirrored scope


@pytest.mark.slow  # long: run with -m slow
def test_two_workers_finish_with_identical_weights_equal_to_single_device(tmp_path):
    processes = start_workers(tmp_path)
    reference, _ = load_job().train()  # single device, same global batch, while the workers run
    results = finish(processes)
    for returncode, out, err in results:
        assert returncode == 0 and "DONE" in out, err[-3000:]
    workers = [np.load(tmp_path / f"worker{index}.npz") for index in range(2)]
    names = [name for name in workers[0].files if name.startswith("arr_")]
    assert len(names) == len(reference)
    for index, name in enumerate(names):
        np.testing.assert_array_equal(workers[0][name], workers[1][name])
        np.testing.assert_allclose(workers[0][name], reference[index], atol=1e-5, rtol=1e-5)
    assert workers[0]["loss"][-1] < workers[0]["loss"][0]  # it did train


@pytest.mark.slow  # long: run with -m slow
def test_worker_whose_peer_dies_exits_with_one_clear_error(tmp_path):
    start = time.monotonic()
    processes = start_workers(tmp_path, extra_args=((), ("--die-after-step", "2")))
    (survivor_code, out, err), (dead_code, _, _) = finish(processes)
    elapsed = time.monotonic() - start
    assert dead_code == 3
    assert survivor_code not in (0, 124, 137), "the survivor should fail by itself, not by timeout"
    assert "WorkerLostError" in err and "another worker died or stopped answering" in err, err[-3000:]
    assert err.count("Traceback") == 1
    assert elapsed < WORKER_SECONDS


def test_a_device_this_machine_lacks_is_one_clear_error_naming_the_devices_here():
    with pytest.raises(ValueError) as raised:
        strategy("one_device", devices=["/gpu:7"])
    message = str(raised.value)
    assert message.startswith("strategy('one_device'): device '/gpu:7' does not exist on this machine; its devices are CPU:0")
    assert "\n" not in message
    for name, devices, missing in (
        ("mirrored", ["/cpu:0", "/gpu:1"], "'/gpu:1'"),
        ("mirrored", ["/cpu:0", "/cpu:3"], "'/cpu:3'"),
        ("one_device", ["/job:localhost/replica:0/task:0/device:TPU:0"], "TPU:0'"),
        ("auto", ["/gpu:0"], "'/gpu:0'"),
        ("one_device", ["gpu7"], "'gpu7'"),
        ("one_device", [""], "''"),
    ):
        with pytest.raises(ValueError, match=f"strategy\\({name!r}\\): device .*{missing} does not exist on this machine; its devices are CPU:0"):
            strategy(name, devices=devices)


def test_devices_must_be_a_nonempty_list_of_names_for_one_device_or_mirrored():
    with pytest.raises(TypeError, match=r"`devices` must be a list of device names such as \['/gpu:0'\], got '/cpu:0'"):
        strategy("one_device", devices="/cpu:0")
    with pytest.raises(ValueError, match="`devices` is an empty list"):
        strategy("mirrored", devices=[])
    with pytest.raises(ValueError, match="pass devices only to 'one_device' or 'mirrored'"):
        strategy("tpu", devices=["/cpu:0"])


def test_devices_this_machine_has_are_used():
    one = strategy("one_device", devices=["/cpu:0"])
    assert one.extended.worker_devices == ("/job:localhost/replica:0/task:0/device:CPU:0",)
    full = strategy("one_device", devices=["/job:localhost/replica:0/task:0/device:CPU:0"])
    assert full.num_replicas_in_sync == 1
    assert strategy("mirrored", devices=["/CPU:0"]).num_replicas_in_sync == 1


def test_devices_are_checked_against_our_device_query(monkeypatch):
    """With a (played) GPU machine, '/gpu:1' exists and '/gpu:2' does not."""
    from keras_lm.training import devices as local

    names = ["/job:localhost/replica:0/task:0/device:CPU:0",
             "/job:localhost/replica:0/task:0/device:GPU:0",
             "/job:localhost/replica:0/task:0/device:GPU:1"]
    monkeypatch.setattr(local, "logical_device_names",
                        lambda kind=None: [n for n in names if kind is None or f"device:{kind}:" in n])
    from keras_lm.training.distribution import _check_devices, _default_device, _local_devices

    assert _check_devices("mirrored", ["/gpu:0", "/gpu:1"]) == ["/gpu:0", "/gpu:1"]
    with pytest.raises(ValueError, match=r"device '/gpu:2' does not exist on this machine; its devices are CPU:0, GPU:0, GPU:1\."):
        _check_devices("mirrored", ["/gpu:0", "/gpu:2"])
    assert _default_device() == names[1]
    assert _local_devices() == names[1:]
