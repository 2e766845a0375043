"""Safe, atomic extraction of a verified tar archive.

Published archives hold only regular files and folders. Anything else (a link, a
device) and any member whose path is absolute or climbs out with `..` is refused
before it is written; where Python has it, tarfile's `data` filter checks each
member too. Extraction goes to a temporary folder that is renamed into place at
the end and deleted on any refusal or error, so nothing of a refused archive is
kept and an interrupted run never leaves a half-extracted folder under the final name.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from searcher.data.errors import DatasetError

MARKER = ".searcher-extracted"  # holds the digest of the archive the folder came from
CHUNK_BYTES = 4 << 20  # read and copy in 4 MiB blocks


def extract_tar(archive: Path, target: Path, digest: str) -> Path:
    """`target` holding the contents of `archive` (extracted now unless already done from the same digest).

    One sequential pass over the compressed stream (a .tar.gz cannot seek: listing the
    members first would decompress it twice), each member checked before it is written.
    """
    marker = target / MARKER
    if marker.is_file() and marker.read_text() == digest:
        return target
    temp = target.with_name(f".{target.name}.extracting-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r|*", bufsize=CHUNK_BYTES) as tar:
            for member in tar:
                check_member(member, archive, target)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: the standard library's verdict too
                    tarfile.data_filter(member, str(temp))
                destination = temp / member.name
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(destination, "wb") as out:  # type: ignore[union-attr]
                    shutil.copyfileobj(source, out, CHUNK_BYTES)  # plain 0644 files: no modes, owners or links carried over
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise DatasetError(f"{archive} could not be extracted ({error}); delete it and re-run to fetch it again.") from None
    except BaseException:  # a refused member (DatasetError) or an interruption: nothing is kept
        shutil.rmtree(temp, ignore_errors=True)
        raise
    (temp / MARKER).write_text(digest)
    shutil.rmtree(target, ignore_errors=True)  # a folder from another archive (or a crashed run without marker)
    os.replace(temp, target)
    return target


def check_member(member: tarfile.TarInfo, archive: Path, target: Path) -> None:
    posix, windows = PurePosixPath(member.name), PureWindowsPath(member.name)
    if posix.is_absolute() or windows.anchor or ".." in posix.parts or ".." in windows.parts:
        raise DatasetError(
            f"{archive} contains {member.name!r}, which would be written outside {target}, so nothing was extracted; "
            "delete the archive and fetch a good copy."
        )
    if not (member.isfile() or member.isdir()):
        raise DatasetError(
            f"{archive} contains {member.name!r}, which is a link or special file (published archives have none), "
            "so nothing was extracted; delete the archive and fetch a good copy."
        )
