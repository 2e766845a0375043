"""Safe, atomic extraction of a verified tar archive.

Published archives hold only regular files and folders. Anything else (a link, a
device) and any member whose path is absolute or climbs out with `..` is refused
before a byte is written; where Python has it, tarfile's `data` filter checks
again. Extraction goes to a temporary folder renamed into place at the end, so
an interrupted run never leaves a half-extracted folder under the final name.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from searcher.data.errors import DatasetError

MARKER = ".searcher-extracted"  # holds the digest of the archive the folder came from


def extract_tar(archive: Path, target: Path, digest: str) -> Path:
    """`target` holding the contents of `archive` (extracted now unless already done from the same digest)."""
    marker = target / MARKER
    if marker.is_file() and marker.read_text() == digest:
        return target
    temp = target.with_name(f".{target.name}.extracting-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, archive, target)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(temp, members=members, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: check_member has already refused everything the filter would
                tar.extractall(temp, members=members)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise DatasetError(f"{archive} could not be extracted ({error}); delete it and re-run to fetch it again.") from None
    except BaseException:
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
