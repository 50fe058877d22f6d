"""The API page at `/` in a real browser (headless Chromium driven by Selenium): it loads with no network but
the server's, lists every route of /docs.json, and "Try it out" on /predict with the page's own example answers
200 with a label. Slow tier; skipped with the reason where Chromium, its driver or Selenium is missing (failed in
CI, where .ci/run installs Debian's chromium and chromium-driver)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import httpx
import pytest

from loadtests.server import running_server

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Chromium with nothing of its own on the network (background updates, sync, QUIC): the page's requests are
# all it makes, so a request to anywhere but the server shows in the resource list below.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,4000",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not found]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("selenium")
    if missing:
        reason = f"the browser test needs {', '.join(missing)} (Debian: chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory() as profile:
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)  # no driver download
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server() as running:
        yield running.url


def test_the_page_lists_every_route_and_try_it_out_answers(browser, server: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server + "/")
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    assert browser.title.startswith("mnist-serve")
    document = httpx.get(server + "/docs.json").json()
    listed = set()
    for path in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"):
        block = path.find_element(By.XPATH, "./ancestor::div[contains(@class, 'opblock ')]")
        listed.add(
            (
                block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.lower(),
                path.get_attribute("data-path"),
            )
        )
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert listed == documented
    assert not browser.find_elements(By.CSS_SELECTOR, ".github-corner")  # BentoML's link to its own repository
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert resources
    assert all(url.startswith(server) for url in resources), resources

    predict = browser.find_element(By.ID, "operations-Predict-predict")
    predict.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda _: predict.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    predict.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    predict.find_element(By.CSS_SELECTOR, ".execute").click()
    answer = ".live-responses-table tr.response"
    status = wait.until(lambda _: predict.find_elements(By.CSS_SELECTOR, f"{answer} .response-col_status"))
    assert status[0].text.strip() == "200"
    body = predict.find_element(By.CSS_SELECTOR, f"{answer} .highlight-code").text
    assert '"label": "7"' in body  # the page's example is a real 7
