"""Streamed audio encodings for the HTTP API: float32 chunks in, bytes out as soon as they exist.

wav and pcm are written here (a WAV header whose sizes say "unknown", as streaming servers send it;
soundfile and ffmpeg read such files to their end). mp3, flac and opus go through one ffmpeg process
per request, fed from a thread so encoding and synthesis overlap.
"""

import shutil
import struct
import subprocess
import threading

import numpy as np

# format -> (media type, ffmpeg output arguments or None when we write it ourselves)
FORMATS = {
    "wav": ("audio/wav", None),
    "pcm": ("audio/L16", None),  # raw signed 16-bit little-endian mono; the rate is in X-Sample-Rate
    "mp3": ("audio/mpeg", ["-f", "mp3", "-c:a", "libmp3lame", "-b:a", "64k"]),
    "flac": ("audio/flac", ["-f", "flac", "-c:a", "flac"]),
    # libopus takes 8/12/16/24/48 kHz only, so opus output is resampled to 48 kHz
    "opus": ("audio/ogg", ["-f", "ogg", "-c:a", "libopus", "-b:a", "32k", "-ar", "48000", "-page_duration", "200000"]),
}
UNKNOWN_SIZE = 0xFFFFFFFF


class EncodeError(RuntimeError):
    pass


def check_format(name):
    """The format name, or ValueError listing the valid ones (and saying when ffmpeg is missing)."""
    if name not in FORMATS:
        raise ValueError(f"unknown response_format {name!r}; valid formats: {', '.join(FORMATS)}")
    if FORMATS[name][1] is not None and shutil.which("ffmpeg") is None:
        raise ValueError(f"response_format {name!r} needs ffmpeg, which is not installed; use wav or pcm")
    return name


def pcm16(chunk):
    return (np.clip(chunk, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def wav_header(sample_rate, data_bytes=UNKNOWN_SIZE):
    riff = UNKNOWN_SIZE if data_bytes == UNKNOWN_SIZE else 36 + data_bytes
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)  # PCM, mono, 16-bit
    return b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", data_bytes)


def encode(chunks, sample_rate, name):
    """Iterator of encoded bytes for the float32 `chunks` (closing it stops the synthesis too)."""
    if name == "wav":
        return _raw(chunks, header=wav_header(sample_rate))
    if name == "pcm":
        return _raw(chunks, header=b"")
    return _ffmpeg(chunks, sample_rate, FORMATS[name][1])


def _raw(chunks, header):
    try:
        if header:
            yield header
        for chunk in chunks:
            yield pcm16(chunk)
    finally:
        _close(chunks)


def _ffmpeg(chunks, sample_rate, output_args):
    # No probing of the input: its format is given, and ffmpeg's default probe would first wait for
    # ~1.5 s of audio (measured), which is the time to first sound of every encoded stream. (Not
    # `-fflags +nobuffer`: it dropped the first 40 ms of every response and gained no latency.)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-probesize", "32", "-analyzeduration", "0",
           "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
           *output_args, "-flush_packets", "1", "pipe:1"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failure = []
    stop = threading.Event()

    def feed():
        # Synthesis runs here; the chunks are closed in this thread, the one that iterates them.
        try:
            for chunk in chunks:
                if stop.is_set():
                    break
                proc.stdin.write(pcm16(chunk))
                proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # ffmpeg was stopped because the client went away
        except BaseException as err:  # noqa: BLE001 - handed to the reading side, which raises it
            failure.append(err)
        finally:
            _close(chunks)
            try:
                proc.stdin.close()
            except OSError:
                pass

    feeder = threading.Thread(target=feed, name="ffmpeg-feed", daemon=True)
    feeder.start()
    try:
        while data := proc.stdout.read1(1 << 16):
            yield data
        feeder.join()
        if failure:
            raise failure[0]
        if proc.wait() != 0:
            raise EncodeError(f"ffmpeg failed: {proc.stderr.read().decode('utf-8', 'replace').strip()[-500:]}")
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
        feeder.join()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _close(chunks):
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
