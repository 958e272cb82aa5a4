"""Verified, atomic downloads of the paper's data files, with a mirror and a checksum lock file.

A data file is one row of the data table (``config/data_sources.yaml``)::

    villani/GSE94820_raw.expMatrix_DCnMono.discovery.set.submission.txt.gz:
      url: https://.../GSE94820_raw.expMatrix_DCnMono.discovery.set.submission.txt.gz
      sha256: null            # known checksum, or null: learnt on first download into the lock file
      expected: {cells: 768, genes: 26593, labels: 4}

Its key ``<dataset>/<file>`` is also its path under ``resources/`` and under a mirror. :func:`fetch` writes
the file under a temporary name beside the target, verifies its length and checksum, then renames it, so a
half or corrupt file never appears under the final name. Checksums not known in advance are recorded in a
lock file (``config/data.lock.yaml``) on first download and enforced on every later download.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from davae_study.io import atomic_path

__all__ = [
    "DATA_DEFAULTS", "data_settings", "data_path", "application_data_keys",
    "DownloadError",
    "ChecksumError",
    "DataUnavailableError",
    "NetworkUnavailableError",
    "sha256sum",
    "load_sources",
    "source_url",
    "read_lock",
    "fetch",
    "fetch_entry",
    "missing_files",
    "check_available",
    "unreachable_sources",
    "check_downloads",
]

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A transfer failed (HTTP error, truncated body, unreachable host) after all retries."""


class ChecksumError(DownloadError):
    """A downloaded file's sha256 differs from the data table or the lock file."""


class DataUnavailableError(RuntimeError):
    """Data files are missing and cannot be downloaded (``data.offline: true``, absent from a mirror folder)."""


class NetworkUnavailableError(DataUnavailableError):
    """The files' hosts cannot be reached (no network, no name resolution): they must be fetched by hand."""


def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- data table
def load_sources(sources: str | os.PathLike | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Load and check the data table: ``{"<dataset>/<file>": {"url": ..., "sha256": ..., ...}}``.

    ``sources`` is the YAML path or the already-loaded mapping (with or without a top-level ``files:``).
    """
    if isinstance(sources, (str, os.PathLike)):
        with open(sources) as fh:
            sources = yaml.safe_load(fh) or {}
    table = dict(sources.get("files", sources))
    out: dict[str, dict[str, Any]] = {}
    for key, entry in table.items():
        parts = str(key).split("/")
        if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"data table key {key!r} must be '<dataset>/<file>' (relative, no '..')")
        if not isinstance(entry, Mapping) or not entry.get("url"):
            raise ValueError(f"data table entry {key!r} needs a 'url'")
        sha = entry.get("sha256")
        if sha is not None and (len(str(sha)) != 64 or any(c not in "0123456789abcdef" for c in str(sha))):
            raise ValueError(f"data table entry {key!r}: sha256 must be 64 lower-case hex digits or null")
        out[str(key)] = dict(entry)
    return out


def source_url(key: str, url: str, mirror: str | os.PathLike | None) -> str:
    """Where to fetch ``key`` from: the mirror (``<mirror>/<key>``, folder or base URL) or the original URL."""
    if not mirror:
        return url
    mirror = str(mirror)
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + urllib.parse.quote(key)
    return Path(mirror, key).resolve().as_uri()


# ---------------------------------------------------------------------------------------------- lock file
def read_lock(lock_path: str | os.PathLike | None) -> dict[str, dict[str, Any]]:
    """The lock file's ``files:`` mapping (empty when there is no lock file yet)."""
    if lock_path is None or not Path(lock_path).exists():
        return {}
    with open(lock_path) as fh:
        data = yaml.safe_load(fh) or {}
    return dict(data.get("files", {}))


@contextlib.contextmanager
def _locked(lock_path: Path):
    """Hold an exclusive advisory lock beside the lock file (parallel download jobs update it)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path.with_name(f".{lock_path.name}.flock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _record_lock(lock_path: Path, key: str, record: dict[str, Any]) -> None:
    with _locked(lock_path):
        files = read_lock(lock_path)
        files[key] = record
        header = (
            "# Written by davae_study.data.download on first download: sha256 of each data file as received.\n"
            "# Later downloads must match. Delete an entry (or the file) to re-learn it after an upstream change.\n"
        )
        with atomic_path(lock_path) as tmp:
            with open(tmp, "w") as fh:
                fh.write(header)
                yaml.safe_dump({"files": dict(sorted(files.items()))}, fh, sort_keys=False)


# ------------------------------------------------------------------------------------------------ transfer
def _transfer(url: str, dest: Path, timeout: float) -> int:
    """Copy ``url`` into ``dest``; return the byte count. Raises DownloadError on a short body."""
    req = urllib.request.Request(url, headers={"User-Agent": "davae-study-download/1"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        expected = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
        n = 0
        try:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                n += len(chunk)
        except (ConnectionError, TimeoutError, OSError) as exc:  # includes http.client.IncompleteRead
            raise DownloadError(f"transfer of {url} broke after {n} bytes: {exc}") from exc
    if expected is not None and expected.isdigit() and int(expected) != n:
        raise DownloadError(f"truncated transfer of {url}: got {n} of {expected} bytes")
    return n


@contextlib.contextmanager
def _scratch(folder: Path, name: str):
    """A temporary file beside the target, always removed afterwards (archives we only extract from)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".archive.tmp", dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


#: getaddrinfo errors that say the name does not resolve (as opposed to EAI_AGAIN, a resolver that may answer
#: on a second try): on a machine without network every host name fails this way.
_UNRESOLVABLE = {socket.EAI_NONAME} | ({socket.EAI_NODATA} if hasattr(socket, "EAI_NODATA") else set())


def _unresolvable(exc: BaseException) -> socket.gaierror | None:
    """The name-resolution error behind ``exc`` when its host name does not resolve, else None."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return reason if isinstance(reason, socket.gaierror) and reason.errno in _UNRESOLVABLE else None


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    if _unresolvable(exc) is not None:
        return False
    return isinstance(exc, (DownloadError, urllib.error.URLError, ConnectionError, TimeoutError))


def _extract_member(archive: Path, member: str, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        want = member.lstrip("./")
        info = next((m for m in tar.getmembers() if m.name.lstrip("./") == want), None)
        if info is None:
            raise DownloadError(f"{archive.name} has no member {member!r}; fix 'extract' in the data table")
        src = tar.extractfile(info)
        if src is None:
            raise DownloadError(f"{member!r} in {archive.name} is not a regular file")
        with src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)


def fetch(
    key: str,
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    extract: str | None = None,
    mirror: str | os.PathLike | None = None,
    lock_path: str | os.PathLike | None = None,
    offline: bool = False,
    retries: int = 3,
    timeout: float = 120.0,
    backoff: float = 2.0,
    log=print,
) -> dict[str, Any]:
    """Download one data file atomically and verify it.

    Parameters
    ----------
    key
        ``<dataset>/<file>``: the file's name in the data table, the lock file and the mirror.
    url
        Original URL (used when ``mirror`` is empty).
    dest
        Final path (normally ``resources/<key>``); it appears only after every check passed.
    sha256
        Known checksum of what is downloaded (of the archive when ``extract`` is set), or ``None``: then the
        lock file's value is enforced, or, on first download, the received checksum is recorded there.
    extract
        Member path inside a tar archive: the archive is downloaded to a temporary file, verified, and only
        that member is kept under ``dest`` (e.g. one label file out of a 4 GB archive).
    mirror
        Local folder or base URL holding ``<mirror>/<key>``, used instead of ``url``.
    offline
        Refuse to transfer: raise :class:`DataUnavailableError` naming what to fetch and where to put it.
    retries, timeout, backoff
        Transfer attempts after the first, per-request timeout (s), and the base of the exponential wait.

    Returns
    -------
    The lock record ``{url, sha256, size, date, [member_sha256]}``.
    """
    dest = Path(dest)
    local_mirror = bool(mirror) and "://" not in str(mirror)
    if offline and not local_mirror:
        raise DataUnavailableError(_missing_message([(key, url, dest)], mirror))
    if local_mirror and not Path(mirror, key).exists():
        raise DataUnavailableError(_missing_message([(key, url, Path(mirror, key))], None, why=_WHY_MIRROR))
    src = source_url(key, url, mirror)
    lock = read_lock(lock_path)
    locked = lock.get(key, {}).get("sha256")
    if sha256 and locked and sha256 != locked:
        raise ChecksumError(
            f"{key}: data table sha256 {sha256[:12]}... differs from lock file {locked[:12]}...; fix one of them"
        )
    want = sha256 or locked
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            log(f"[download] {key}: attempt {attempt + 1}/{retries + 1} in {wait:.1f}s after: {last}")
            time.sleep(wait)
        try:
            with atomic_path(dest) as tmp:
                # With ``extract`` the archive goes to a second temporary file and only the member reaches tmp.
                with (_scratch(dest.parent, dest.name) if extract else contextlib.nullcontext(tmp)) as raw:
                    size = _transfer(src, raw, timeout)
                    got = sha256sum(raw)
                    if want and got != want:
                        origin = "data table" if sha256 else f"lock file {lock_path}"
                        raise ChecksumError(
                            f"{key}: sha256 {got} does not match {origin} ({want}); the file at {src} changed or "
                            "is corrupt. Check the source, then fix the checksum or delete the lock entry."
                        )
                    record: dict[str, Any] = {
                        "url": url,
                        "sha256": got,
                        "size": size,
                        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                    if mirror:
                        record["fetched_from"] = src
                    if extract:
                        _extract_member(raw, extract, tmp)
                        record["member"] = extract
                        record["member_sha256"] = sha256sum(tmp)
            break
        except (ChecksumError, DataUnavailableError):
            raise
        except BaseException as exc:  # noqa: BLE001 - filtered by _retryable
            dns = _unresolvable(exc)
            if dns is not None:
                host = (_endpoint(src) or (urllib.parse.urlsplit(src).hostname,))[0]  # the proxy, if one is used
                why = f"{host} cannot be reached (name does not resolve: {dns.strerror}; no network?)"
                raise NetworkUnavailableError(_missing_message([(key, url, dest)], mirror, why=why)) from None
            if not _retryable(exc):
                raise DownloadError(f"{key}: cannot fetch {src}: {exc}") from exc
            last = exc
    else:
        raise DownloadError(f"{key}: giving up on {src} after {retries + 1} attempts; last error: {last}")
    if lock_path is not None and not sha256 and not locked:
        _record_lock(Path(lock_path), key, record)
        log(f"[download] {key}: recorded sha256 {record['sha256']} in {lock_path}")
    log(f"[download] {key}: {record['size']} bytes from {src}, sha256 {record['sha256']}")
    return record


def fetch_entry(
    key: str,
    entry: Mapping[str, Any],
    resources: str | os.PathLike,
    *,
    data_config: Mapping[str, Any] | None = None,
    log=print,
) -> dict[str, Any]:
    """:func:`fetch` one data-table row into ``<resources>/<key>`` with the ``data:`` config's settings.

    Without a mirror, the row's ``fallback_urls`` are tried in order when the URL fails to transfer (a
    checksum mismatch is never retried elsewhere).
    """
    cfg = dict(data_config or {})
    urls = [entry["url"]] + ([] if cfg.get("mirror") else list(entry.get("fallback_urls") or []))
    for i, url in enumerate(urls[:-1]):
        try:
            return _fetch_entry_from(key, entry, url, resources, cfg, log)
        except ChecksumError:
            raise
        except DownloadError as exc:
            log(f"[download] {key}: {url} failed ({exc}); trying {urls[i + 1]}")
    return _fetch_entry_from(key, entry, urls[-1], resources, cfg, log)


def _fetch_entry_from(key, entry, url, resources, cfg, log) -> dict[str, Any]:
    return fetch(
        key,
        url,
        Path(resources, key),
        sha256=entry.get("sha256"),
        extract=entry.get("extract"),
        mirror=cfg.get("mirror"),
        lock_path=cfg.get("lock"),
        offline=bool(cfg.get("offline", False)),
        retries=int(cfg.get("retries", 3)),
        timeout=float(cfg.get("timeout_s", 120)),
        backoff=float(cfg.get("backoff_s", 2.0)),
        log=log,
    )


# ------------------------------------------------------------------------------------------------- offline
def missing_files(
    keys: Iterable[str], sources: Mapping[str, Mapping[str, Any]], resources: str | os.PathLike
) -> list[tuple[str, str, Path]]:
    """``(key, url, path)`` of the data files among ``keys`` not present under ``resources``."""
    out = []
    for key in keys:
        if key not in sources:
            raise ValueError(f"data file {key!r} is not in the data table; add it to config/data_sources.yaml")
        path = Path(resources, key)
        if not path.exists():
            out.append((key, sources[key]["url"], path))
    return out


_WHY_OFFLINE = "downloads are off (data.offline: true)"
_WHY_MIRROR = "they are not in the mirror folder (data.mirror)"


def _missing_message(missing: list[tuple[str, str, Path]], mirror=None, *, why: str = _WHY_OFFLINE) -> str:
    """One message: why the files cannot be downloaded, then ``<path>  <-  <url>`` for every one of them."""
    also = ", or set data.offline: false" if why == _WHY_OFFLINE else ""
    lines = [
        f"{len(missing)} data file(s) missing and {why}. Fetch each URL and put the file at the path shown (or "
        f"set data.mirror to a folder or URL holding <dataset>/<file>{also}; docs/data.md, Air-gapped clusters):"
    ]
    lines += [f"  {path}  <-  {url}" for key, url, path in missing]
    if mirror:
        lines.append(f"  (mirror configured: {mirror})")
    return "\n".join(lines)


def check_available(
    keys: Iterable[str],
    sources: Mapping[str, Mapping[str, Any]],
    resources: str | os.PathLike,
    *,
    offline: bool,
    mirror: str | os.PathLike | None = None,
) -> None:
    """Raise one :class:`DataUnavailableError` listing every missing file when ``offline`` is set.

    With a local-folder mirror, files present in the mirror do not count as missing (they are copied).
    """
    if not offline:
        return
    missing = missing_files(keys, sources, resources)
    if mirror and "://" not in str(mirror):
        missing = [m for m in missing if not Path(mirror, m[0]).exists()]
    if missing:
        raise DataUnavailableError(_missing_message(missing, mirror))


# --------------------------------------------------------------------------------------- network pre-check
_PORTS = {"http": 80, "https": 443, "ftp": 21}


def _endpoint(url: str) -> tuple[str, int] | None:
    """``(host, port)`` a request for ``url`` opens a connection to: the proxy's when urllib would use one
    (``http_proxy`` / ``https_proxy``, minus ``no_proxy``); None for URLs that need no network (``file:``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _PORTS or not parts.hostname:
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or _PORTS.get(p.scheme, 80)
    return parts.hostname, parts.port or _PORTS[parts.scheme]


def _probe(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to ``host:port`` opens within ``timeout`` s, else why not (no host name)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"name does not resolve: {exc.strerror}"
    except OSError as exc:
        return f"port {port} cannot be reached: {exc.strerror or exc or type(exc).__name__}"


def _hosts_and_reasons(down: Mapping[tuple[str, int], str]) -> str:
    """``a, b (reason); c (other reason)``: hosts grouped by why they cannot be reached."""
    by_reason: dict[str, list[str]] = {}
    for (host, _), reason in sorted(down.items()):
        by_reason.setdefault(reason, []).append(host)
    return "; ".join(f"{', '.join(hosts)} ({reason})" for reason, hosts in by_reason.items())


def unreachable_sources(urls: Iterable[str], *, timeout: float = 10.0) -> dict[tuple[str, int], str]:
    """``{(host, port): reason}`` of the hosts behind ``urls`` (or their proxy) that do not accept a connection.

    One connection attempt per host, all at once, nothing sent. Name resolution has no timeout of its own
    (a resolver that never answers can hold it for long), so a host without an answer after ``timeout`` + 5 s
    counts as unreachable; the probing threads are daemons and never delay the exit.
    """
    endpoints = sorted({e for e in map(_endpoint, urls) if e is not None})
    results: dict[tuple[str, int], str | None] = {}

    def run(ep):
        results[ep] = _probe(*ep, timeout)

    threads = [threading.Thread(target=run, args=(ep,), daemon=True) for ep in endpoints]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout + 5
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    down = {}
    for ep in endpoints:
        if ep not in results:
            down[ep] = f"no answer within {timeout + 5:.0f}s"
        elif results[ep] is not None:
            down[ep] = results[ep]
    return down


def check_downloads(
    keys: Iterable[str],
    sources: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    *,
    log=print,
) -> None:
    """Before a run downloads ``keys``: raise one error listing every one of them when none can be fetched.

    * a local-folder mirror: the files absent from it (:class:`DataUnavailableError`);
    * otherwise, when no host behind the files' URLs (the mirror's, or a proxy's) accepts a connection, i.e.
      no network: all of them (:class:`NetworkUnavailableError`), instead of every download job retrying
      and failing on its own. When only some hosts are down, ``log`` names them and the run goes on (those
      downloads fail on their own; the others are fetched).

    ``settings`` is the config's ``data:`` section with defaults (:func:`data_settings`); ``data.offline`` is
    handled earlier, by :func:`check_available`.
    """
    keys = list(dict.fromkeys(keys))
    if not keys or settings.get("offline"):
        return
    mirror = settings.get("mirror")
    todo = [(k, sources[k]["url"], Path(settings["resources"], k)) for k in keys]
    if mirror and "://" not in str(mirror):
        absent = [(k, url, Path(mirror, k)) for k, url, _ in todo if not Path(mirror, k).exists()]
        if absent:
            raise DataUnavailableError(_missing_message(absent, None, why=_WHY_MIRROR))
        return
    src = {k: source_url(k, url, mirror) for k, url, _ in todo}
    down = unreachable_sources(src.values(), timeout=min(float(settings.get("timeout_s", 120)), 10.0))
    if not down:
        return
    reached = {_endpoint(u) for u in src.values()} - set(down) - {None}
    if not reached:
        why = f"no network: {_hosts_and_reasons(down)}"
        raise NetworkUnavailableError(_missing_message(todo, mirror, why=why))
    cut = [(k, url, path) for k, url, path in todo if _endpoint(src[k]) in down]
    log(f"[download] cannot reach {_hosts_and_reasons(down)}: {len(cut)} download(s) from there will fail; "
        "if they do, fetch them by hand:\n" + "\n".join(f"  {path}  <-  {url}" for k, url, path in cut))


#: Defaults of the config's ``data:`` section (docs/data.md).
DATA_DEFAULTS: dict[str, Any] = {
    "sources": "config/data_sources.yaml",
    "resources": "resources",
    "lock": "config/data.lock.yaml",
    "mirror": None,
    "offline": False,
    "retries": 3,
    "job_retries": 1,
    "timeout_s": 120,
    "backoff_s": 2.0,
}


def data_settings(data: Mapping[str, Any] | None, basedir: str | os.PathLike) -> dict[str, Any]:
    """The config's ``data:`` section with defaults filled in.

    The data table and the lock file belong to the repository: relative paths resolve against ``basedir``
    (the workflow's folder), so the workflow can run in another working directory and still find them.
    """
    settings = {**DATA_DEFAULTS, **dict(data or {})}
    for key in ("sources", "lock"):
        if isinstance(settings[key], (str, os.PathLike)) and not Path(settings[key]).is_absolute():
            settings[key] = str(Path(basedir) / settings[key])
    return settings


def data_path(settings: Mapping[str, Any], sources: Mapping[str, Any], key: str) -> str:
    """Local path (``<resources>/<dataset>/<file>``) of a data-table file."""
    if key not in sources:
        raise ValueError(f"data file {key!r} is not in the data table ({settings['sources']}); add it there")
    return (Path(settings["resources"]) / key).as_posix()


def application_data_keys(settings: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """Data-table keys of one application's input files (those under the resources folder)."""
    files = (spec.get("input") or {}).get("files") or {}
    root = Path(settings["resources"])
    return [Path(p).relative_to(root).as_posix() for p in files.values() if Path(p).is_relative_to(root)]
