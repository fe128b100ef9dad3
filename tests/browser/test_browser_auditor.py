"""The auditor's screen, in a real browser at desktop (1280 px) and phone (390 px) widths, on the
demo ledger (a chain from a deployment with appraised TPM evidence down to a hardware part).

Checks what a person sees: names, versions and kinds on the chain; a reason on every link; the
TEE evidence drawn as a connected node; edge labels never under a box; no text past its box and
no sideways scrolling of the page; the weakest link in its verdict's colour; the appraisal of a
deployment; search by name, substring, digest prefix, host id, signer and predicate type, giving
what ``provledger search`` gives. Screenshots of every page at both widths go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.test_browser_ui import SCREENSHOTS, _free_port, _wait_for, browser  # noqa: F401 - the shared browser fixture
from tests.fixtures import PROVLEDGER

pytestmark = pytest.mark.slow
WIDTHS = (1280, 390)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("auditor") / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
    built = subprocess.run([PROVLEDGER, "demo", "--no-serve", "--home", str(home)], env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    artifact = re.search(r"chain of (sha256:[0-9a-f]{64})", built.stdout).group(1)  # type: ignore[union-attr]
    deployment = int(re.search(r"deployed on \S+: entry (\d+)", built.stdout).group(1))  # type: ignore[union-attr]
    env["PROVLEDGER_HOME"] = str(home)
    port = _free_port()
    log = (home.parent / "serve.log").open("wb")
    process = subprocess.Popen([PROVLEDGER, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/healthz", process)
        yield {"base": base, "artifact": artifact, "deployment": deployment, "env": env}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(params=WIDTHS, ids=lambda w: f"{w}px")
def page(request: pytest.FixtureRequest, browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": request.param, "height": 900})
    page = context.new_page()
    page.width = request.param  # type: ignore[attr-defined]
    yield page
    context.close()


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{page.width}.png"), full_page=True)


def _no_sideways_scroll(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= page.width, "the page scrolls sideways"


_GEOMETRY = """() => {
  const svg = document.querySelector('svg.chain-graph');
  const box = el => { const b = el.getBBox(); return {x: b.x, y: b.y, w: b.width, h: b.height}; };
  const nodes = [...svg.querySelectorAll('a.node')].map(a => ({
    rect: box(a.querySelector('rect')), texts: [...a.querySelectorAll('text')].map(box), classes: a.getAttribute('class')}));
  const labels = [...svg.querySelectorAll('.edge-label')].map(t => ({box: box(t), text: t.textContent}));
  return {nodes, labels, edges: svg.querySelectorAll('.edge line').length};
}"""


def _inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return inner["x"] >= outer["x"] - 0.5 and inner["x"] + inner["w"] <= outer["x"] + outer["w"] + 0.5


def _overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_artifact_page_names_reasons_tee_and_layout(page, demo) -> None:
    page.goto(f"{demo['base']}/artifacts/{demo['artifact']}")
    _shot(page, "auditor-artifact")
    table = page.inner_text("#links-table")
    for name in ("appliance/os/1.8.0/appliance-os.img", "acme/bios/2.14.1", "acme/boards/rev-c/0042", "acme/chips/tpm/lot-7731"):
        assert name in table, f"{name} is not shown"
    for kind in ("build", "firmware", "hardware part", "deployment", "TEE evidence"):
        assert kind in table
    rows = page.locator("#links-table tbody tr")
    assert rows.count() >= 6  # deployment, build, firmware, TEE evidence, board, chip (the SBOM rests beside the build)
    for i in range(rows.count()):
        assert rows.nth(i).locator(".reasons li").count() >= 1, f"row {i} gives no reason"
    geometry = page.evaluate(_GEOMETRY)
    tee = [n for n in geometry["nodes"] if "kind-tee" in n["classes"]]
    assert tee, "no TEE evidence node"
    assert any(l["text"] == "attested by" for l in geometry["labels"]), "the TEE evidence floats with no edge"
    assert geometry["edges"] == len(geometry["labels"])
    for node in geometry["nodes"]:
        for text in (t for t in node["texts"] if t["w"] > 0):  # an empty line has no box
            assert _inside(text, node["rect"]), f"text overflows its box in {node['classes']}"
        for label in geometry["labels"]:
            assert not _overlaps(label["box"], node["rect"]), f"edge label {label['text']!r} lies under a box"
    weakest = page.locator("#links-table tr.weakest-row")
    assert weakest.count() == 1
    chain_verdict = page.inner_text("#chain-verdict")
    assert "trusted" in chain_verdict
    assert "weakest-trusted" in (weakest.get_attribute("class") or "")
    outline = page.evaluate("getComputedStyle(document.querySelector('#links-table tr.weakest-row')).outlineColor")
    badge = page.evaluate("getComputedStyle(document.querySelector('#chain-verdict .verdict')).color")
    assert outline == badge, "the weakest link is not outlined in its verdict's colour"
    _no_sideways_scroll(page)


def test_deployment_entry_shows_the_appraisal(page, demo) -> None:
    page.goto(f"{demo['base']}/entries/{demo['deployment']}")
    _shot(page, "auditor-deployment")
    checks = page.locator("#appraisal-checks tbody tr")
    assert checks.count() >= 5
    names = page.inner_text("#appraisal-checks")
    for check in ("quote_signature", "report_data_binding", "firmware_measurement_matches"):
        assert check in names
    assert page.locator("#appraisal-checks tr.check-fail").count() == 0
    claims = page.inner_text("#appraisal-claims")
    assert "measurement" in claims and "sha256.pcr0" in claims
    assert "edge-appliance-0042" in page.inner_text("#appraisal")
    _no_sideways_scroll(page)
    page.click("#appraisal-firmware")
    page.wait_for_url("**/entries/*")
    assert "firmware-image" in page.inner_text("main")


def _cli_search(env: dict[str, str], q: str) -> list[int]:
    done = subprocess.run([PROVLEDGER, "search", q, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [e["index"] for e in json.loads(done.stdout)["entries"]]


@pytest.mark.parametrize(
    "query",
    ["appliance", "bios/2.14", "acme/chips", "edge-appliance-0042", "ci-pipeline", "firmware-image", "signer:hardware"],
)
def test_search_finds_what_the_cli_finds(page, demo, query) -> None:
    page.goto(f"{demo['base']}/")
    page.fill("#header-q", query)
    page.click(".header-search button")
    page.wait_for_url("**/search?**")
    shown = [int(t) for t in page.locator("table tbody tr th a").all_inner_texts()]
    assert shown, f"{query!r} finds nothing"
    assert shown == _cli_search(demo["env"], query)
    _no_sideways_scroll(page)
    if query == "appliance":
        _shot(page, "auditor-search")


def test_search_by_digest_prefix(page, demo) -> None:
    prefix = demo["artifact"].split(":")[1][:8]
    page.goto(f"{demo['base']}/search?q={prefix}")
    shown = [int(t) for t in page.locator("table tbody tr th a").all_inner_texts()]
    assert len(shown) >= 3 and shown == _cli_search(demo["env"], prefix)


def test_other_pages_fit_and_favicon(page, demo) -> None:
    for name, url in (("overview", "/"), ("signers", "/signers"), ("audits", "/audits"), ("checkpoints", "/checkpoints?old=1&new=5")):
        page.goto(demo["base"] + url)
        _shot(page, f"auditor-{name}")
        _no_sideways_scroll(page)
    page.goto(demo["base"] + "/signers")
    states = page.locator(".key-state").evaluate_all("els => els.map(e => e.dataset.state)")
    assert states and set(states) <= {"active", "stale", "expired", "revoked", "rotated", "not yet valid"}
    page.goto(demo["base"] + "/audits")
    assert "OK" in page.inner_text("main"), "a finished, passing audit shows no result"
    page.goto(demo["base"] + "/checkpoints?old=1&new=5")
    facts = page.inner_text("main")
    assert re.search(r"Old root \(hex\)\s+[0-9a-f]{64}", facts)
    response = page.goto(demo["base"] + "/favicon.ico")
    assert response is not None and response.status == 200
