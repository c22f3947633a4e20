"""The app servers for the serving tests: each started once per test session, in a subprocess, on a free port.

Import a fixture in a test module (`from conftest_app import app_server  # noqa: F401`); every module
gets the same process. `app_server` serves a ModelScope-layout directory built from the small KAN-TTS
reference fixture (random weights: noise-like, never silent; on the CPU it synthesizes some 25 times faster
than the bundled voice, which is what keeps the serving tests short), else the bundled default voice, else
the tests are skipped. SAMBERT_TEST_MODEL_DIR picks a model directory explicitly.

`locked_server` is the app as it ships (the bundled default voice, no --model-dir, where one is installed)
with a login, a per-client rate limit, a short WebSocket idle limit and 16 waiting: the login, share, rate
and admission tests, and the bundled voice served end to end.

`fixture_voices_server` is a process serving two fixture voices (FIXTURE_VOICES) that have the
eight trained emotions of the *_emo voices and differ from each other, for what the bundled voice (one
voice, neutral only) cannot show: emotions through the serving stack, and requests for different voices
running together without crossing. It admits several requests at once, as a GPU profile does.
"""

import atexit
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "kantts_16k_small.pt"
ARTIFACTS = ROOT / "artifacts"
START_TIMEOUT = 240

# name -> AppServer: one process per test session, however many modules import its fixture (pytest makes
# a fixture imported into several modules one fixture per module); each is stopped at exit (start_server).
_shared = {}


@dataclass
class AppServer:
    url: str
    port: int
    voices: list  # /v1/voices "data"
    log: Path
    process: subprocess.Popen


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Two voices from the fixture's weights; the second speaks ~40% slower (duration predictor bias), so a
# response that went to the wrong voice has the wrong length and samples.
FIXTURE_VOICES = {"zhitian_emo": 0.0, "zhibei_emo": 0.4}  # name -> log-duration bias added


def build_fixture_voice(root, voices=("zhitian_emo",)):
    """A ModelScope directory with the reference fixture's weights (configs as ModelScope ships), one voice
    per name in `voices`; names in FIXTURE_VOICES get their duration bias."""
    import torch
    import yaml

    ref = torch.load(FIXTURE, weights_only=False)
    vocab = ("sy", "tone", "syllable_flag", "word_segment", "emotion", "speaker")
    params = {k: v for k, v in ref["sambert_params"].items() if k not in vocab}
    for name in voices:
        voice = root / "voices" / name
        for sub in ("am/ckpt", "voc/ckpt"):
            (voice / sub).mkdir(parents=True)
        (voice / "am" / "config.yaml").write_text(yaml.safe_dump(
            {"Model": {"KanTtsSAMBERT": {"params": params}}, "linguistic_unit": ref["linguistic_unit"]}))
        vocoder = {"Model": {"Generator": {"params": ref["hifigan_params"]}}}
        (voice / "voc" / "config.yaml").write_text(yaml.safe_dump(vocoder))
        (voice / "audio_config.yaml").write_text(yaml.safe_dump({"audio_config": {
            "sampling_rate": 16000, "hop_length": 200, "win_length": 1000, "n_fft": 2048, "n_mels": 80,
            "fmin": 0, "fmax": 8000, "norm_type": "mean_std"}}))
        acoustic = dict(ref["sambert_state_dict"])
        bias = "variance_adaptor.duration_predictor.fc.bias"
        acoustic[bias] = acoustic[bias] + FIXTURE_VOICES.get(name, 0.0)
        torch.save({"model": acoustic}, voice / "am" / "ckpt" / "checkpoint_1.pth")
        torch.save({"model": {"generator": ref["hifigan_state_dict"]}}, voice / "voc" / "ckpt" / "checkpoint_1.pth")
    (root / "voices" / "voices.json").write_text(json.dumps({"voices": list(voices)}))
    return root


def _model_dir_args(workdir, bundled):
    if os.environ.get("SAMBERT_TEST_MODEL_DIR"):
        return ["--model-dir", os.environ["SAMBERT_TEST_MODEL_DIR"]]
    has_bundled = any((ROOT / "assets" / "voices").glob("*/voice.yaml"))
    if FIXTURE.is_file() and not (bundled and has_bundled):
        return ["--model-dir", str(build_fixture_voice(workdir / "model"))]
    if has_bundled:
        return []  # the bundled default voice
    pytest.skip("no voice to serve: no bundled voice in assets/voices and no ../shared/fixtures")


def start_server(extra_env=None, extra_args=(), model_dir=None, bundled=False):
    """A fresh app server process (stop it with stop_server); the session fixtures share theirs.
    `model_dir` serves that directory, `bundled` the bundled voice where one is installed, instead of the
    default choice (see the module's docstring)."""
    workdir = Path(tempfile.mkdtemp(prefix="sambert-app-test-"))
    port = free_port()
    env = dict(os.environ, GRADIO_TEMP_DIR=str(workdir / "gradio"), GRADIO_ANALYTICS_ENABLED="False",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("SAMBERT_AUTH", None)
    env.pop("SAMBERT_MODEL_DIR", None)
    env.setdefault("SAMBERT_PROFILE", "cpu")
    # One request synthesizes at a time unless a test asks for more, so the queue and slot tests know
    # which request waits (the cpu profile itself allows 4).
    env.setdefault("SAMBERT_MAX_CONCURRENT_REQUESTS", "1")
    env.update(extra_env or {})
    auth = env.get("SAMBERT_AUTH")
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    log = workdir / "server.log"
    cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port), "--max-queue", "4",
           *(["--model-dir", str(model_dir)] if model_dir else _model_dir_args(workdir, bundled)), *extra_args]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    atexit.register(stop_server, process)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/v1/voices", headers=headers), timeout=5) as r:
                voices = json.load(r)["data"]
            # Gradio's routes come up with the app; make sure the page answers too.
            with urllib.request.urlopen(url + "/", timeout=5):
                pass
            return AppServer(url, port, voices, log, process)
        except OSError:
            time.sleep(0.5)
    stop_server(process)
    pytest.fail(f"app server did not answer within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def ffmpeg_exe():
    """The ffmpeg the app encodes with (the system's, else the bundled build; see sambert/server/ffmpeg.py),
    which the serving tests decode with too; None when there is none."""
    from sambert.server.ffmpeg import ensure_ffmpeg

    return ensure_ffmpeg()


@dataclass
class Decoded:
    samples: np.ndarray  # int16, mono
    rate: int
    container: str  # as ffmpeg's demuxer names it: wav, mp3, ogg, flac
    codec: str  # pcm_s16le, mp3, opus, flac


def ffmpeg_decode(data):
    """Any encoded audio decoded by ffmpeg at its own rate, with the container and codec that ffmpeg
    found in it (read from its input report, which is what ffprobe prints too). Fails unless mono."""
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", "pipe:0", "-f", "s16le", "pipe:1"],
                          input=data, capture_output=True, timeout=60)
    report = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, report[-2000:]
    container = re.search(r"Input #0, (\w+)", report)
    stream = re.search(r"Stream #0:0\S*: Audio: (\w+).*?, (\d+) Hz, ([\w ]+),", report)
    assert container and stream, report
    assert stream[3] in ("mono", "1 channels"), report
    return Decoded(np.frombuffer(done.stdout, "<i2"), int(stream[2]), container[1], stream[1])


# response_format -> (Content-Type, container, codec) as ffmpeg finds them in the response
FORMATS = {"pcm": ("audio/L16", None, None), "wav": ("audio/wav", "wav", "pcm_s16le"),
           "mp3": ("audio/mpeg", "mp3", "mp3"), "flac": ("audio/flac", "flac", "flac"),
           "opus": ("audio/ogg", "ogg", "opus")}
# An MP3 streamed to a pipe carries no gapless-playback tag: decoders (ffmpeg 5.1 and 6.0) return LAME's
# 1105 samples of encoder delay in front and pad the end to a whole frame (576 samples at 16-24 kHz).
MP3_DELAY, MP3_FRAME = 1105, 1152


def assert_decodes_to(data, fmt, expected, rate, steps=0):
    """A `fmt` response body is the audio `expected` (int16 at `rate`): pcm, wav and flac the same samples
    (within `steps` int16 steps), opus (48 kHz) and mp3 (delay and padding above) the same length."""
    if fmt == "pcm":
        decoded = Decoded(np.frombuffer(data, "<i2"), rate, None, None)
    else:
        decoded = ffmpeg_decode(data)
    assert (decoded.container, decoded.codec) == FORMATS[fmt][1:]
    n = len(decoded.samples)
    if fmt == "opus":  # libopus runs at 48 kHz; the Ogg granule positions trim it to the length sent
        assert decoded.rate == 48000 and abs(n - len(expected) * 48000 / rate) <= 1, (n, len(expected))
    elif fmt == "mp3":
        assert decoded.rate == rate and 0 <= n - len(expected) - MP3_DELAY < MP3_FRAME, (n, len(expected))
    else:
        assert decoded.rate == rate and n == len(expected), (n, len(expected))
        assert np.abs(decoded.samples.astype(np.int32) - expected).max() <= steps


def stop_server(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _shared_server(name, start):
    server = _shared.get(name)
    if server is None or server.process.poll() is not None:
        server = _shared[name] = start()
    return server


@pytest.fixture(scope="session")
def app_server():
    return _shared_server("default", start_server)


# The login of locked_server (user, password).
AUTH = ("agent", "s3cret")


@pytest.fixture(scope="session")
def locked_server():
    """The bundled voice behind a login (AUTH), 2 requests a minute per remote client (a local caller is not
    limited), WebSocket connections closed after 2 s idle, 16 requests waiting."""
    return _shared_server("locked", lambda: start_server(
        {"SAMBERT_AUTH": ":".join(AUTH), "SAMBERT_WS_IDLE_SECONDS": "2"},
        ["--max-queue", "16", "--rate-limit", "2/minute"], bundled=True))


@pytest.fixture(scope="session")
def fixture_voices_server():
    """The app serving the FIXTURE_VOICES, 4 requests synthesizing at once and 16 waiting."""
    if not FIXTURE.is_file():
        pytest.skip("the fixture voices need ../shared/fixtures")

    def start():
        model = build_fixture_voice(Path(tempfile.mkdtemp(prefix="sambert-fixture-voices-")), tuple(FIXTURE_VOICES))
        return start_server({"SAMBERT_MAX_CONCURRENT_REQUESTS": "4"}, ["--max-queue", "16"], model_dir=model)

    return _shared_server("fixture voices", start)
