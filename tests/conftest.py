"""Shared fixtures: one local Spark + Delta session per test run, a fresh schema per test, a headless browser."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from backforth.config import Settings, TablesConfig


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's data folder: metastore, warehouse and MLflow store of the test run."""
    return tmp_path_factory.mktemp("backforth-data")


@pytest.fixture(scope="session")
def spark(data_dir: Path):
    """One Delta-enabled local session for the whole run (starting Spark costs ~10 s)."""
    from backforth.spark import build_local_session

    session = build_local_session(Settings(data_dir=str(data_dir)))
    yield session
    session.stop()


def new_schema() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_settings(data_dir: Path):
    """Settings in a schema of their own, so tests never see each other's tables."""
    schema = new_schema()
    return lambda job_cfg=None: Settings(data_dir=str(data_dir), tables=TablesConfig(schema=schema), job=job_cfg)


@pytest.fixture(scope="session")
def new_settings(data_dir: Path):
    """``new_settings(job_cfg)``: settings in a new schema on every call, for fixtures shared by several tests."""
    return lambda job_cfg=None: Settings(data_dir=str(data_dir), tables=TablesConfig(schema=new_schema()), job=job_cfg)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with the embedded model's real tokenizer (no download)."""
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    from backforth.models import EMBEDDED, resolve_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer_dir = Path(resolve_tokenizer(EMBEDDED))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, folder / name)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        tie_word_embeddings=True,
    )  # fmt: skip
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


# The distribution's Chromium and its matching driver (Debian: chromium, chromium-driver; `make test` installs them).
# Both paths are given explicitly, so Selenium Manager never looks for, or downloads, a browser or a driver.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """One headless Chromium (a Selenium ``webdriver.Chrome``) for the whole run, quit at its end.

    Window 1280x900; tests navigate it themselves (``browser.get(url)``) and share it, so none should rely on the page,
    cookies or storage another left behind. The driver's log is in the session's temp folder (``chromedriver*/``).
    Without the browser, its driver or selenium the tests using it skip, except under CI=true, where they fail: there
    `make test` has installed the browser.
    """
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package (dev extra)")
    if missing:
        why = f"headless browser unavailable, missing: {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}. `make test` installs chromium and chromium-driver when run as root with apt-get.")
        pytest.skip(f"{why} (`make test` installs them as root; or: sudo apt-get install chromium chromium-driver)")

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager, were it ever reached, stays off the network
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, log_output=str(log)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
