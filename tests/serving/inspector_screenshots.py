"""Screenshots of the web inspector's views for the README (docs/inspector-*.png).

    python -m tests.serving.inspector_screenshots                  # the tiny synthetic models
    python -m tests.serving.inspector_screenshots --repository R   # models trained for real

With a repository, the first model of each task is shown; the tagger and the captioner get a
multi-digit canvas made from the bundled MNIST digits, as their training data were.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.serving import inspector_browser as browser
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import publish_classifier, publish_tagger
from tests.serving.synthetic_seq2seq import publish_captioner, publish_translator

WIDTH = 1280
# a "3" drawn in two arcs, in 0..1 of the pad
THREE = [(0.47 + 0.2 * np.sin(a), 0.33 - 0.14 * np.cos(a)) for a in np.linspace(-1.3, 2.6, 9)] + \
        [(0.47 + 0.22 * np.sin(a), 0.62 - 0.16 * np.cos(a)) for a in np.linspace(0.5, 4.4, 10)]
SENTENCES = {"synthetic": "el gato negro come", "trained": "los hombres blancos comen la manzana"}


def synthetic_repository(root: Path) -> Path:
    repo = root / "repo"
    publish_classifier(repo, "digits")
    publish_classifier(repo, "digits", seed=1)  # version 2, refused: its manifest lies
    manifest_path = repo / "digits" / "2" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["model.onnx"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    publish_tagger(repo, "tags", thresholds=[0.3, 0.5, 0.7, 0.5])
    publish_translator(repo)
    publish_captioner(repo)
    return repo


def canvas_image(path: Path, seed: int) -> Path:
    """A 64x64 canvas of MNIST digits when the training package and its bundled digits are
    here; noise otherwise (what the synthetic models answer to)."""
    try:
        from training.data.mnist import load_mnist
        from training.data.multidigit import generate_canvases

        canvases = generate_canvases(load_mnist(None).test, 16, seed)
        image = canvases.images[[len(s) for s in canvases.sequences].index(3)]
    except Exception:
        image = np.random.default_rng(seed).integers(0, 256, (64, 64), dtype=np.uint8)
    return browser.save_png(path, image)


def fit_window(driver: Any) -> None:
    height, chrome = driver.execute_script(
        "return [document.documentElement.scrollHeight, outerHeight - innerHeight]")
    driver.set_window_size(WIDTH, min(1600, max(600, height + 24)) + chrome)


def shoot(driver: Any, path: Path) -> None:
    fit_window(driver)
    time.sleep(0.3)  # the resized window's layout
    driver.save_screenshot(str(path))
    print(f"wrote {path}")


def first_of_task(models: list[dict[str, Any]], task: str) -> str | None:
    return next((m["name"] for m in models if m["task"] == task), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repository", type=Path, help="serve this repository (default: the "
                                                   "synthetic tiny models)")
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args(argv)
    reason = browser.missing()
    if reason:
        raise SystemExit(reason)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = args.repository or synthetic_repository(root)
        kind = "trained" if args.repository else "synthetic"
        with ServerProcess(repo.resolve(), log_path=root / "server.log") as server, \
                browser.chromium() as driver:
            driver.get(server.http_url + "/")
            browser.wait_for(lambda: driver.find_elements("css selector", "tr.model"))
            models = json.loads(driver.execute_script(
                "return fetch('api/models').then((r) => r.text())"))["models"]
            shoot(driver, args.out / "inspector-models.png")
            views = {"classify": classify, "tag": tag, "translate": translate,
                     "caption": caption}
            names = {"classify": "classifier", "tag": "tagger", "translate": "translator",
                     "caption": "captioner"}
            for task, show in views.items():
                name = first_of_task(models, task)
                if name is None:
                    continue
                driver.set_window_size(WIDTH, 900)
                driver.get(f"{server.http_url}/inspect/#/models/{name}")
                show(driver, root, kind)
                shoot(driver, args.out / f"inspector-{names[task]}.png")
    return 0


def classify(driver: Any, root: Path, kind: str) -> None:
    before = int(browser.answered(driver, ".classifier-result").get_attribute("data-answers"))
    pad = driver.find_element("css selector", "canvas.pad")
    browser.draw(driver, pad, THREE)
    browser.answered(driver, ".classifier-result", after=before)


def tag(driver: Any, root: Path, kind: str) -> None:
    upload = browser.wait_for(lambda: driver.find_element("css selector", ".tagger input.file"))
    upload.send_keys(str(canvas_image(root / "tag.png", seed=7)))
    browser.answered(driver, ".tagger-result")


def translate(driver: Any, root: Path, kind: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    text = browser.wait_for(lambda: driver.find_element("css selector", "textarea"))
    text.send_keys(SENTENCES[kind])
    driver.find_element("css selector", ".translator button[type=submit]").click()
    browser.answered(driver, ".translator-result")
    chips = driver.find_elements("css selector", ".piece-chip")
    if len(chips) > 1:  # show the highlight of one target piece
        ActionChains(driver).move_to_element(chips[1]).perform()


def caption(driver: Any, root: Path, kind: str) -> None:
    upload = browser.wait_for(lambda: driver.find_element("css selector",
                                                          ".captioner input.file"))
    upload.send_keys(str(canvas_image(root / "caption.png", seed=7)))
    browser.answered(driver, ".captioner-result")
    buttons = driver.find_elements("css selector", ".stepper button")
    if len(driver.find_elements("css selector", "figure.word-overlay")) > 1:
        buttons[-1].click()  # the second word


if __name__ == "__main__":
    raise SystemExit(main())
