"""Text on its way to a person's terminal.

What the command line prints can come from others: a subject name, a principal or a reason
from a ledger's key history, a remote ledger's verdict bundle, a refusal that quotes its input.
A control character in it (an escape sequence, a carriage return) could rewrite what the
reader sees, and an invisible format character (a bidi override) could reorder it. ``safe``
shows each such character as its escape instead; newlines and tabs stay, so does everything
else. JSON output needs nothing: ``json.dumps`` escapes these already.
"""

from __future__ import annotations

import re

from ledger.untrusted.text import INVISIBLE

__all__ = ["safe"]

#: every character of ``ledger.untrusted.text.UNSEEN`` but newline and tab
_UNSAFE = re.compile(rf"[\x00-\x08\x0b-\x1f\x7f-\x9f{INVISIBLE}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str) -> str:
    """``text`` with every control or invisible format character but newline and tab escaped."""
    return _UNSAFE.sub(_escape, text)
