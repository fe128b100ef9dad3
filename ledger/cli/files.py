"""Files the command line reads (bounded: a device or a pipe that never ends is refused at the
limit, not read until memory runs out) and folders it writes its files into."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ledger.config import create_private_file
from ledger.errors import ConflictError, LedgerError, MalformedError, TooLargeError

__all__ = ["make_folder", "read_at_most", "read_bounded", "read_lines_bounded", "read_up_to", "write_new_key"]


def read_at_most(path: str | Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path`` (a file, a pipe, ``/dev/stdin``): more than
    ``limit`` means it is over, and ``/dev/zero`` is never read to exhaustion. Raises OSError
    (callers word it)."""
    with open(path, "rb") as f:
        return f.read(limit + 1)


def read_up_to(path: str | Path, what: str, limit: int) -> bytes:
    """``read_at_most``, with a missing or unreadable file refused as a MalformedError naming
    ``what``; the caller judges a result over ``limit``."""
    try:
        return read_at_most(path, limit)
    except FileNotFoundError:
        raise MalformedError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise MalformedError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def read_bounded(path: str | Path, what: str, limit: int, *, over: str = "is larger than the limit of") -> bytes:
    """The bytes of ``path``, refused with a MalformedError naming ``what`` when it is missing,
    unreadable or holds more than ``limit`` bytes (``{what} {path} {over} {limit} bytes``)."""
    data = read_up_to(path, what, limit)
    if len(data) > limit:
        raise MalformedError(f"{what} {path} {over} {limit} bytes")
    return data


def read_lines_bounded(path: str | Path, limit: int) -> Iterator[bytes | LedgerError]:
    """The non-blank lines of a JSON-lines file, stripped; a line over ``limit`` bytes is read
    past (in bounded pieces) and given as a TooLargeError in its place, so the others go on."""
    try:
        with open(path, "rb") as f:
            number = 0
            while line := f.readline(limit + 2):
                number += 1
                if len(line) > limit + 1 and not line.endswith(b"\n"):
                    while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass
                    yield TooLargeError(f"line {number} of {path} is over the limit of {limit} bytes")
                elif line.strip():
                    yield line.strip()
    except FileNotFoundError:
        raise MalformedError(f"{path} does not exist") from None
    except OSError as exc:
        raise MalformedError(f"cannot read {path}: {exc.strerror or exc}") from exc


def make_folder(folder: Path, mode: int = 0o777) -> None:
    """Create the folder a file is written into (and its parents), or say in one line why it
    cannot be: a MalformedError naming it (exit 2, choose another ``--out``)."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=mode)
    except FileExistsError:
        raise MalformedError(f"{folder} is not a folder (choose another --out)") from None
    except OSError as exc:
        raise MalformedError(f"cannot create the folder {folder}: {exc.strerror or exc} (choose another --out)") from exc


def write_new_key(path: Path, data: bytes, what: str = "a key") -> None:
    """Write a new private key file (0600, whole or not at all: ``create_private_file``), its
    folder created first; an existing file is never overwritten (ConflictError), and a path that
    cannot be written is one line naming it (MalformedError: choose another ``--out``)."""
    make_folder(path.parent, 0o700)
    try:
        created = create_private_file(path, data)
    except OSError as exc:
        raise MalformedError(f"cannot write {what} to {exc.filename or path}: {exc.strerror or exc} (choose another --out)") from exc
    if not created:
        raise ConflictError(f"{path} already exists; refusing to overwrite {what} (choose another --out)")
