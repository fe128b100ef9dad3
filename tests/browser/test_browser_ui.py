"""The auditor UI in a real browser: Playwright driving Debian's headless Chromium against
``provledger serve`` on 127.0.0.1, on a seeded ledger in a temporary PROVLEDGER_HOME.

Screenshots of the main pages go to test-artifacts/screenshots/. Skips (with the reason) when
the Playwright package or a Chromium binary is missing, except under PROVLEDGER_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.fixtures import PROVLEDGER, REPO, open_store
from tests.ui.ui_seed import XSS_SCRIPT, Seeded, seed

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str | None:
    for candidate in (os.environ.get("PROVLEDGER_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"provledger serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own server
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        skip_or_fail("the playwright package is not installed (pip install playwright; no browser download needed)")
    executable = _chromium()
    if executable is None:
        skip_or_fail("no Chromium found (apt-get install chromium, or set PROVLEDGER_CHROMIUM)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seeded]]:
    home = tmp_path_factory.mktemp("browser") / "home"
    with open_store("sqlite", home, None) as store:
        seeded = seed(store)
        port = _free_port()
        log = (home.parent / "serve.log").open("wb")
        process = subprocess.Popen(  # noqa: S603
            [PROVLEDGER, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=store.env, stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for(f"{base}/healthz", process)
            try:
                with urllib.request.urlopen(f"{base}/", timeout=5) as response:  # noqa: S310
                    served = "text/html" in response.headers.get("Content-Type", "")
            except urllib.error.HTTPError:
                served = False
            if not served:
                skip_or_fail("the server does not serve the UI at / (web.ui.init_app is not called in create_app)")
            yield base, seeded
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    context.close()


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_search_a_digest_open_the_artifact_and_read_the_verdict(page, live):
    base, seeded = live
    page.goto(base + "/")
    _shot(page, "overview")
    page.fill("#header-q", f"sha256:{seeded.build_digest}")
    page.click(".header-search button")
    page.wait_for_url("**/search?**")
    assert page.locator("table tbody tr").count() >= 2
    _shot(page, "search")
    page.click(".artifact-link a")
    page.wait_for_url(f"**/artifacts/sha256:{seeded.build_digest}")
    verdict = page.inner_text("#chain-verdict").strip()
    assert any(word in verdict for word in ("trusted", "stale", "untrusted", "missing"))
    assert page.locator("svg.chain-graph a.node").count() >= 1
    assert page.locator("#links-table tbody tr").count() == page.locator("svg.chain-graph a.node").count()
    _shot(page, "artifact")
    page.set_viewport_size({"width": 380, "height": 800})
    _shot(page, "artifact-narrow")
    assert page.evaluate("document.documentElement.scrollWidth") <= 400  # no page-wide sideways scroll


def test_download_a_receipt_and_verify_it_with_the_cli(page, live, tmp_path):
    base, seeded = live
    page.goto(base + "/")
    vkey = page.inner_text("#log-vkey").strip()
    assert vkey == seeded.store.log.vkey
    index = seeded.indexes[seeded.build_name]
    page.goto(f"{base}/entries/{index}")
    _shot(page, "entry")
    with page.expect_download() as info:
        page.click("#receipt-link")
    download = info.value
    assert download.suggested_filename == f"receipt-{index}.json"
    path = tmp_path / download.suggested_filename
    download.save_as(str(path))
    assert json.loads(path.read_text())["index"] == index
    command = page.inner_text("#verify-command").strip()
    assert command == f"provledger verify-receipt receipt-{index}.json --log-key '{vkey}'"
    done = subprocess.run(  # noqa: S603 - the exact command the page shows, run in the download folder
        [PROVLEDGER, "verify-receipt", path.name, "--log-key", vkey], cwd=tmp_path, capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    tampered = json.loads(path.read_text())
    tampered["index"] = index + 1
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    bad = subprocess.run(  # noqa: S603
        [PROVLEDGER, "verify-receipt", "bad.json", "--log-key", vkey], cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode != 0


def test_a_hostile_record_renders_inert(page, live):
    base, seeded = live
    for url in (
        "/",
        f"/entries/{seeded.xss_index}",
        f"/artifacts/sha256:{seeded.xss_digest}",
        f"/search?q=sha256:{seeded.xss_digest}",
        "/signers",
    ):
        page.goto(base + url)
        page.wait_for_load_state("load")
        assert page.locator("img[src='x']").count() == 0, url
        assert page.locator("main script").count() == 0, url
    assert page.dialogs == []  # type: ignore[attr-defined]
    page.goto(f"{base}/entries/{seeded.xss_index}")
    assert XSS_SCRIPT in page.inner_text("#statement")  # shown as text
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_main_pages_work_without_javascript_and_are_captured(browser, live):
    base, seeded = live
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{base}/search?q={seeded.build_name}")
        assert page.locator("table tbody tr").count() >= 1
        page.goto(f"{base}/artifacts/sha256:{seeded.build_digest}")
        assert page.inner_text("#chain-verdict").strip()
        for name, url in (("signers", "/signers"), ("checkpoints", "/checkpoints?old=1&new=5"), ("audits", "/audits"), ("login", "/login")):
            page.goto(base + url)
            assert page.locator("main h1").count() == 1
            _shot(page, name)
        page.goto(base + "/no-such-page")
        assert "404" in page.inner_text("main h1")
        _shot(page, "not-found")
    finally:
        context.close()
