"""The headless browser works end to end: it loads a page from a server on 127.0.0.1, reads it through the DOM (an
HTML-escaped script stays text), submits a form the server receives, and takes a screenshot.

The groundwork for the review app's browser tests; the server here is a stdlib one, no app involved.
"""

from __future__ import annotations

import html
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

PAYLOAD = "<script>window.injected = true</script>"
SUBMITTED = "héllo & <b>world</b>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>smoke</title></head>
<body>
<h1>Browser smoke test</h1>
<p id="payload">{html.escape(PAYLOAD)}</p>
<form id="form" method="get" action="/submit">
  <input id="q" name="q" type="text">
  <button id="send" type="submit">Send</button>
</form>
</body></html>
"""


@pytest.fixture
def site() -> Iterator[tuple[str, queue.Queue[str]]]:
    """A server on 127.0.0.1 (a free port): ``/`` is the page, ``/submit?q=…`` puts ``q`` on the queue."""
    received: queue.Queue[str] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/":
                body = PAGE
            elif url.path == "/submit":
                value = parse_qs(url.query).get("q", [""])[0]
                received.put(value)
                body = f'<!doctype html><meta charset="utf-8"><p id="received">{html.escape(value)}</p>'
            else:
                self.send_error(404)
                return
            data = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_browser_reads_submits_and_screenshots(browser, site, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, received = site
    browser.get(f"{base}/")
    assert browser.title == "smoke"
    # The escaped payload is text in the DOM, not markup: no script element, nothing ran.
    assert browser.find_element(By.ID, "payload").text == PAYLOAD
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.execute_script("return window.injected === undefined") is True

    field = browser.find_element(By.ID, "q")
    field.send_keys(SUBMITTED)
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "received")))
    assert received.get(timeout=5) == SUBMITTED
    assert browser.find_element(By.ID, "received").text == SUBMITTED
    assert urlsplit(browser.current_url).path == "/submit"

    shot = tmp_path / "smoke.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
