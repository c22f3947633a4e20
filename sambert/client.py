"""A small client for the app's WebSocket speech API: text goes in as it comes (an LLM's tokens, lines
of a pipe), audio and word timings come back while the rest is still being written.

    python -m sambert speak --server http://127.0.0.1:7860 "今天天气很好。" -o out.wav
    my_llm_script | python -m sambert speak --server http://127.0.0.1:7860 -o out.wav --timestamps
    ... | python -m sambert speak --server URL -o - | aplay -q -f S16_LE -c 1 -r 24000   # plays it (the default voice)

    from sambert.client import speak
    for message in speak("http://127.0.0.1:7860", ["今天天气", "很好。"]):
        ...   # bytes: 16-bit mono pcm; dict: the server's JSON messages (ready, timestamps, segment, done)
"""

import base64
import json
import ssl
import sys
import threading

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

PATH = "/v1/audio/speech/ws"


class SpeakError(RuntimeError):
    """The server refused or ended the session with an error (its message and close code)."""


def ws_url(server):
    """http(s)://host:port[/] -> ws(s)://host:port/v1/audio/speech/ws"""
    server = server.rstrip("/")
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if server.startswith(plain):
            return secure + server[len(plain):] + PATH
    if server.startswith(("ws://", "wss://")):
        return server if server.endswith(PATH) else server + PATH
    raise ValueError(f"server {server!r}: give an http://, https://, ws:// or wss:// address")


def speak(server, pieces, auth=None, token=None, cafile=None, **config):
    """Stream `pieces` (an iterable of text, read as it yields) to the server; yields what comes back as
    it comes: bytes of audio and dicts of the server's messages, until "done". `config`: voice,
    emotion, speed, pitch, volume, timestamp_granularities (response_format is pcm). `auth` is
    "user:password" (basic), `token` a Bearer password; `cafile` a CA to trust (Caddy's local CA)."""
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    url = ws_url(server)
    context = ssl.create_default_context(cafile=cafile) if url.startswith("wss://") else None
    with connect(url, additional_headers=headers, ssl=context, open_timeout=30, max_size=None) as ws:
        ws.send(json.dumps({"type": "config", **{k: v for k, v in config.items() if v is not None}}))
        sender = threading.Thread(target=_send_text, args=(ws, pieces), name="speak-send", daemon=True)
        started = False
        try:
            for message in ws:
                if isinstance(message, bytes):
                    yield message
                    continue
                message = json.loads(message)
                if message["type"] == "error":
                    raise SpeakError(f"{message['message']} (close code {message['code']})")
                if message["type"] == "ready" and not started:
                    sender.start()  # text goes out only once the configuration is accepted
                    started = True
                yield message
        except ConnectionClosed as closed:
            raise SpeakError(f"the connection closed: {closed}") from None
        if ws.close_code != 1000:
            raise SpeakError(f"the server closed with code {ws.close_code}: {ws.close_reason}")


def _send_text(ws, pieces):
    try:
        for piece in pieces:
            if piece:
                ws.send(json.dumps({"type": "text", "text": piece}, ensure_ascii=False))
        ws.send(json.dumps({"type": "end"}))
    except ConnectionClosed:
        pass  # the server ended the session; the receiving side reports why


def speak_to_file(server, pieces, output, timestamps=None, **options):
    """What `python -m sambert speak` does: `output` is a WAV file, or "-" for raw pcm on stdout (written
    as it arrives); each word's timing is printed to the `timestamps` stream when given."""
    import soundfile

    wav = None
    try:
        for message in speak(server, pieces, **options):
            if isinstance(message, bytes):
                if output == "-":
                    sys.stdout.buffer.write(message)
                    sys.stdout.buffer.flush()
                else:
                    wav.buffer_write(message, dtype="int16")
            elif message["type"] == "ready" and output != "-":
                wav = soundfile.SoundFile(output, "w", message["sample_rate"], 1, "PCM_16")
            elif message["type"] == "speech.timestamps" and timestamps is not None:
                for word in message.get("words", []):
                    print(f"{word['start']:8.3f} {word['end']:8.3f}  {word['text']}", file=timestamps, flush=True)
    finally:
        if wav is not None:
            wav.close()


def pieces_of(stream):
    """The text of a binary stream (stdin's buffer) in pieces, each as soon as the bytes are there: what a
    pipe from a program printing tokens gives, without waiting for whole lines."""
    import codecs
    import os

    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while data := os.read(stream.fileno(), 4096):
        yield decoder.decode(data)
    yield decoder.decode(b"", final=True)
