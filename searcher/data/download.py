"""Fetching published files into data_dir: resumable, verified, never half-written under the final name.

A file is downloaded to NAME.part (resumed with an HTTP Range request when a
.part is left from an interrupted run, restarted when the server ignores the
range), checked against its published digest, and only then renamed to NAME.
Files already present are verified before use and never fetched again. One
process at a time fetches into a folder (a lock file), so parallel trials of a
multirun do not write the same .part or extract over each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from searcher.data.errors import DatasetError
from searcher.data.sources import RemoteFile

TIMEOUT_S = 30  # per connect / read; a stalled server fails instead of hanging a search
CHUNK_BYTES = 1 << 20
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, TimeoutError)


def ensure_files(dataset: str, files: Sequence[RemoteFile], folder: Path, mirror: str | None = None, progress: bool = True) -> list[Path]:
    """Paths of `files` under `folder`, each verified against its digest; missing ones are fetched first.

    Call it holding `folder_lock(folder)` when other processes may fetch into the same folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for remote in files:
        if (folder / remote.name).exists():
            check_present(remote, folder / remote.name, mirror)
    missing = [remote for remote in files if not (folder / remote.name).exists()]
    for index, remote in enumerate(missing):
        path = folder / remote.name
        part = path.with_name(path.name + ".part")
        try:
            fetch(remote.url_from(mirror), part, progress)
        except NETWORK_ERRORS as error:
            raise DatasetError(unreachable_message(dataset, missing[index:], folder, mirror, error, part)) from None
        except OSError as error:  # not the network: the disk (full, read-only)
            raise DatasetError(f"Could not write {part} ({error}); free some space or set data_dir (SEARCHER_DATA_DIR) to a writable folder.") from None
        actual = file_digest(part, remote.algorithm)
        if actual != remote.digest:
            part.unlink()
            raise DatasetError(
                f"The download of {remote.name} from {remote.url_from(mirror)} failed its {remote.algorithm.upper()} checksum "
                f"(expected {remote.digest}, got {actual}) and was discarded; re-run to fetch it again, or place a good copy at {path}."
            )
        os.replace(part, path)  # atomic: NAME exists only once it is complete and verified
    return [folder / remote.name for remote in files]


def check_present(remote: RemoteFile, path: Path, mirror: str | None) -> None:
    actual = file_digest(path, remote.algorithm)
    if actual != remote.digest:
        raise DatasetError(
            f"{path} failed its {remote.algorithm.upper()} checksum (expected {remote.digest}, got {actual}), so it was not used; "
            f"delete it and re-run to fetch it again from {remote.url_from(mirror)}."
        )


def unreachable_message(dataset: str, missing: Sequence[RemoteFile], folder: Path, mirror: str | None, error: BaseException, part: Path) -> str:
    reason = error if isinstance(error, urllib.error.HTTPError) else getattr(error, "reason", None) or error
    kept = f" (the partial download {part} is kept and resumes on the next run)" if part.exists() and part.stat().st_size else ""
    fix = "or set dataset.mirror (or SEARCHER_DATASET_MIRROR) to a server that has"
    if len(missing) == 1:
        (remote,) = missing
        return (
            f"{dataset} needs {remote.name}, which is not in {folder} and could not be downloaded from {remote.url_from(mirror)} "
            f"({reason}){kept}; download it yourself and place it at {folder / remote.name}, {fix} it."
        )
    places = "; ".join(f"{remote.url_from(mirror)} -> {folder / remote.name}" for remote in missing)
    return (
        f"{dataset} needs {len(missing)} files that are not in {folder} and could not be downloaded ({reason}){kept}; "
        f"download them yourself and place them as follows, {fix} them: {places}."
    )


def fetch(url: str, part: Path, progress: bool = True) -> None:
    """Download `url` into `part`, continuing a partial `part` when the server honours a byte range."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "searcher (dataset download)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing after `offset`: the .part is already whole (the checksum decides)
            return
        raise
    with response:
        if offset and (response.status != 206 or range_start(response.headers.get("Content-Range")) != offset):
            offset = 0  # the server sent the whole file (or another range): start again
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with open(part, "ab" if offset else "wb") as out, _progress_bar(part.name[: -len(".part")], total, offset, progress) as advance:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                advance(len(chunk))


def range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def file_digest(path: Path, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as source:
        while block := source.read(4 * CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Holds an exclusive lock on folder/.lock (POSIX; not reentrant); elsewhere a no-op. Creates `folder`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "w")
    except OSError as error:
        raise DatasetError(f"Cannot use {folder} for dataset files ({error}); set data_dir (or SEARCHER_DATA_DIR) to a writable folder.") from None
    with handle:
        try:
            import fcntl
        except ImportError:  # Windows: one process at a time is the user's job
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, done: int, enabled: bool) -> Iterator:
    """A rich progress bar on stderr (imported here: trials never download)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"downloading {label}", total=total, completed=done)
        yield lambda n: bar.advance(task, n)
