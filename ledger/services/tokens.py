"""API tokens as the web layer sees them: the token record type and the admin behind a session.

(Creating and authenticating tokens is ``ledger.services.registry``.)
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ledger.db.models import ApiToken as Token

__all__ = ["Token", "admin_token"]


def admin_token(session: Session, token_id: int) -> Token | None:
    """The live admin-scope token with this id, or None (unknown, revoked, or not an admin token)."""
    row = session.get(Token, token_id)
    if row is None or row.scope != "admin" or row.revoked_at is not None:
        return None
    return row
