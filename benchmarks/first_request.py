"""The first page request after start-up vs the ones after it (the app warms every voice up before it
says "serving on"): the engine's time to first audio and RTF as the page's status line reports them.

    python benchmarks/first_request.py [--repeat 4]
"""

import argparse
import json
import re
import statistics
import urllib.request

from _serve import start_app

TEXT = "今天天气很好，我们一起去公园散步吧。"


def page_request(client, voice):
    """(time to first audio in ms, RTF) of one /synthesize request, read from the status line."""
    *_, status = client.predict(TEXT, voice, "neutral", None, 1.0, 0.0, 1.0, api_name="/synthesize")
    ttfa = float(re.search(r"\*\*首音\*\* (\d+) ms", status).group(1))
    rtf = float(re.search(r"\*\*RTF\*\* ([\d.]+)", status).group(1))
    return ttfa, rtf


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=4, help="warm requests after the first")
    args = parser.parse_args()
    from gradio_client import Client

    url, _, log = start_app()
    warm_up = [line for line in log.read_text().splitlines() if line.startswith("warmed up")]
    print(f"app: {url}; {'; '.join(warm_up) or 'no warm-up line in the log'}")
    client = Client(url, verbose=False)
    with urllib.request.urlopen(url + "/v1/voices") as r:
        voice = json.load(r)["default"]
    first = page_request(client, voice)
    later = [page_request(client, voice) for _ in range(args.repeat)]
    warm_ttfa = statistics.median(t for t, _ in later)
    print(f"first request: TTFA {first[0]:.0f} ms, RTF {first[1]:.3f}")
    print(f"next {args.repeat}:      TTFA {', '.join(f'{t:.0f}' for t, _ in later)} ms (median {warm_ttfa:.0f}),"
          f" RTF {', '.join(f'{r:.3f}' for _, r in later)}")
    print(f"first / warm TTFA = {first[0] / warm_ttfa:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
