"""Fixtures every test module may use: the reference tensors the original KAN-TTS code produced
(../shared/fixtures, beside the repository; their tests skip when it is absent)."""

from pathlib import Path

import pytest
import torch

from sambert.server.ffmpeg import ensure_ffmpeg

# The tests use ffmpeg the way the app does: the system's, else the build from requirements.txt, on PATH.
ensure_ffmpeg()

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
KANTTS_REFERENCE = FIXTURES / "kantts_16k_small.pt"


@pytest.fixture(scope="module")  # per module: some tests edit its state dicts
def ref():
    """The small KAN-TTS voice's configs, state dicts, inputs and outputs (see ../shared/fixtures/README)."""
    if not KANTTS_REFERENCE.is_file():
        pytest.skip("reference fixtures (../shared/fixtures) not available")
    torch.set_num_threads(1)
    return torch.load(KANTTS_REFERENCE, weights_only=False)
