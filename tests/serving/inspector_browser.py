"""Debian's headless chromium under selenium, driving the web inspector of a real server.

The browser and its driver come from the system (`apt-get install chromium chromium-driver`,
which .ci/run does): selenium is told where both are, so it never tries to download either.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver")
# as root in a container: no sandbox (it needs user namespaces), no GPU, /dev/shm too small
# for chromium's shared memory, and nothing that reaches the network behind the test's back
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--window-size=1280,900", "--force-device-scale-factor=1")


def missing() -> str:
    """Why the browser tests cannot run here, or "" when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if browser_path() is None:
        return "Debian's chromium is not installed (apt-get install chromium chromium-driver)"
    if driver_path() is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return ""


def browser_path() -> str | None:
    return next(filter(None, map(shutil.which, BROWSERS)), None)


def driver_path() -> str | None:
    return next(filter(None, map(shutil.which, DRIVERS)), None)


@contextmanager
def chromium() -> Iterator[Any]:
    """A fresh headless chromium (its own profile folder) with its console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="inspector-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser_path() or ""
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=driver_path()),
                                  options=options)
        driver.set_page_load_timeout(30)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for(check: Callable[[], Any], timeout: float = 20, what: str = "the page") -> Any:
    """check()'s first truthy answer, polled; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # an element not there yet, or replaced while read
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"waited {timeout}s for {what}; last saw {last!r}")


def answered(driver: Any, area: str, after: int = 0, timeout: float = 30) -> Any:
    """The result area (CSS selector) once it shows more than `after` answers and is idle."""
    def done() -> Any:
        node = driver.find_element("css selector", area)
        if node.get_attribute("data-state") == "error":
            message = node.find_element("css selector", ".message").text
            raise AssertionError(f"{area} shows an error: {message}")
        if node.get_attribute("data-state") == "idle" and \
                int(node.get_attribute("data-answers")) > after:
            return node
        return None

    deadline = time.monotonic() + timeout
    while True:
        try:
            node = done()
        except AssertionError:
            raise
        except Exception:
            node = None
        if node is not None:
            return node
        if time.monotonic() > deadline:
            raise TimeoutError(f"{area} gave no answer in {timeout}s")
        time.sleep(0.05)


def last_call(driver: Any, model: str) -> dict[str, Any]:
    """What the page last sent to `model` (its inputs as sent)."""
    return json.loads(driver.execute_script(
        "return JSON.stringify(window.smallserveInspector.lastCalls[arguments[0]] || null)",
        model))


def console_errors(driver: Any) -> list[str]:
    """The page's console errors and CSP violations since the last call."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def draw(driver: Any, canvas: Any, points: list[tuple[float, float]]) -> None:
    """One stroke through points given in 0..1 of the canvas (mouse: pointer events)."""
    from selenium.webdriver.common.action_chains import ActionChains

    width, height = canvas.size["width"], canvas.size["height"]
    # offsets are from the element's centre
    at = [(round((x - 0.5) * width), round((y - 0.5) * height)) for x, y in points]
    chain = ActionChains(driver, duration=10).move_to_element_with_offset(canvas, *at[0])
    chain.click_and_hold()
    for (x0, y0), (x1, y1) in zip(at, at[1:], strict=False):
        chain.move_by_offset(x1 - x0, y1 - y0)
    chain.release().perform()


def save_png(path: Path, pixels: Any) -> Path:
    """A uint8 array (H, W) or (H, W, 3) as a PNG file."""
    from PIL import Image

    Image.fromarray(pixels).save(path, format="PNG")
    return path
