"""Fetching over real HTTP from a local server (resume, restart, bad content) and safe archive extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from searcher.data import DatasetError
from searcher.data.archives import MARKER, extract_tar
from searcher.data.download import ensure_files
from searcher.data.sources import RemoteFile

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    honour_range: bool
    ranges: list[str | None]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        self.server.ranges.append(asked)
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked and self.server.honour_range else 0
        if start >= len(body) and asked:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.files, httpd.honour_range, httpd.ranges = {"data.bin": PAYLOAD}, True, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def remote(digest: str | None = None, algorithm: str = "md5") -> RemoteFile:
    return RemoteFile("data.bin", "http://example.invalid/data.bin", digest or hashlib.new(algorithm, PAYLOAD).hexdigest(), algorithm)


def mirror(server: Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def test_fetches_verifies_and_renames(server, tmp_path):
    (path,) = ensure_files("test", [remote(algorithm="sha256")], tmp_path, mirror(server), progress=True)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.part").exists()
    ensure_files("test", [remote(algorithm="sha256")], tmp_path, "http://127.0.0.1:9/", progress=False)  # present: nothing fetched
    assert server.ranges == [None]


def test_resumes_an_interrupted_download_with_a_range_request(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:300_000])
    (path,) = ensure_files("test", [remote()], tmp_path, mirror(server), progress=False)
    assert server.ranges == ["bytes=300000-"]
    assert path.read_bytes() == PAYLOAD


def test_restarts_when_the_server_ignores_the_range(server, tmp_path):
    server.honour_range = False
    (tmp_path / "data.bin.part").write_bytes(b"garbage from another file" * 1000)
    (path,) = ensure_files("test", [remote()], tmp_path, mirror(server), progress=False)
    assert path.read_bytes() == PAYLOAD


def test_a_complete_part_file_is_verified_not_refetched(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    (path,) = ensure_files("test", [remote()], tmp_path, mirror(server), progress=False)  # server answers 416
    assert path.read_bytes() == PAYLOAD


def test_bad_download_is_discarded_and_never_gets_the_final_name(server, tmp_path):
    with pytest.raises(DatasetError, match="failed its MD5 checksum .* discarded"):
        ensure_files("test", [remote(digest="0" * 32)], tmp_path, mirror(server), progress=False)
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()


def test_http_error_names_file_url_and_path(server, tmp_path):
    missing = RemoteFile("nope.bin", "http://example.invalid/nope.bin", "0" * 32)
    with pytest.raises(DatasetError) as caught:
        ensure_files("test", [missing], tmp_path, mirror(server), progress=False)
    assert "404" in str(caught.value) and f"{mirror(server)}nope.bin" in str(caught.value) and str(tmp_path / "nope.bin") in str(caught.value)


def tar_with(tmp_path: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> Path:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        good = tarfile.TarInfo("top/ok.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        if member.isfile():
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
        else:
            tar.addfile(member)
    return archive


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../escaped.txt"),
        tarfile.TarInfo("top/../../escaped.txt"),
        tarfile.TarInfo("/tmp/searcher-absolute-escape.txt"),
        link("top/link", "../../escaped.txt"),
        link("top/hard", "/etc/passwd", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "hardlink-absolute"],
)
def test_unsafe_members_are_refused_and_nothing_is_extracted(tmp_path, member):
    archive = tar_with(tmp_path, member)
    target = tmp_path / "out" / "evil"
    with pytest.raises(DatasetError, match="nothing was extracted"):
        extract_tar(archive, target, "digest")
    assert list((tmp_path / "out").iterdir()) == []  # not even the temporary folder is left
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "escaped.txt").exists()
    assert not Path("/tmp/searcher-absolute-escape.txt").exists()


def test_safe_archive_is_extracted_atomically_with_a_marker(tmp_path):
    archive = tar_with(tmp_path, tarfile.TarInfo("top/b.txt"), b"bee")
    target = extract_tar(archive, tmp_path / "out", "abc")
    assert (target / "top" / "ok.txt").read_bytes() == b"ok" and (target / "top" / "b.txt").read_bytes() == b"bee"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "out"]  # no temporary folder left
    assert (target / MARKER).read_text() == "abc"


def test_a_truncated_archive_is_an_error_and_leaves_nothing(tmp_path):
    archive = tar_with(tmp_path, tarfile.TarInfo("top/b.txt"), bytes(range(256)) * 400)
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DatasetError, match="could not be extracted"):
        extract_tar(archive, tmp_path / "out" / "x", "abc")
    assert list((tmp_path / "out").iterdir()) == []
