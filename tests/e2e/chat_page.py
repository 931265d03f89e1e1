"""Driving `paddle-qwenvl webui` in headless Chromium (Selenium + Debian's chromium-driver):
the page process, the browser, and a ChatPage that does what a user does on the page."""
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 300                     # seconds a step may take on a busy machine (not a timing assertion)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command, url: str, env: dict) -> subprocess.Popen:
    """Starts `command` and waits until `url` answers 200."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + WAIT
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{command[3]} exited: {proc.stdout.read()}")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return proc
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    proc.terminate()
    pytest.fail(f"{url} did not come up within {WAIT} s")


def webui_command(*args) -> list:
    return [sys.executable, "-m", "paddle_qwenvl.cli", "webui", *map(str, args)]


def serve_command(*args) -> list:
    return [sys.executable, "-m", "paddle_qwenvl.cli", "serve", *map(str, args)]


def chromium():
    """Headless Chromium that cannot resolve any host but 127.0.0.1: the page must work offline."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class ChatPage:
    """The page as a user sees it: element ids are the page's elem_id values."""

    def __init__(self, driver, url: str):
        from selenium.webdriver.support.ui import WebDriverWait
        self.driver, self.url = driver, url
        self.wait = WebDriverWait(driver, WAIT)
        driver.get(url)
        self.wait.until(lambda d: d.find_elements(*self._css("#message textarea")))

    @staticmethod
    def _css(selector):
        from selenium.webdriver.common.by import By
        return By.CSS_SELECTOR, selector

    def find(self, selector):
        return self.driver.find_element(*self._css(selector))

    def find_all(self, selector):
        return self.driver.find_elements(*self._css(selector))

    def resources(self) -> list:
        """Every URL the page has loaded."""
        return self.driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")

    def set_number(self, elem_id: str, value) -> None:
        """Types `value` into a slider's or number box's number field."""
        from selenium.webdriver.common.keys import Keys
        field = self.find(f"#{elem_id} input[type=number]")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(str(value), Keys.TAB)
        self.wait.until(lambda d: field.get_attribute("value") == str(value))

    def attach(self, *paths) -> None:
        """Uploads files into the message box and waits for their previews."""
        before = len(self.find_all("#message .thumbnail-item"))
        field = self.find("#message input[type=file]")
        self.driver.execute_script("arguments[0].value = ''", field)   # chromedriver adds to what it holds
        field.send_keys("\n".join(map(str, paths)))
        self.wait.until(lambda d: len(self.find_all("#message .thumbnail-item")) == before + len(paths))

    def ask(self, question: str) -> None:
        from selenium.webdriver.common.keys import Keys
        box = self.find("#message textarea")
        box.send_keys(question)
        box.send_keys(Keys.ENTER)

    def texts(self, selector: str) -> list:
        """The text of every element `selector` matches, read in one go (the page re-renders as it streams)."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)", selector)

    def text(self, selector: str) -> str:
        found = self.texts(selector)
        return found[0].strip() if found else ""

    def answers(self) -> list:
        """The assistant's messages, as text."""
        return self.texts("#chat [data-testid=bot] .message-content")

    def wait_for(self, condition, what: str):
        from selenium.common.exceptions import TimeoutException
        try:
            return self.wait.until(lambda d: condition())
        except TimeoutException:
            pytest.fail(f"the page did not show {what} within {WAIT} s; it shows: stats {self.text('#stats')!r}, "
                        f"error {self.text('#error')!r}, answers {self.answers()!r}")

    def wait_for_answer(self, count: int) -> str:
        """The count-th answer, once its stats line shows it is complete."""
        self.wait_for(lambda: len(self.answers()) == count and "generated" in self.text("#stats"),
                      f"answer {count} with its stats")
        return self.answers()[-1]
