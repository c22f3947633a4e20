"""A real headless Chromium uses the page: types Chinese text, picks a voice, clicks, and the streamed
audio element plays. Prints the browser's time to first sound; keeps a screenshot in artifacts/."""

import json
import os
import shutil
import time
import urllib.request

import pytest

from conftest_app import ARTIFACTS, app_server  # noqa: F401

CHROMIUM = os.environ.get("SAMBERT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
TEXT = "欢迎使用语音合成服务。今天天气很好，我们一起去公园散步吧。"

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt install chromium)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page.console_lines = []  # the page's console, shown when a test fails
    page.on("console", lambda message: page.console_lines.append(f"{message.type}: {message.text[:300]}"))
    page.goto(url, wait_until="networkidle", timeout=60_000)
    return page


@pytest.fixture
def page(browser, app_server):  # noqa: F811
    page = open_page(browser, app_server.url)
    yield page
    page.close()


def test_typed_chinese_text_is_spoken_by_the_page(page, app_server):  # noqa: F811
    voice = app_server.voices[0]
    expect = pytest.importorskip("playwright.sync_api").expect
    page.locator("#text textarea").press_sequentially(TEXT)  # typed, as a user would (input events)
    expect(page.locator("#counter")).to_contain_text(f"{len(TEXT)} /")
    page.locator("#voice input").click()
    page.get_by_role("option", name=voice["display_name"]).click()
    assert page.locator("#voice input").input_value() == voice["display_name"]

    # The first click pays for cold starts (the page's HLS player, Gradio's encoder); the second is what a
    # user hears from then on. Both must play; both times are printed.
    first_playlists = {}  # stream -> the first playlist the page got for it

    def keep_first_playlist(response):
        if "playlist.m3u8" in response.url:
            first_playlists.setdefault(response.url.split("?")[0], response.text())

    page.on("response", keep_first_playlist)
    try:
        first_sounds = [speak_and_wait_for_sound(page) for _ in range(2)]
    except Exception as err:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_failed.png"), full_page=True)
        console = "\n".join(page.console_lines[-20:])
        raise AssertionError(f"{err}\n--- page console:\n{console}\n--- server log:\n"
                             f"{app_server.log.read_text()[-3000:]}") from err
    print(f"\nbrowser time to first sound (click -> <audio> playing): first {first_sounds[0] * 1000:.0f} ms, "
          f"then {first_sounds[1] * 1000:.0f} ms")
    assert "首音" in page.locator("#status").inner_text()
    # hls.js asks for a playlist as soon as a stream opens and, when it is empty, again only a second later
    # (the page was silent for that second): the stream opens with audio in it
    assert len(first_playlists) == 2 and all("#EXTINF" in text for text in first_playlists.values()), first_playlists
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_speak.png"), full_page=True)


def test_closing_the_page_mid_stream_frees_the_slot(browser, app_server):  # noqa: F811
    page = open_page(browser, app_server.url)
    page.locator("#text textarea").fill("今天天气很好，我们一起去公园散步。" * 200)  # minutes of speech
    speak_and_wait_for_sound(page, wait_for_end=False)
    assert health(app_server)["running"] == 1
    page.close()
    deadline = time.monotonic() + 30
    while health(app_server)["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert health(app_server)["running"] == 0, "the closed page's synthesis still holds its slot"


def health(server):
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
        return json.load(r)


def speak_and_wait_for_sound(page, wait_for_end=True):
    """Click 合成, wait until the streamed <audio> element plays, then for the end; returns the seconds to sound."""
    clicked = time.perf_counter()
    page.locator("#speak").click()
    # Playing: time advances on the element that streams the synthesis.
    page.wait_for_function("""() => {
        const a = document.querySelector('#stream audio');
        return a && !a.paused && a.currentTime > 0.05;
    }""", timeout=60_000, polling=20)
    first_sound = time.perf_counter() - clicked
    state = page.locator("#stream audio").evaluate("a => ({paused: a.paused, error: a.error && a.error.code})")
    assert state["error"] is None and not state["paused"]
    if not wait_for_end:
        return first_sound
    # The first audio came with the status "合成中…"; the complete WAV and the figures come at the end.
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('RTF')", timeout=120_000)
    page.locator("#stream audio").evaluate("a => a.pause()")
    return first_sound
