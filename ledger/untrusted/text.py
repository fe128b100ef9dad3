"""Characters that change how text reads without being seen.

Control characters (C0, DEL, C1) can move a terminal's cursor or rewrite its line; Unicode format
characters (bidi overrides and isolates, zero-width marks, the soft hyphen, the byte-order mark),
line and paragraph separators and lone surrogates reorder or hide what a reader sees. Names the
ledger judges or shows hold none of them (``ledger.records.statement``); the command line shows
any that reach it from elsewhere as escapes (``ledger.cli.terminal``).
"""

from __future__ import annotations

import re

__all__ = ["CONTROLS", "INVISIBLE", "UNSEEN"]

#: C0 controls, DEL and C1 controls, as a regular-expression character range
CONTROLS = r"\x00-\x1f\x7f-\x9f"
#: invisible format characters, separators and surrogates, as a regular-expression character range
INVISIBLE = r"\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff"
#: any one of them
UNSEEN = re.compile(f"[{CONTROLS}{INVISIBLE}]")
