"""Two ``provledger serve`` processes on one PostgreSQL, one clock five minutes slow (Debian's
``faketime``): the slow one cannot slip a revoked key's record in after the revocation with an
earlier integrated time, and integrated time never goes backwards with the index (issue 12)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from ledger.db.models import Entry, EntrySubject
from ledger.services import registry
from ledger.services.setup import load_admin_key
from tests.browser.test_browser_ui import _free_port, _wait_for
from tests.conftest import skip_or_fail
from tests.fixtures import PREDICATE, PROVLEDGER, make_statement, sign

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SLOW = "-5m"


def _post(base: str, token: str, envelope: dict) -> int:
    request = urllib.request.Request(
        f"{base}/api/v1/entries", data=json.dumps(envelope).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - our own server
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def two_servers(postgres_store, tmp_path) -> Iterator[tuple[str, str]]:
    faketime = shutil.which("faketime")
    if faketime is None:
        skip_or_fail("Debian's faketime is not installed (apt-get install faketime)")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}, **postgres_store.env}
    processes, bases = [], []
    for name, prefix in (("true", []), ("slow", [faketime, "-f", SLOW])):
        port = _free_port()
        log = (tmp_path / f"serve-{name}.log").open("wb")
        processes.append((subprocess.Popen([*prefix, PROVLEDGER, "serve", "--port", str(port), "--workers", "1"],  # noqa: S603
                                           env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log))
        bases.append(f"http://127.0.0.1:{port}")
    try:
        for base, (process, _) in zip(bases, processes, strict=True):
            _wait_for(f"{base}/healthz", process)
        yield bases[0], bases[1]
    finally:
        # the whole process group: faketime runs the server as its child
        for process, log in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
            log.close()


def test_a_slow_clock_cannot_backdate_past_a_revocation(postgres_store, two_servers) -> None:
    true_base, slow_base = two_servers
    store = postgres_store
    key = store.add_signer([PREDICATE], name="builder")
    other = store.add_signer([PREDICATE], name="other")
    with store.sessions() as session, session.begin():
        token = registry.create_token(session, "ci", "submit", now=int(time.time()))
    assert _post(true_base, token, sign(key, make_statement("myorg/app/one"))) == 201
    # revoked now: records integrated from now on are not trusted
    registry.revoke_key(store.sessions, store.log, load_admin_key(store.settings), key.key_id, now=int(time.time()))
    # the slow server's clock says five minutes ago; the sequencer still may not go back in time
    assert _post(slow_base, token, sign(key, make_statement("myorg/app/two"))) == 403
    assert _post(slow_base, token, sign(other, make_statement("myorg/app/three"))) == 201
    assert _post(true_base, token, sign(other, make_statement("myorg/app/four"))) == 201
    with store.sessions() as session:
        times = list(session.execute(select(Entry.integrated_time).order_by(Entry.idx)).scalars())
        names = list(session.execute(select(EntrySubject.name).where(EntrySubject.name == "myorg/app/two")).scalars())
    assert times == sorted(times), "integrated time went backwards with the index"
    assert names == [], "the revoked key's record was appended"
