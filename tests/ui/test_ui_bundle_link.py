"""The artifact page offers the verdict bundle, and the link it offers serves one."""

from __future__ import annotations

import html
import re

from ledger.trust.bundle_verify import verify_verdict_bundle


def test_artifact_page_links_a_bundle_that_verifies(client, seeded):  # type: ignore[no-untyped-def]
    digest = f"sha256:{seeded.build_digest}"
    page = client.get(f"/artifacts/{digest}").get_data(as_text=True)
    match = re.search(r'<a id="verdict-bundle" href="([^"]+)" download="([^"]+)"', page)
    assert match, "the artifact page has no verdict-bundle link"
    href = html.unescape(match.group(1))
    assert href == f"/api/v1/artifacts/{digest}/bundle" and match.group(2).endswith(".json")
    response = client.get(href)
    assert response.status_code == 200
    result = verify_verdict_bundle(response.get_data(), digest, seeded.store.log.vkey)
    assert result.verdict == "trusted"
    build = seeded.indexes[seeded.build_name]
    page = client.get(f"/artifacts/{digest}?at={build}").get_data(as_text=True)
    assert f'/api/v1/artifacts/{digest}/bundle?at={build}"' in page
