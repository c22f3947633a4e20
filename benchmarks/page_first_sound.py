"""The page as a person uses it: in a real headless Chromium, the time from the click on 合成 to the streamed
<audio> element playing (its time advancing), for the bundled voice.

    python benchmarks/page_first_sound.py [--clicks 5]

A fresh app (bundled voice, cpu profile, as the tests start it); the text is typed once; the first click
pays for the page's cold starts (its HLS player, Gradio's encoder), so it is shown apart from the warm
ones. Needs /usr/bin/chromium (or SAMBERT_CHROMIUM) and playwright (requirements-dev.txt).
"""

import argparse
import statistics

from _serve import start_app
from test_browser import ARGS, CHROMIUM, TEXT, open_page, speak_and_wait_for_sound  # the tests' own page driver


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    url, _, _ = start_app()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = open_page(browser, url)
        page.locator("#text textarea").fill(TEXT)
        seconds = [speak_and_wait_for_sound(page) for _ in range(args.clicks)]
        browser.close()
    warm = seconds[1:]
    print(f"{len(TEXT)} characters; click -> sound: first {seconds[0] * 1000:.0f} ms; warm "
          + (f"median {statistics.median(warm) * 1000:.0f} ms (min {min(warm) * 1000:.0f}, max {max(warm) * 1000:.0f})"
             if warm else "-"))


if __name__ == "__main__":
    main()
