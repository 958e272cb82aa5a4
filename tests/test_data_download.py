"""Downloads against a loopback HTTP server (127.0.0.1 only) serving real-format fixtures.

Covers: plain download + lock file, lock enforced afterwards, checksum mismatch, truncated transfer, server
error then retry, non-retryable 404, mirror folder, mirror base URL, archive member extraction, offline error,
the Snakemake download rule end to end, and a machine without network: hosts on the reserved `.invalid`
TLD (RFC 2606), with name resolution blocked for every name but loopback, so no test query or connection
leaves this machine.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

from davae_study.data.download import (ChecksumError, DataUnavailableError, DownloadError, NetworkUnavailableError,
                                       check_available, check_downloads, data_settings, fetch, fetch_entry,
                                       load_sources, read_lock)
from test_data_formats import small_cellbench, write_10x_h5, write_10x_mtx_targz, write_geo_txt_gz, write_gtf

REPO = Path(__file__).resolve().parents[1]


class _Server:
    """Serve files from ``root``; ``plan[path]`` is a list of per-request behaviours: 'ok', '500', 'truncate'."""

    def __init__(self, root: Path):
        self.root, self.plan, self.hits = root, {}, {}
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                srv.hits[path] = srv.hits.get(path, 0) + 1
                todo = srv.plan.get(path, [])
                action = todo.pop(0) if todo else "ok"
                f = srv.root / path
                if action == "500":
                    self.send_error(500, "boom")
                    return
                if not f.is_file():
                    self.send_error(404)
                    return
                body = f.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if action == "truncate" else body)
                if action == "truncate":
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    """Real-format files under <root>/<dataset>/<file>, served on 127.0.0.1."""
    root = tmp_path / "www"
    a = small_cellbench(100)[:60]
    (root / "tenx").mkdir(parents=True)
    (root / "geo").mkdir()
    (root / "ref").mkdir()
    files = {
        "tenx/m_filtered_gene_bc_matrices.tar.gz": write_10x_mtx_targz(root / "tenx/m_filtered_gene_bc_matrices.tar.gz", a),
        "tenx/m_filtered_feature_bc_matrix.h5": write_10x_h5(root / "tenx/m_filtered_feature_bc_matrix.h5", a),
        "geo/GSE1_matrix.txt.gz": write_geo_txt_gz(root / "geo/GSE1_matrix.txt.gz", a, [f"C_P7_{i}" for i in range(60)]),
        "ref/genes.gtf.gz": write_gtf(root / "ref/genes.gtf.gz", [("1", 100, 900, "+", "A"), ("1", 50, 60, "-", "B")]),
    }
    labels = b"293t\njurkat\n" * 5
    with tarfile.open(root / "ref/data.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("data/cell_labels/293t_jurkat_cluster.txt")
        info.size = len(labels)
        tar.addfile(info, io.BytesIO(labels))
    srv = _Server(root)
    yield srv, root, files, labels
    srv.close()


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".")]


KW = dict(backoff=0.01, timeout=10, log=lambda m: None)


def test_download_records_lock_then_enforces_it(served, tmp_path):
    srv, root, files, _ = served
    key = "tenx/m_filtered_feature_bc_matrix.h5"
    dest, lock = tmp_path / "res" / key, tmp_path / "data.lock.yaml"
    rec = fetch(key, f"{srv.url}/{key}", dest, lock_path=lock, **KW)
    assert dest.read_bytes() == files[key].read_bytes() and rec["sha256"] == sha(files[key])
    assert read_lock(lock)[key]["sha256"] == sha(files[key]) and read_lock(lock)[key]["url"].startswith(srv.url)
    # upstream file changes: the lock catches it and the good local file is untouched
    original = dest.read_bytes()
    files[key].write_bytes(b"changed upstream")
    with pytest.raises(ChecksumError, match="lock file"):
        fetch(key, f"{srv.url}/{key}", dest, lock_path=lock, **KW)
    assert dest.read_bytes() == original and no_temp_files(dest.parent)


def test_checksum_mismatch_leaves_no_file(served, tmp_path):
    srv, root, files, _ = served
    key = "geo/GSE1_matrix.txt.gz"
    dest = tmp_path / "res" / key
    with pytest.raises(ChecksumError, match="does not match data table"):
        fetch(key, f"{srv.url}/{key}", dest, sha256="0" * 64, **KW)
    assert not dest.exists() and no_temp_files(dest.parent)
    assert srv.hits[key] == 1  # a wrong checksum is not retried
    fetch(key, f"{srv.url}/{key}", dest, sha256=sha(files[key]), **KW)
    assert dest.exists()


def test_truncated_transfer_is_retried_then_fails_cleanly(served, tmp_path):
    srv, root, files, _ = served
    key = "tenx/m_filtered_gene_bc_matrices.tar.gz"
    dest = tmp_path / "res" / key
    srv.plan[key] = ["truncate"] * 3
    with pytest.raises(DownloadError, match="giving up"):
        fetch(key, f"{srv.url}/{key}", dest, retries=2, **KW)
    assert not dest.exists() and no_temp_files(dest.parent) and srv.hits[key] == 3
    srv.plan[key] = ["truncate"]
    fetch(key, f"{srv.url}/{key}", dest, retries=2, **KW)
    assert dest.read_bytes() == files[key].read_bytes() and srv.hits[key] == 5


def test_server_error_then_retry_and_404_not_retried(served, tmp_path):
    srv, root, files, _ = served
    key = "ref/genes.gtf.gz"
    srv.plan[key] = ["500", "500"]
    fetch(key, f"{srv.url}/{key}", tmp_path / key, retries=3, **KW)
    assert srv.hits[key] == 3 and (tmp_path / key).read_bytes() == files[key].read_bytes()
    with pytest.raises(DownloadError, match="404"):
        fetch("ref/nothing.gtf", f"{srv.url}/ref/nothing.gtf", tmp_path / "nothing", retries=3, **KW)
    assert srv.hits["ref/nothing.gtf"] == 1


def test_mirror_folder_and_mirror_url(served, tmp_path):
    srv, root, files, _ = served
    key = "geo/GSE1_matrix.txt.gz"
    dead = "http://127.0.0.1:9/unreachable"  # original URL never contacted when a mirror is set
    rec = fetch(key, dead, tmp_path / "a" / key, mirror=root, lock_path=tmp_path / "l.yaml", offline=True, **KW)
    assert (tmp_path / "a" / key).read_bytes() == files[key].read_bytes() and rec["url"] == dead
    assert key not in srv.hits  # a local folder needs no network, even offline
    fetch(key, dead, tmp_path / "b" / key, mirror=srv.url + "/", **KW)
    assert srv.hits[key] == 1 and (tmp_path / "b" / key).exists()
    with pytest.raises(DataUnavailableError, match="missing"):
        fetch("geo/absent.txt", dead, tmp_path / "c", mirror=root, **KW)


def test_archive_member_extraction(served, tmp_path):
    srv, root, files, labels = served
    key = "scanorama/293t_jurkat_cluster.txt"
    dest = tmp_path / "res" / key
    rec = fetch(key, f"{srv.url}/ref/data.tar.gz", dest, extract="data/cell_labels/293t_jurkat_cluster.txt",
                lock_path=tmp_path / "l.yaml", **KW)
    assert dest.read_bytes() == labels and rec["member_sha256"] == hashlib.sha256(labels).hexdigest()
    assert rec["sha256"] == sha(root / "ref/data.tar.gz")  # the lock pins the archive itself
    assert sorted(p.name for p in dest.parent.iterdir()) == ["293t_jurkat_cluster.txt"]
    with pytest.raises(DownloadError, match="no member"):
        fetch(key, f"{srv.url}/ref/data.tar.gz", tmp_path / "x", extract="data/other.txt", **KW)


def test_offline_error_lists_every_missing_file(tmp_path):
    sources = load_sources({"files": {"a/x.h5": {"url": "https://example.org/x.h5"},
                                      "b/y.txt.gz": {"url": "https://example.org/y.txt.gz"},
                                      "c/z.gtf": {"url": "https://example.org/z.gtf"}}})
    (tmp_path / "res" / "c").mkdir(parents=True)
    (tmp_path / "res" / "c" / "z.gtf").write_text("present")
    with pytest.raises(DataUnavailableError) as err:
        check_available(list(sources), sources, tmp_path / "res", offline=True)
    msg = str(err.value)
    assert "2 data file(s) missing" in msg and "x.h5  <-  https://example.org/x.h5" in msg and "y.txt.gz" in msg
    assert "z.gtf" not in msg
    check_available(list(sources), sources, tmp_path / "res", offline=False)  # online: nothing to say
    with pytest.raises(DataUnavailableError, match="data.offline"):
        fetch("a/x.h5", "https://example.org/x.h5", tmp_path / "x", offline=True, **KW)


def test_data_table_validation():
    with pytest.raises(ValueError, match="'<dataset>/<file>'"):
        load_sources({"x.h5": {"url": "u"}})
    with pytest.raises(ValueError, match="needs a 'url'"):
        load_sources({"a/x.h5": {}})
    with pytest.raises(ValueError, match="sha256"):
        load_sources({"a/x.h5": {"url": "u", "sha256": "abc"}})
    table = load_sources(REPO / "config" / "data_sources.yaml")
    assert len(table) == 16 and all(k.count("/") == 1 for k in table)


@pytest.mark.slow
def test_snakemake_download_rule_end_to_end(served, tmp_path):
    """The rule family downloads via the loopback server, honours ensure(sha256=...) and writes the lock."""
    srv, root, files, _ = served
    work = tmp_path / "wf"
    work.mkdir()
    table = {"files": {
        "tenx/m.h5": {"url": f"{srv.url}/tenx/m_filtered_feature_bc_matrix.h5",
                      "sha256": sha(files["tenx/m_filtered_feature_bc_matrix.h5"])},
        "geo/GSE1_matrix.txt.gz": {"url": f"{srv.url}/geo/GSE1_matrix.txt.gz", "sha256": None},
    }}
    (work / "sources.yaml").write_text(yaml.safe_dump(table))
    (work / "Snakefile").write_text(f'include: "{REPO}/workflow/rules/download.smk"\n')
    cfg = {"data": {"sources": "sources.yaml", "lock": "data.lock.yaml", "backoff_s": 0.01}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "workflow"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "snakemake", "download_data", "--cores", "1", "--configfile", "config.yaml"]
    res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (work / "resources/tenx/m.h5").read_bytes() == files["tenx/m_filtered_feature_bc_matrix.h5"].read_bytes()
    assert read_lock(work / "data.lock.yaml")["geo/GSE1_matrix.txt.gz"]["sha256"] == sha(files["geo/GSE1_matrix.txt.gz"])
    assert "tenx/m.h5" not in read_lock(work / "data.lock.yaml")  # known checksums are not re-learnt
    assert (work / "logs/download/geo/GSE1_matrix.txt.gz.log").read_text().strip()
    # offline with an application whose file is missing: one parse-time error naming the file and its URL
    table["files"]["geo/GSE2.txt.gz"] = {"url": f"{srv.url}/geo/GSE2.txt.gz"}
    (work / "sources.yaml").write_text(yaml.safe_dump(table))
    cfg["data"]["offline"] = True
    cfg["applications"] = {"dc": {"input": {"reader": "villani_dc", "files": {
        "matrix": "resources/geo/GSE2.txt.gz", "done": "resources/geo/GSE1_matrix.txt.gz"}}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run(cmd + ["-n"], cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode != 0
    out = res.stdout + res.stderr  # snakemake 9 prints parse errors on stdout
    assert "1 data file(s) missing" in out and f"resources/geo/GSE2.txt.gz  <-  {srv.url}/geo/GSE2.txt.gz" in out


# ------------------------------------------------------------------------------------------- no network
# A machine without network, simulated without sending anything: name resolution answers for loopback only
# (the loopback server keeps working) and fails for every other name, as getaddrinfo does offline. The same
# guard runs inside Snakemake's processes through NO_NETWORK's sitecustomize.py.
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
NO_NETWORK = """
import socket
_getaddrinfo = socket.getaddrinfo
def _loopback_only(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name in {loopback!r}:
        return _getaddrinfo(host, *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
socket.getaddrinfo = _loopback_only
""".format(loopback=_LOOPBACK)


@pytest.fixture
def no_network(monkeypatch):
    """In this process: every name but loopback fails to resolve; returns the names asked for."""
    asked, real = [], socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name in _LOOPBACK:
            return real(host, *args, **kwargs)
        asked.append(name)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    return asked


def test_unresolvable_host_fails_at_once_with_what_to_fetch(no_network, tmp_path):
    """No retry (one resolution, no back-off) and the message says which file to put where, from where."""
    messages = []
    url = "https://data.davae-study.invalid/geo/x.txt.gz"
    with pytest.raises(NetworkUnavailableError) as err:
        fetch("geo/x.txt.gz", url, tmp_path / "res/geo/x.txt.gz", retries=3, backoff=30, log=messages.append)
    msg = str(err.value)
    assert no_network == ["data.davae-study.invalid"] and not messages  # one attempt, no waiting
    assert "1 data file(s) missing" in msg and "data.davae-study.invalid cannot be reached" in msg
    assert f"{tmp_path / 'res/geo/x.txt.gz'}  <-  {url}" in msg
    assert not (tmp_path / "res/geo").exists() or no_temp_files(tmp_path / "res/geo")


def test_check_downloads_lists_every_file_once_when_no_host_can_be_reached(no_network, served, tmp_path):
    srv, root, files, _ = served
    table = load_sources({"files": {
        "a/x.h5": {"url": "https://one.davae-study.invalid/x.h5"},
        "b/y.txt.gz": {"url": "https://two.davae-study.invalid/y.txt.gz"},
        "b/z.gtf": {"url": "http://two.davae-study.invalid:8080/z.gtf"},
        "geo/GSE1_matrix.txt.gz": {"url": f"{srv.url}/geo/GSE1_matrix.txt.gz"},
    }})
    settings = data_settings({"resources": str(tmp_path / "res")}, tmp_path)
    offline = ["a/x.h5", "b/y.txt.gz", "b/z.gtf"]
    with pytest.raises(NetworkUnavailableError) as err:
        check_downloads(offline, table, settings, log=pytest.fail)
    msg = str(err.value)
    assert msg.startswith("3 data file(s) missing and no network: one.davae-study.invalid, two.davae-study.invalid")
    for key in offline:
        assert f"{tmp_path / 'res' / key}  <-  {table[key]['url']}" in msg
    assert "Traceback" not in msg and len(msg.splitlines()) == 4
    # some host reachable (the loopback server): the run goes on, the unreachable files are named
    said = []
    check_downloads([*offline, "geo/GSE1_matrix.txt.gz"], table, settings, log=said.append)
    assert len(said) == 1 and "3 download(s)" in said[0] and "GSE1_matrix" not in said[0]
    # a mirror URL on the loopback server: only it is probed, and it answers
    check_downloads(offline, table, {**settings, "mirror": srv.url}, log=pytest.fail)
    # a mirror folder: no network needed; the files absent from it are listed, once
    with pytest.raises(DataUnavailableError, match=r"2 data file\(s\) missing and they are not in the mirror") as err:
        check_downloads(["geo/GSE1_matrix.txt.gz", "a/x.h5", "b/y.txt.gz"], table, {**settings, "mirror": root})
    assert "GSE1_matrix" not in str(err.value)
    # nothing to download, or downloads off (handled at parse time): nothing probed
    before = list(no_network)
    check_downloads([], table, settings)
    check_downloads(offline, table, {**settings, "offline": True})
    assert no_network == before


def test_proxy_is_what_gets_probed(monkeypatch):
    from davae_study.data.download import _endpoint

    monkeypatch.setenv("https_proxy", "http://proxy.davae-study.invalid:3128")
    monkeypatch.setenv("no_proxy", "local.davae-study.invalid")
    assert _endpoint("https://data.davae-study.invalid/x") == ("proxy.davae-study.invalid", 3128)
    assert _endpoint("https://local.davae-study.invalid/x") == ("local.davae-study.invalid", 443)
    assert _endpoint("http://data.davae-study.invalid:81/x") == ("data.davae-study.invalid", 81)
    assert _endpoint("file:///tmp/x") is None


@pytest.mark.slow
def test_paper_config_without_network_ends_with_one_listing(tmp_path):
    """`snakemake all --cores 2` with the paper's config, default `offline: false`, no network: one message
    listing every file to fetch with its URL and target path, no download job started, no traceback."""
    shim = tmp_path / "no_network"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_NETWORK)
    table = load_sources(REPO / "config" / "data_sources.yaml")
    for entry in table.values():  # the real table, every host moved under .invalid
        host = entry["url"].split("/")[2]
        entry["url"] = entry["url"].replace(host, host.replace(".", "-") + ".invalid", 1)
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"files": table}))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.setdefault("data", {}).update(sources=str(tmp_path / "sources.yaml"), lock=str(tmp_path / "lock.yaml"))
    assert not config["data"].get("offline") and not config["data"].get("mirror")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    work = tmp_path / "wd"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "snakemake", "all", "--cores", "2", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(work), "--configfile", str(tmp_path / "config.yaml")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert out.count("data file(s) missing and no network") == 1, out[-5000:]
    app_files = {p for spec in config["applications"].values() for p in spec["input"]["files"].values()}
    listed = [line.strip() for line in out.splitlines() if "  <-  " in line]
    assert len(listed) == len(app_files) > 0
    for path in app_files:
        key = Path(path).relative_to("resources").as_posix()
        assert f"{path}  <-  {table[key]['url']}" in listed
    assert "Traceback" not in out and "urlopen error" not in out
    assert not (work / "logs" / "download").exists()  # stopped before any download job
    assert not list((work / ".snakemake" / "locks").glob("*"))  # and left no lock behind


def test_fallback_url_is_tried_when_the_url_fails(served, tmp_path):
    """A row's fallback_urls (e.g. GEO's download form for Villani's file) are tried in order when the URL fails;
    with a mirror they are not used, and a checksum mismatch is never retried elsewhere."""
    srv, root, files, _ = served
    key = "geo/GSE1_matrix.txt.gz"
    entry = {"url": f"{srv.url}/missing/{key}", "fallback_urls": [f"{srv.url}/{key}"], "sha256": None}
    logs = []
    rec = fetch_entry(key, entry, tmp_path / "res", data_config={"lock": str(tmp_path / "lock.yaml"), "retries": 0},
                      log=logs.append)
    assert (tmp_path / "res" / key).read_bytes() == files[key].read_bytes() and rec["url"] == entry["fallback_urls"][0]
    assert any("trying" in m for m in logs)
    with pytest.raises(ChecksumError):
        fetch_entry(key, {**entry, "url": f"{srv.url}/{key}", "sha256": "0" * 64}, tmp_path / "res2",
                    data_config={"retries": 0}, log=logs.append)
    assert srv.hits[key] == 2  # the fallback was not tried after the mismatch
    with pytest.raises(DownloadError):
        fetch_entry(key, entry, tmp_path / "res3", data_config={"mirror": f"{srv.url}/missing", "retries": 0},
                    log=logs.append)
