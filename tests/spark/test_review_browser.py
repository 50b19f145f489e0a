"""`backforth review` in a real headless Chromium: the CLI serves the app on loopback over the tables of a fake-engine
run (every document carries a <script> payload); the browser filters the list, opens pairs, rejects one with a reason
and edits another; then the `reviews` table holds both, and re-runs of filter and export honour them. The
screenshot it takes is the README's (set BACKFORTH_SCREENSHOT to keep a copy)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fake_run import FILTER_TOP_HALF

from backforth import reviews as review_table
from backforth.jobs.export import ExportConfig, SeedMix
from backforth.jobs.filter import FilterConfig

pytestmark = [pytest.mark.spark, pytest.mark.e2e]
PAYLOAD = "<script>window.injected = true</script>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(make_settings, answered, data_dir: Path, tmp_path: Path):
    settings = make_settings()
    run = answered(settings, suffix=f" A page can carry markup: {PAYLOAD}")
    port = free_port()
    log = tmp_path / "review.log"
    cmd = [sys.executable, "-m", "backforth.cli", "review", "--port", str(port), "--reviewer", "browser-test",
           "--set", f"data_dir={data_dir}", "--set", f"tables.schema={settings.tables.schema}"]  # fmt: skip
    started = time.monotonic()
    app = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if app.poll() is not None or time.monotonic() - started > 60:
                    raise AssertionError(f"review app did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
        yield settings, run, url, time.monotonic() - started, log
    finally:
        app.terminate()
        app.wait(30)


def test_review_in_a_browser_and_the_labels_flow_back(browser, served, spark, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    settings, run, url, start_s, log = served
    assert f"backforth review: {url}" in log.read_text()  # the CLI printed the URL
    began = time.monotonic()
    browser.get(url)
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.pair-row")
    list_s = time.monotonic() - began
    assert len(rows) >= 3
    word = max(rows[0].find_elements(By.TAG_NAME, "td")[-1].text.split()[2:], key=len).strip("?")
    Select(browser.find_element(By.NAME, "kind")).select_by_visible_text("rewrite")
    browser.find_element(By.ID, "q").send_keys(word)
    browser.find_element(By.ID, "apply").click()
    filtered = browser.find_elements(By.CSS_SELECTOR, "tr.pair-row")
    assert 1 <= len(filtered) <= len(rows)
    assert all(word.lower() in r.find_elements(By.TAG_NAME, "td")[-1].text.lower() for r in filtered)

    filtered[0].find_element(By.CSS_SELECTOR, "a.open").click()  # every document carries the payload
    document = browser.find_element(By.ID, "document").text
    assert PAYLOAD in document  # shown as text ...
    assert browser.execute_script("return window.injected === undefined")  # ... never run
    assert not browser.find_elements(By.CSS_SELECTOR, "#document script")
    rejected_url = browser.current_url
    browser.find_element(By.ID, "label-reject").click()
    Select(browser.find_element(By.ID, "reason")).select_by_value("bad_instruction")
    browser.find_element(By.ID, "note").send_keys("asks about the page, not the topic")
    browser.find_element(By.ID, "save").click()
    assert browser.find_element(By.ID, "current-label").text == "reject: bad_instruction"
    assert "browser-test" in browser.find_element(By.ID, "history").text
    screenshot = tmp_path / "review.png"  # the pair page, just labelled: the README's picture
    browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("BACKFORTH_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["BACKFORTH_SCREENSHOT"])

    browser.get(url)
    other = next(a for a in browser.find_elements(By.CSS_SELECTOR, "a.open")
                 if a.get_attribute("href") != rejected_url)  # fmt: skip
    other.click()
    edited_url = browser.current_url
    response = browser.find_element(By.ID, "edit-response")
    response.clear()
    response.send_keys("An answer a person rewrote by hand in the review app.")
    browser.find_element(By.ID, "label-edit").click()
    browser.find_element(By.ID, "save").click()
    assert browser.find_element(By.ID, "current-label").text == "edit"
    browser.get(url + "?label=reject")
    assert [r.find_element(By.CSS_SELECTOR, "a.open").get_attribute("href")
            for r in browser.find_elements(By.CSS_SELECTOR, "tr.pair-row")] == [rejected_url]  # fmt: skip
    print(f"review app: started in {start_s:.1f} s, list page {list_s:.2f} s")

    from deltalake import DeltaTable

    reviews = DeltaTable(str(review_table.local_path(settings))).to_pyarrow_table().to_pylist()
    assert sorted(r["label"] for r in reviews) == ["edit", "reject"]
    reject = next(r for r in reviews if r["label"] == "reject")
    edit = next(r for r in reviews if r["label"] == "edit")
    assert re.search(r"/pair/([^/]+)/", rejected_url).group(1) == reject["doc_id"]
    assert reject["reason"] == "bad_instruction"
    assert reject["reviewer"] == "browser-test" and reject["note"] == "asks about the page, not the topic"
    assert edit["response"] == "An answer a person rewrote by hand in the review app." and edit["instruction"] is None
    assert re.search(r"/pair/([^/]+)/", edited_url).group(1) == edit["doc_id"]

    schema = settings.tables.schema
    assert run("filter", FilterConfig(**FILTER_TOP_HALF))["human_reject"] == 1
    dropped = spark.table(f"{schema}.pairs_filtered").where("drop_reason = 'human_reject'").first()
    assert dropped["doc_id"] == reject["doc_id"]
    assert run("export", ExportConfig(seed=SeedMix(include=False)))["dropped.human_reject"] == 1
    exported = {r["doc_id"]: r for r in spark.table(f"{schema}.sft_pairs").where("drop_reason IS NULL").collect()}
    assert reject["doc_id"] not in exported
    assert exported[edit["doc_id"]]["response"] == edit["response"]
