"""What a JSON Schema validator says about an untrusted value, bounded.

jsonschema words its errors around the offending value itself (``'xxxx…' is too long``,
``{…} is not of type 'string'``): a megabyte field would come back whole in a 400 answer, on the
command line and in logs. ``schema_message`` shows a long value by its start and its length.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_MESSAGE_CHARS", "MAX_SHOWN_CHARS", "schema_message"]

#: the most of an offending value a message shows
MAX_SHOWN_CHARS = 60
#: the most a message may hold in all
MAX_MESSAGE_CHARS = 300


def schema_message(error: Any) -> str:
    """``error.message`` (a ``jsonschema.ValidationError``) with a long offending value shortened."""
    message = str(error.message)
    try:
        shown = repr(error.instance)
    except Exception:  # noqa: BLE001 - an unprintable value: keep the message as jsonschema wrote it
        shown = ""
    if len(shown) > MAX_SHOWN_CHARS and shown in message:
        message = message.replace(shown, f"{shown[:MAX_SHOWN_CHARS]}… ({len(shown):,} characters)")
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "…"
    return message
