"""The console in a real browser (headless Chromium through Selenium) against the real daemon: log in,
find an account, see its emails and why, preview an email, open the task queue. Skipped, with the
reason, when no browser is installed; `.ci/run` installs one."""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, edit_config
from console_helpers import OPERATOR, make_project
from smtp_server import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("no headless browser: apt-get install chromium chromium-driver", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The daemon with the console on a listener of its own; yields (console URL, unsubscribe URL)."""
    project = make_project(tmp_path_factory.mktemp("browser"), accounts=40)
    http_port, console_port = free_port(), free_port()
    edit_config(project, http={"listen": f"127.0.0.1:{http_port}"},
                console={"enabled": True, "listen": f"127.0.0.1:{console_port}"},
                logging={"format": "json", "level": "info"}, delivery={"transport": "file"})
    daemon = Daemon(project)
    try:
        daemon.wait_for("start", lambda: "started" in daemon.messages(), timeout=120)
        yield f"http://127.0.0.1:{console_port}", f"http://127.0.0.1:{http_port}"
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_console_is_only_on_its_own_listener(console: tuple[str, str]) -> None:
    own, public = console
    assert status(f"{own}/console/login") == 200
    assert status(f"{public}/console/login") == 404
    assert status(f"{public}/healthz") == 200


def test_a_csm_logs_in_finds_an_account_previews_its_email_and_opens_the_tasks(
        console: tuple[str, str], browser: Any) -> None:
    driver: Any = browser
    own, _ = console
    wait = WebDriverWait(driver, 30)
    driver.get(f"{own}/console/accounts")
    assert "/console/login" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys(OPERATOR[0])
    driver.find_element(By.NAME, "password").send_keys(OPERATOR[1])
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait.until(ec.presence_of_element_located((By.NAME, "q")))
    assert "Accounts" in driver.find_element(By.TAG_NAME, "h1").text

    first = driver.find_element(By.CSS_SELECTOR, "#accounts tbody tr td a")
    account = first.text
    driver.find_element(By.NAME, "q").send_keys(account)
    driver.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait.until(ec.url_contains("q="))
    wait.until(ec.element_to_be_clickable((By.LINK_TEXT, account))).click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "dd.account-id")))
    page = driver.find_element(By.TAG_NAME, "body").text
    assert driver.find_element(By.CSS_SELECTOR, "dd.account-id").text == account
    assert driver.find_element(By.CSS_SELECTOR, "dd.segment").text in (
        "high_touch", "low_touch", "tech_touch")
    assert "Enrollments" in page and "Emails sent" in page and "Timeline" in page and "Coming next" in page

    driver.find_element(By.LINK_TEXT, "login_nudge").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "dd.subject")))
    subject = driver.find_element(By.CSS_SELECTOR, "dd.subject").text
    assert subject and "{{" not in subject
    assert "unsubscribe" in driver.find_element(By.CSS_SELECTOR, "pre.email-text").text.lower()
    frame = driver.find_element(By.CSS_SELECTOR, "iframe.email")
    driver.switch_to.frame(frame)
    assert driver.find_element(By.TAG_NAME, "body").text.strip()
    driver.switch_to.default_content()

    driver.find_element(By.LINK_TEXT, "Tasks").click()
    wait.until(ec.presence_of_element_located((By.ID, "tasks")))
    assert "By assignee" in driver.find_element(By.TAG_NAME, "body").text
    boxes = driver.find_elements(By.CSS_SELECTOR, "#tasks input[type=checkbox]")
    assert boxes, "the demo cycle created tasks"
    task = boxes[0].get_attribute("value")
    boxes[0].click()
    driver.find_element(By.CSS_SELECTOR, "#task-actions button[value=done]").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), f"task {task}: open -> done"))
    shown = [box.get_attribute("value") for box in driver.find_elements(By.CSS_SELECTOR, "#tasks input[type=checkbox]")]
    assert task not in shown, "a task done leaves the open queue"
