"""Folders the command line writes its files into (keys, witness keys)."""

from __future__ import annotations

from pathlib import Path

from ledger.errors import MalformedError

__all__ = ["make_folder"]


def make_folder(folder: Path, mode: int = 0o777) -> None:
    """Create the folder a file is written into (and its parents), or say in one line why it
    cannot be: a MalformedError naming it (exit 2, choose another ``--out``)."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=mode)
    except FileExistsError:
        raise MalformedError(f"{folder} is not a folder (choose another --out)") from None
    except OSError as exc:
        raise MalformedError(f"cannot create the folder {folder}: {exc.strerror or exc} (choose another --out)") from exc
