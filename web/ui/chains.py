"""Where the artifact page gets its chain of trust: ``ledger.services.chain`` (issue 3), in the
GUIDE's JSON shape. Kept behind this one function so that the page's tests can substitute a
fixture chain (a drawing with every kind of node) for the store's."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ledger.services import chain as chain_service
from ledger.services.link_names import name_links

__all__ = ["chain_for"]


def chain_for(session: Session, algorithm: str, digest: str, *, at: int | None) -> tuple[dict[str, Any], bool]:
    """(chain JSON, provisional?) of the artifact ``algorithm:digest`` as of index ``at``."""
    chain = chain_service.chain(session, f"{algorithm}:{digest}", at=at)
    links = [l for l in chain.get("links") or [] if isinstance(l, dict)]
    name_links(session, links)
    for key in ("weakest_link", "root"):
        if isinstance(chain.get(key), dict):
            name_links(session, [chain[key]])
    return chain, False
