"""Headless Chromium for the tests and benchmarks of the static pages (sample browser, report,
docs screenshots): Debian's ``chromium`` driven through ``chromium-driver`` by Selenium (the dev
extra), never a downloaded browser build.

``browser()`` is a context manager yielding a Selenium driver, or raises ``BrowserUnavailable``
with the reason (tests skip on it). The browser runs with a fresh profile and without any
network-facing background service: ``--headless --no-sandbox --disable-gpu
--disable-background-networking --disable-component-update --disable-sync --no-first-run``.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")
BINARIES = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "chromium-driver")


class BrowserUnavailable(RuntimeError):
    """No Chromium, no chromedriver or no selenium (the message says which)."""


def find() -> tuple[str, str]:
    """(browser, driver) paths, or BrowserUnavailable."""
    binary = next((shutil.which(b) for b in BINARIES if shutil.which(b)), None)
    driver = next((shutil.which(d) for d in DRIVERS if shutil.which(d)), None)
    if binary is None or driver is None:
        raise BrowserUnavailable("no Chromium and chromedriver (apt-get install chromium chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise BrowserUnavailable("selenium is not installed (pip install -e .[dev])") from None
    return binary, driver


@contextmanager
def browser(width: int = 1400, height: int = 900):
    """A headless Chromium (Selenium driver) with a fresh profile, quit and removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = find()
    with tempfile.TemporaryDirectory(prefix="vlmprobe-chromium-") as profile:
        options = Options()
        options.binary_location = binary
        for flag in FLAGS + (f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def open_page(driver, path: str | Path, fragment: str = "", timeout: float = 30.0) -> float:
    """Open a local page (``file://``) and wait until its ``body[data-ready]`` is set; returns the
    seconds from the request to ready. Raises AssertionError with the page's error text."""
    url = Path(path).resolve().as_uri() + (f"#{fragment.lstrip('#')}" if fragment else "")
    t = time.perf_counter()
    driver.get(url)
    return wait_ready(driver, timeout, t)


def wait_ready(driver, timeout: float = 30.0, since: float | None = None) -> float:
    since = time.perf_counter() if since is None else since
    while time.perf_counter() - since < timeout:
        state = driver.execute_script("return document.body && document.body.dataset.ready")
        if state == "1":
            return time.perf_counter() - since
        if state == "error":
            raise AssertionError(driver.execute_script("return document.getElementById('error').textContent"))
        time.sleep(0.02)
    raise AssertionError(f"page not ready after {timeout} s: {driver.current_url}")


def shown_ids(driver) -> list[str]:
    """The sample ids of the browser's rows now in the page."""
    return driver.execute_script("return [].map.call(document.querySelectorAll('#rows tr'), "
                                 "function (t) { return t.dataset.id; })")


def matching(driver) -> int:
    """The browser's count of samples matching the filters (all pages)."""
    return int(driver.execute_script("return document.getElementById('count').dataset.matching"))
