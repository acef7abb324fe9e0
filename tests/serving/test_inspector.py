"""The web inspector in a real headless chromium against a real server: the bars of a drawn
digit are the API's probabilities for the pixels the page sent, the heat map's cells are the
API's attention, the captioner draws one overlay per word, a refused version shows its reason;
and the page's headers, its absence with --inspector off, and the token it must send."""

from __future__ import annotations

import http.client
import io
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.config import parse_config
from serving.inspector import routes
from tests.serving import inspector_browser as browser
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import publish_classifier, publish_tagger
from tests.serving.synthetic_seq2seq import publish_captioner, publish_translator

THRESHOLDS = [0.3, 0.5, 0.7, 0.5]
SENTENCE = "el gato negro come"
STATIC = Path(routes.__file__).parent


def publish_broken_version(repo: Path, name: str) -> None:
    """A second version whose manifest holds a wrong sha256: the registry refuses it and
    version 1 keeps serving."""
    publish_classifier(repo, name, seed=1)
    path = repo / name / "2" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["model.onnx"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("inspector") / "repo"
    publish_classifier(repo, "digits")
    publish_broken_version(repo, "digits")
    publish_tagger(repo, "tags", thresholds=THRESHOLDS)
    publish_translator(repo)
    publish_captioner(repo)
    with ServerProcess(repo) as server:
        yield server


@pytest.fixture(scope="module")
def chromium():
    reason = browser.missing()
    if reason:
        pytest.skip(f"no headless browser for the inspector tests: {reason}")
    with browser.chromium() as driver:
        yield driver


@pytest.fixture
def page(chromium, server):
    """The browser on the inspector, checked for console errors (CSP violations among them)
    when the test is done."""
    chromium.get(server.http_url + "/inspect/")
    browser.console_errors(chromium)  # the log so far
    yield chromium
    assert browser.console_errors(chromium) == []


def get(server, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One GET, redirects not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def api(server, path: str, body: dict | None = None,
        headers: dict[str, str] | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.http_url + path, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def infer_binary(server, model: str, name: str, elements: list[bytes],
                 outputs: list[str]) -> dict:
    """BYTES input as the binary tensor data extension sends it (tritonclient.http's way)."""
    raw = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    head = json.dumps({"inputs": [{"name": name, "datatype": "BYTES", "shape": [len(elements)],
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": o} for o in outputs]}).encode()
    req = urllib.request.Request(server.http_url + f"/v2/models/{model}/infer",
                                 data=head + raw,
                                 headers={"Inference-Header-Content-Length": str(len(head))})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def outputs(answer: dict) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}


def pixels_infer(server, model: str, pixels: list[int], shape: list[int]) -> np.ndarray:
    answer = api(server, f"/v2/models/{model}/infer", {
        "inputs": [{"name": "pixels", "datatype": "UINT8", "shape": shape, "data": pixels}],
        "outputs": [{"name": "probabilities"}]})
    return outputs(answer)["probabilities"][0]


def bars(driver, area: str) -> list[dict[str, str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' .bar-row'),"
        " (row) => ({...row.dataset}))", area)


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# -- served as a page should be ------------------------------------------------------------


def test_page_headers_and_redirect(server):
    assert get(server, "/").status == 302 and get(server, "/").getheader("Location") == "/inspect/"
    assert get(server, "/inspect").getheader("Location") == "/inspect/"
    for path, kind in [("/inspect/", "text/html"), ("/inspect/inspector.js", "text/javascript"),
                       ("/inspect/inspector.css", "text/css"),
                       ("/inspect/favicon.svg", "image/svg+xml")]:
        response = get(server, path)
        assert response.status == 200, path
        assert response.getheader("Content-Type") == f"{kind}; charset=utf-8", path
        csp = response.getheader("Content-Security-Policy")
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert response.getheader("Cache-Control") == "no-cache"
        etag = response.getheader("ETag")
        again = get(server, path, {"If-None-Match": etag})
        assert again.status == 304 and again.body == b""
    missing = get(server, "/inspect/no-such-file.js")
    assert missing.status == 404 and "error" in json.loads(missing.body)
    listing = get(server, "/inspect/api/models")
    assert listing.getheader("Cache-Control") == "no-store"
    assert listing.getheader("Content-Type").startswith("application/json")


def test_static_files_need_nothing_from_elsewhere_and_never_parse_html():
    files = {p.name: p.read_text() for p in STATIC.iterdir() if p.suffix in routes.CONTENT_TYPES}
    assert {"index.html", "inspector.js", "inspector.css"} <= set(files)
    index = files["index.html"]
    # every script is a file of this origin (the CSP would refuse an inline one anyway)
    assert re.findall(r"<script\b[^>]*>", index) == [
        '<script type="module" src="inspector.js">']
    assert " style=" not in index and "<style" not in index
    for name, text in files.items():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text.replace(
            "http://www.w3.org/2000/svg", "")), f"{name} loads something from elsewhere"
        if name.endswith(".js"):
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                         "eval(", "new Function", "setAttribute(\"style"):
                assert sink not in text, f"{name} uses {sink}"
    assert set(routes.FILES) == set(files)


def test_model_api_describes_manifests_and_version_errors(server):
    listing = api(server, "/inspect/api/models")
    models = {m["name"]: m for m in listing["models"]}
    assert listing["ready"] and set(models) == {"digits", "tags", "toy-translate", "toy-caption"}
    digits = models["digits"]
    assert digits["served_version"] == 1 and digits["task"] == "classify"
    assert digits["labels"] == [f"class-{i}" for i in range(10)]
    assert digits["parity"]["max_abs_diff"] == 0.0
    assert [e["version"] for e in digits["version_errors"]] == [2]
    assert "sha256" in digits["version_errors"][0]["reason"]
    index = api(server, "/v2/repository/index", {})
    assert {(e["name"], e["version"]): e.get("reason", "") for e in index}[("digits", "2")] == \
        digits["version_errors"][0]["reason"]
    assert models["tags"]["thresholds"] == THRESHOLDS
    assert models["toy-caption"]["grid"] == {"rows": 4, "cols": 4}
    assert models["toy-translate"]["decoding"]["default_beam_size"] == 3


# -- in the browser ------------------------------------------------------------------------


def test_model_list_shows_versions_metrics_and_errors(page):
    rows = browser.wait_for(lambda: page.find_elements("css selector", "tr.model"),
                            what="the model list")
    by_name = {r.get_attribute("data-model"): r for r in rows}
    assert set(by_name) == {"digits", "tags", "toy-translate", "toy-caption"}
    digits = by_name["digits"]
    assert digits.find_element("css selector", ".task").text == "classify"
    assert digits.find_element("css selector", ".version").text == "1"
    error = digits.find_element("css selector", ".version-errors li")
    assert error.get_attribute("data-version") == "2"
    assert "sha256 of model.onnx" in error.text and "version 2" in error.text
    assert "max |diff|" in digits.find_element("css selector", ".parity").text
    assert by_name["tags"].find_elements("css selector", ".version-errors") == []
    # the model's own page shows the refused version too
    digits.find_element("css selector", "a").click()
    head = browser.wait_for(lambda: page.find_element("css selector", ".model-head"))
    assert "version 2" in head.find_element("css selector", ".version-errors").text


def test_drawn_digit_bars_are_the_api_answer_for_the_pixels_sent(page, server):
    page.get(server.http_url + "/inspect/#/models/digits")
    blank = browser.answered(page, ".classifier-result")
    before = int(blank.get_attribute("data-answers"))
    pad = page.find_element("css selector", "canvas.pad")
    # a "7": across the top, then down to the bottom left
    browser.draw(page, pad, [(0.25, 0.2), (0.5, 0.2), (0.75, 0.2), (0.6, 0.5), (0.45, 0.85)])
    browser.answered(page, ".classifier-result", after=before)
    sent = browser.last_call(page, "digits")["inputs"][0]
    assert sent["datatype"] == "UINT8" and sent["shape"] == [1, 1, 28, 28]
    pixels = np.array(sent["data"])
    assert pixels.min() >= 0 and pixels.max() == 255 and (pixels > 0).sum() > 20  # ink
    # what the page sent is what its preview shows
    shown = page.execute_script(
        "const c = document.querySelector('canvas.preview');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data)"
        ".filter((_, i) => i % 4 === 0)")
    assert shown == sent["data"]
    rows = bars(page, ".classifier-result")
    assert [r["label"] for r in rows] == [f"class-{i}" for i in range(10)]
    shown_p = np.array([float(r["probability"]) for r in rows])
    assert shown_p.sum() == pytest.approx(1, abs=1e-5)
    expected = pixels_infer(server, "digits", sent["data"], [1, 1, 28, 28])
    np.testing.assert_allclose(shown_p, expected, atol=1e-7)
    # the blank pad's answer differs: the bars did move with the drawing
    assert not np.allclose(expected, pixels_infer(server, "digits", [0] * 784, [1, 1, 28, 28]))
    page.find_element("css selector", ".classifier button").click()  # clear
    browser.answered(page, ".classifier-result", after=before + 1)
    assert set(browser.last_call(page, "digits")["inputs"][0]["data"]) == {0}


def test_tagger_upload_shows_probabilities_against_thresholds(page, server, tmp_path):
    image = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    path = tmp_path / "tags.png"
    path.write_bytes(png(image))
    page.get(server.http_url + "/inspect/#/models/tags")
    upload = browser.wait_for(lambda: page.find_element("css selector", ".tagger input.file"))
    upload.send_keys(str(path))
    browser.answered(page, ".tagger-result")
    sent = browser.last_call(page, "tags")["inputs"][0]
    # a grey PNG of the model's own size decodes in the page to exactly its pixels
    assert sent["data"] == image.reshape(-1).tolist()
    rows = bars(page, ".tagger-result")
    assert [float(r["threshold"]) for r in rows] == THRESHOLDS
    shown = np.array([float(r["probability"]) for r in rows])
    np.testing.assert_allclose(shown, pixels_infer(server, "tags", sent["data"],
                                                   [1, 1, 28, 28]), atol=1e-7)
    tagged = [r["label"] for r, p, t in zip(rows, shown, THRESHOLDS, strict=True) if p >= t]
    on = page.find_elements("css selector", ".tagger-result .bar-row.on")
    assert [r.get_attribute("data-label") for r in on] == tagged


def test_translation_heat_map_cells_are_the_api_attention(page, server):
    page.get(server.http_url + "/inspect/#/models/toy-translate")
    text = browser.wait_for(lambda: page.find_element("css selector", "textarea.source-text"))
    text.send_keys(SENTENCE)
    beam = page.find_element("css selector", ".translator .beam-size")
    beam.clear()
    beam.send_keys("2")
    page.find_element("css selector", ".translator button[type=submit]").click()
    result = browser.answered(page, ".translator-result")
    answer = outputs(api(server, "/v2/models/toy-translate/infer", {
        "parameters": {"beam_size": 2},
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [SENTENCE]}],
        "outputs": [{"name": n} for n in ("translation", "target_pieces", "source_pieces",
                                          "attention", "token_probabilities")]}))
    t, s = answer["target_pieces"].shape[1], answer["source_pieces"].shape[1]
    shown_text = result.find_element("css selector", ".translation").get_attribute("textContent")
    assert shown_text == answer["translation"][0]
    table = result.find_element("css selector", "table.heatmap")
    assert (int(table.get_attribute("data-rows")), int(table.get_attribute("data-cols"))) == (t, s)
    cells = page.execute_script(
        "return Array.from(document.querySelectorAll('table.heatmap td'),"
        " (td) => [Number(td.dataset.row), Number(td.dataset.col), Number(td.dataset.weight),"
        " td.textContent])")
    shown = np.zeros((t, s))
    for i, j, w, text_shown in cells:
        shown[i, j] = w
        assert float(text_shown) == pytest.approx(w, abs=0.005)  # the text: rounded
    np.testing.assert_allclose(shown, answer["attention"][0], atol=1e-7)
    np.testing.assert_allclose(shown.sum(axis=1), 1, atol=1e-5)
    heads = [h.text for h in table.find_elements("css selector", "th.source")]
    assert heads == list(answer["source_pieces"][0])
    chips = result.find_elements("css selector", ".piece-chip")
    assert [c.find_element("css selector", ".piece").text for c in chips] == \
        list(answer["target_pieces"][0])
    # hovering a target piece highlights its row, and only its row
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(page).move_to_element(chips[1]).perform()
    lit = browser.wait_for(lambda: table.find_elements("css selector", "tbody tr.highlight"))
    assert [r.get_attribute("data-row") for r in lit] == ["1"]


def test_captioner_draws_one_overlay_per_word(page, server, tmp_path):
    image = np.random.default_rng(5).integers(0, 256, (48, 64), dtype=np.uint8)
    encoded = png(image)
    path = tmp_path / "photo.png"
    path.write_bytes(encoded)
    page.get(server.http_url + "/inspect/#/models/toy-caption")
    upload = browser.wait_for(lambda: page.find_element("css selector",
                                                        ".captioner input.file"))
    upload.send_keys(str(path))
    result = browser.answered(page, ".captioner-result")
    answer = outputs(infer_binary(server, "toy-caption", "image", [encoded],
                                  ["caption", "tokens", "attention", "caption_lengths"]))
    n = int(answer["caption_lengths"][0])
    assert n > 0
    assert result.find_element("css selector", ".caption").get_attribute("textContent") == \
        answer["caption"][0]
    overlays = result.find_elements("css selector", "figure.word-overlay")
    assert [o.get_attribute("data-word") for o in overlays] == list(answer["tokens"][0][:n])
    for i, overlay in enumerate(overlays):
        weights = np.array(json.loads(overlay.get_attribute("data-weights"))).reshape(4, 4)
        np.testing.assert_allclose(weights, answer["attention"][0, i], atol=1e-7)
    # the canvases are drawn: the overlay tints the photo
    assert page.execute_script(
        "const c = document.querySelector('figure.word-overlay canvas');"
        "return c.width > 0 && c.getContext('2d').getImageData(0, 0, c.width, c.height)"
        ".data.some((v, i) => i % 4 !== 3 && v > 0)")
    stage = result.find_element("xpath", "..").find_element("css selector", "canvas.stage")
    assert stage.get_attribute("data-index") == "0"
    buttons = {b.text: b for b in page.find_elements("css selector", ".stepper button")}
    buttons["next word \u2192"].click()
    assert stage.get_attribute("data-index") == "1"
    assert "2/" in page.find_element("css selector", ".current-word").text


# -- switched off, and behind a token --------------------------------------------------------


def test_inspector_flag_and_environment(monkeypatch):
    assert parse_config([]).inspector is True
    assert parse_config(["--inspector", "off"]).inspector is False
    monkeypatch.setenv("SMALLSERVE_INSPECTOR", "off")
    assert parse_config([]).inspector is False
    assert parse_config(["--inspector", "on"]).inspector is True  # the flag wins


def test_inspector_off_is_not_served(tmp_path):
    repo = tmp_path / "repo"
    publish_classifier(repo, "digits")
    with ServerProcess(repo, "--inspector", "off") as server:
        for path in ("/", "/inspect/", "/inspect/inspector.js", "/inspect/api/models"):
            assert get(server, path).status == 404, path
        assert get(server, "/v2/health/ready").status == 200


def test_with_tokens_the_page_is_open_and_its_calls_need_the_token(chromium, tmp_path):
    repo = tmp_path / "repo"
    publish_classifier(repo, "digits")
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret\n")
    with ServerProcess(repo, "--auth-token-file", str(tokens)) as server:
        assert get(server, "/inspect/").status == 200  # a browser cannot send a token here
        assert get(server, "/inspect/inspector.js").status == 200
        assert get(server, "/inspect/api/models").status == 401
        with pytest.raises(urllib.error.HTTPError) as refused:
            api(server, "/v2/models/digits/infer", {})
        assert refused.value.code == 401
        assert api(server, "/inspect/api/models",
                   headers={"Authorization": "Bearer s3cret"})["models"][0]["name"] == "digits"

        chromium.get(server.http_url + "/inspect/")
        browser.wait_for(lambda: "needs a token" in chromium.find_element(
            "css selector", "#status").text, what="the token prompt")
        browser.console_errors(chromium)  # the 401 just logged
        field = chromium.find_element("css selector", "#token")
        field.send_keys("s3cret")
        chromium.find_element("css selector", "#token-form button").click()
        browser.wait_for(lambda: chromium.find_elements("css selector", "tr.model"),
                         what="the model list")
        chromium.get(server.http_url + "/inspect/#/models/digits")  # the token stays
        browser.answered(chromium, ".classifier-result")
        assert len(bars(chromium, ".classifier-result")) == 10
        assert browser.console_errors(chromium) == []
