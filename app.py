"""The web page: type Chinese text, hear it while it is synthesized, download the WAV and subtitles.

    python app.py [--host 127.0.0.1] [--port 7860] [--model-dir DIR] [--profile P]

One process serves the Gradio UI at / and the HTTP API (/v1/audio/speech, /v1/voices, /healthz,
/metrics; see sambert/server/api.py). Host and port also come from GRADIO_SERVER_NAME/PORT, the
voices from SAMBERT_MODEL_DIR, optional login from SAMBERT_AUTH=user:pass, the speech API's per-client
rate limit from SAMBERT_RATE_LIMIT (e.g. 30/minute; off), a server-wide user lexicon (word<TAB>pinyin
lines, read again when the file changes) from --lexicon or SAMBERT_LEXICON.
"""

import argparse
import ctypes
import io
import logging
import os
import tempfile
import time
import wave
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from sambert.frontend import Lexicon, LexiconError, annotated, modes  # noqa: E402
from sambert.server import Service, auth_from_env, ratelimit  # noqa: E402
from sambert.server.ffmpeg import ensure_ffmpeg  # noqa: E402
from sambert.server.limiter import Busy  # noqa: E402
from sambert.server.service import EMOTION_NAMES  # noqa: E402
from sambert.timings import to_srt  # noqa: E402

OUTPUT_DIR = Path(os.environ.get("GRADIO_TEMP_DIR", tempfile.gettempdir())) / "sambert-output"
KEEP_OUTPUT_SECONDS = 3600
# Gradio streams audio as an HLS playlist, one AAC segment per update. Its player (hls.js) fetches the
# playlist as soon as an update opens the stream and, when that playlist is empty, again only a target
# duration (1 s) later. An update without audio (None) opens the stream, and so does a first chunk too
# short for the AAC encoder, just started, to return a frame: either left the page silent for that
# second. So the stream is opened by FIRST_UPDATE_SECONDS of audio (measured with
# benchmarks/page_first_sound.py, warm click to sound: 0.2 s of audio ~0.95 s, 0.4 s 0.5-1.05 s,
# 0.6 s 0.47-0.6 s, 1.0 s 0.66-0.73 s), later updates gather to at least STREAM_SECONDS.
FIRST_UPDATE_SECONDS = 0.6
STREAM_SECONDS = 0.5
NO_FFMPEG_NOTICE = "合成中…（未找到 ffmpeg，无法边合成边播放：合成完成后播放完整音频）"
NO_FFMPEG_NOTICE_DONE = "未找到 ffmpeg：播放的是完整音频（没有边合成边播放）"
READING_HELP = (
    "**纠正读音**：在汉字后用英文括号写带声调数字的拼音，一字一个音节，如 `长(zhang3)大`、`银行(yin2 hang2)`"
    "（可直接复制下方读音、改掉读错的音节）；或以 `<speak>` 开头写 SSML："
    "`<phoneme alphabet=\"pinyin\" ph=\"zhang3\">长</phoneme>`、`<say-as interpret-as=\"digits\">2024</say-as>`、"
    "`<sub alias=\"世界卫生组织\">WHO</sub>`、`<break time=\"300ms\"/>`，以及包住全文的 "
    "`<prosody rate=\"slow\" pitch=\"high\" volume=\"+6dB\">…</prosody>`。常用词写进「本次词典」（每行 `词 拼音`，"
    "只用于本页）或服务器词典（`--lexicon`）。"
    "英文单词：带英文音素的音色（ModelScope 官方音色）按英文读，大写缩写（GDP）逐个字母读；其他音色用中文字母名逐个读。"
    "「数字读法」「英文读法」改变全文的读法（「按英文单词读」只适用于带英文音素的音色）；查看读音和合成都按这些设置。"
)
# The reading modes' page labels, per value of sambert/frontend/modes.py's CHOICES (a new value needs its label).
MODE_NAMES = {
    "numbers": ("数字读法", {"auto": "自动（按上下文）", "digits": "逐位读（2024：二零二四）",
                         "cardinal": "读作数值（2024：两千零二十四）"}),
    "english": ("英文读法", {"auto": "自动（按音色）", "words": "按英文单词读", "letters": "逐个字母读"}),
}
LEXICON_NAME = "本次词典"  # bad lines are reported as 本次词典:<line>: ...
SOURCE_NAMES = {"lexicon": "词典", "inline": "括号拼音", "ssml": "SSML"}
EXAMPLES = [
    "欢迎使用语音合成服务，输入中文文本即可听到自然流畅的朗读。",
    "今天是2024年3月15日，北京气温12℃，空气质量良好。",
    "人工智能正在改变我们的生活：从手机里的语音助手，到路上的自动驾驶汽车。",
]


def build_ui(service, stream_audio=True):
    engine = service.engine
    voices = service.voices()
    limit = engine.profile.max_text_length

    def emotion_choices(voice_name):
        voice = next((v for v in voices if v["name"] == voice_name), voices[0])
        return [(f"{EMOTION_NAMES.get(e, e)} {e}", e) for e in voice["emotions"]]

    def reading_of(numbers, english, lexicon):
        """The page's reading modes and lexicon box as a request's `normalization` and `lexicon`. The
        engine and the frontend check the modes as they check the API's (the same messages, e.g. english
        "words" on a voice without English phones); a bad lexicon line is named by its number."""
        try:
            return {"normalization": {"numbers": numbers, "english": english},
                    "lexicon": Lexicon.from_text(lexicon or "", LEXICON_NAME)}
        except LexiconError as err:
            raise gr.Error(str(err)) from None

    def run(endpoint, text, voice, emotion, reference_audio, speed, pitch, volume, options, progress, stream):
        """Synthesize, writing the WAV as it comes; yields WAV pieces (bytes) when `stream`;
        returns (wav path, srt path, status line). `options`: reading_of()'s."""
        try:
            job = service.open(endpoint, text, voice=voice, emotion=emotion, reference_audio=reference_audio or None,
                               speed=speed, pitch=pitch, volume=volume, **options)
        except Busy as err:
            raise gr.Error(f"服务器繁忙，请稍后再试。{err}") from None
        except ValueError as err:
            raise gr.Error(str(err)) from None
        wav_path = _output_path(".wav")
        expected = max(1, sum(text.count(mark) for mark in "。！？!?；;\n"))  # rough sentence count, for progress
        pending, updates = [], 0
        with job, soundfile.SoundFile(str(wav_path), "w", job.sample_rate, 1, "PCM_16") as wav:
            try:
                for chunk in job:
                    wav.write(chunk)
                    pending.append(chunk)
                    gathered = sum(map(len, pending)) / job.sample_rate
                    if stream and gathered >= (STREAM_SECONDS if updates else FIRST_UPDATE_SECONDS):
                        yield _wav_bytes(pending, job.sample_rate)
                        pending, updates = [], updates + 1
                    progress((min(job.stats.sentences, expected), expected), desc="合成中", unit="句")
            except ValueError as err:  # refused later on, e.g. a sentence the frontend cannot read
                raise gr.Error(str(err)) from None
            if stream and pending:
                yield _wav_bytes(pending, job.sample_rate)
        synthesis = job.synthesis
        srt_path = wav_path.with_suffix(".srt")
        srt_path.write_text(to_srt(synthesis.sentences, synthesis.words_by_sentence), encoding="utf-8")
        return str(wav_path), str(srt_path), _status(engine, job.stats)

    def preview(text, voice, numbers, english, lexicon):
        """The reading the synthesis would use with this voice, modes and lexicon: each sentence with its
        syllables in the inline syntax, then the readings the user fixed and where they came from, then
        the Latin words' (English words in ARPAbet from the dictionary, or spelled letters)."""
        if not text.strip():
            return ""
        options = reading_of(numbers, english, lexicon)
        try:
            sentences = engine.frontend.sentences(text, english_phones=engine.voice(voice).inventory.english_phones,
                                                  **options)
        except ValueError as err:  # nothing readable, bad SSML, a mode the voice cannot read
            raise gr.Error(str(err)) from None
        readings = [r for s in sentences for r in s.readings]
        fixed = [f"{r['char']} {r['pinyin']}（{SOURCE_NAMES[r['source']]}）"
                 for r in readings if r["source"] in SOURCE_NAMES]
        latin = [f"{r['char']} {r['spoken']}" for r in readings if r["source"] in ("dictionary", "letters")]
        lines = ["\n".join(annotated(s) for s in sentences)]
        lines += [f"已指定：{'，'.join(fixed)}"] if fixed else []
        lines += [f"英文和字母：{'，'.join(latin)}"] if latin else []
        return "\n\n".join(lines)

    def speak(text, voice, emotion, reference_audio, speed, pitch, volume, numbers, english, lexicon,
              progress=gr.Progress()):
        # Gradio closes a generator whose update failed to encode (or whose page went away) only once
        # the generator's first update has gone out: it keeps the generator from then on, not before.
        # So the first update carries no audio and the slot is taken after it; a failure later on
        # closes this generator, and `finally` frees the slot. It leaves the player alone (gr.skip, not
        # None: None would open an empty stream, see FIRST_UPDATE_SECONDS); the first audio replaces it.
        yield gr.skip(), None, None, "合成中…" if stream_audio else NO_FFMPEG_NOTICE  # clears the last files
        pieces = run("ui", text, voice, emotion, reference_audio, speed, pitch, volume,
                     reading_of(numbers, english, lexicon), progress, stream=stream_audio)
        try:
            while True:
                yield next(pieces), gr.skip(), gr.skip(), gr.skip()
        except StopIteration as done:
            wav_path, srt_path, status = done.value
            yield gr.skip(), wav_path, srt_path, status if stream_audio else f"{status} · {NO_FFMPEG_NOTICE_DONE}"
        finally:
            pieces.close()  # a page closed mid-stream, or an update that failed: stop and free the slot now

    def synthesize(text, voice, emotion, reference_audio, speed, pitch, volume, numbers, english, lexicon,
                   progress=gr.Progress()):
        pieces = run("ui", text, voice, emotion, reference_audio, speed, pitch, volume,
                     reading_of(numbers, english, lexicon), progress, stream=False)
        try:
            next(pieces)
        except StopIteration as done:
            return done.value

    with gr.Blocks(title="Sambert 中文语音合成", delete_cache=(KEEP_OUTPUT_SECONDS, KEEP_OUTPUT_SECONDS)) as demo:
        gr.Markdown("## Sambert 中文语音合成\n输入中文文本，边合成边播放；完成后可下载 WAV 和 SRT 字幕。")
        with gr.Row():
            with gr.Column(scale=3):
                text = gr.Textbox(label="文本", lines=6, max_length=limit, elem_id="text",
                                  placeholder="请输入要朗读的中文文本……")
                counter = gr.Markdown(f"0 / {limit} 字", elem_id="counter")
                with gr.Row():
                    voice = gr.Dropdown([(v["display_name"], v["name"]) for v in voices], value=voices[0]["name"],
                                        label="音色", elem_id="voice")
                    emotion = gr.Dropdown(emotion_choices(voices[0]["name"]), value="neutral", label="情感",
                                          elem_id="emotion")
                reference_audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                           label="情感参考音频（可选：按其音高、能量、语速调整合成）")
                with gr.Row():
                    speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="语速")
                    pitch = gr.Slider(-3.0, 3.0, value=0.0, step=0.1, label="音高")
                    volume = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="音量")
                with gr.Row():
                    numbers, english = (gr.Dropdown([(names[v], v) for v in modes.CHOICES[mode]], label=label,
                                                    value=modes.DEFAULTS[mode], elem_id=mode)
                                        for mode, (label, names) in MODE_NAMES.items())
                # value="" (not None) gives the API a default: scripts that send only the controls before it still work
                lexicon = gr.Textbox("", label=f"{LEXICON_NAME}（每行一词：词 拼音；只用于本页的合成和读音）", lines=2,
                                     placeholder="曾乐 zeng1 yue4", elem_id="lexicon")
                with gr.Row():
                    button = gr.Button("合成", variant="primary", elem_id="speak")
                    preview_button = gr.Button("查看读音", elem_id="preview")
                reading = gr.Textbox(label="读音（每个汉字后是读出的拼音）", lines=3, interactive=False,
                                     elem_id="reading")
                gr.Markdown(READING_HELP)
            with gr.Column(scale=2):
                stream_out = gr.Audio(label="实时播放", streaming=True, autoplay=True, elem_id="stream")
                # without ffmpeg nothing streams: the finished WAV plays by itself instead
                full_out = gr.Audio(label="完整音频 (WAV)", type="filepath", buttons=["download"], elem_id="full",
                                    autoplay=not stream_audio)
                srt_out = gr.File(label="字幕 (SRT)")
                status = gr.Markdown(_status(engine), elem_id="status")
        gr.Examples([[e] for e in EXAMPLES], inputs=[text])

        inputs = [text, voice, emotion, reference_audio, speed, pitch, volume, numbers, english, lexicon]
        text.change(None, text, counter, js=f"(t) => `${{[...t].length}} / {limit} 字`")
        voice.change(lambda v: gr.Dropdown(choices=emotion_choices(v), value="neutral"), voice, emotion,
                     api_visibility="private", queue=False)
        button.click(speak, inputs, [stream_out, full_out, srt_out, status], api_name="speak",
                     concurrency_id="engine")
        preview_button.click(preview, [text, voice, numbers, english, lexicon], reading, api_name="preview",
                             concurrency_id="preview", concurrency_limit=2)
        # The same synthesis without streaming, returning the WAV file: for gradio_client and scripts.
        gr.Button(visible=False).click(synthesize, inputs, [full_out, srt_out, status], api_name="synthesize",
                                       concurrency_id="engine")
    return demo


def create_app(service, max_queue, stream_audio=True):
    from sambert.server.api import create_api

    demo = build_ui(service, stream_audio)
    demo.queue(default_concurrency_limit=service.limiter.concurrency, max_size=max_queue)
    service.ui_queue_depth = lambda: len(demo._queue)  # Gradio's Queue has a length, not a public handle
    return gr.mount_gradio_app(create_api(service), demo, path="/", auth=service.auth,
                               allowed_paths=[str(OUTPUT_DIR)], max_file_size="20mb", footer_links=["api"])


def _status(engine, stats=None):
    if stats is None:
        return f"**引擎** {engine.describe()}"
    profile = engine.profile
    line = f"**设备** {stats.device} · **配置** {profile.name}（{profile.reason}）"
    ttfa = f"{stats.time_to_first_audio * 1000:.0f} ms" if stats.time_to_first_audio is not None else "-"
    rtf = f"{stats.real_time_factor:.3f}" if stats.real_time_factor is not None else "-"
    line += (f" · **首音** {ttfa} · **RTF** {rtf} · **时长** {stats.audio_seconds:.1f} s"
             f" · **峰值内存** {stats.peak_memory_bytes / 2**20:.0f} MiB ({stats.peak_memory_kind})")
    return line + "".join(f" · {f}" for f in stats.fallbacks)


def _wav_bytes(chunks, sample_rate):
    """The chunks as one 16-bit mono WAV in memory. Gradio streams bytes as they are; a (rate, samples)
    update would go through a cache file named by the samples' hash, which identical requests running
    together write and read at the same time (intermittent ffmpeg decode failures; see
    benchmarks/stream_storm.py)."""
    samples = (np.clip(np.concatenate(chunks), -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(samples.tobytes())
    return buffer.getvalue()


def _output_path(suffix):
    """A fresh file in OUTPUT_DIR; files older than KEEP_OUTPUT_SECONDS are removed on the way."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_OUTPUT_SECONDS
    for old in OUTPUT_DIR.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass  # removed by another request meanwhile
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="sambert-", dir=OUTPUT_DIR)
    os.close(fd)
    return Path(name)


def limit_malloc_arenas(arenas=2):
    """Cap glibc's malloc arenas (M_ARENA_MAX), unless MALLOC_ARENA_MAX says otherwise. Requests run on many
    worker threads and glibc gives threads their own arenas (up to 8 per core), each keeping what it once
    held. Measured with `python benchmarks/load.py` (8 clients, 200 short requests, 27 s either way): RSS
    901 MiB after the warm-up -> 1037 MiB after the run by default, 770 -> 825 MiB with 2 arenas. A no-op
    where the C library is not glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-8, arenas)  # -8: M_ARENA_MAX


def main(argv=None):
    limit_malloc_arenas()
    parser = argparse.ArgumentParser(description="Sambert TTS: web UI and HTTP API in one server")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--model-dir", default=os.environ.get("SAMBERT_MODEL_DIR"),
                        help="a ModelScope Sambert-HiFiGAN model directory (default: the bundled voices)")
    parser.add_argument("--profile", help="hardware profile (default: $SAMBERT_PROFILE or chosen for this machine)")
    parser.add_argument("--device", help="run every model on this device (cpu, cuda)")
    parser.add_argument("--max-queue", type=int, default=int(os.environ.get("SAMBERT_MAX_QUEUE", "16")),
                        help="requests that may wait for a synthesis slot before new ones are refused")
    parser.add_argument("--rate-limit", default=os.environ.get("SAMBERT_RATE_LIMIT", ratelimit.DEFAULT),
                        help="speech API requests per client, e.g. 30/minute, or off "
                        f"(default: $SAMBERT_RATE_LIMIT or {ratelimit.DEFAULT})")
    parser.add_argument("--lexicon", default=os.environ.get("SAMBERT_LEXICON"),
                        help="user lexicon file, word<TAB>pinyin lines, reloaded when it changes "
                        "(default: $SAMBERT_LEXICON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    from sambert.server.api import MAX_BODY_BYTES

    from sambert.engine import Engine
    from sambert.frontend.lexicon import server_lexicon
    from sambert.voices import VoiceError

    try:
        auth = auth_from_env()
        ratelimit.parse(args.rate_limit)
        lexicon = server_lexicon(args.lexicon)  # a bad file stops the start here, with its line numbers
        engine = Engine(profile=args.profile, model_dir=args.model_dir, device=args.device)
    except (ValueError, VoiceError) as err:
        parser.exit(2, f"error: {err}\n")
    engine.frontend.lexicon = lexicon
    ffmpeg = ensure_ffmpeg()
    if ffmpeg is None:
        print("warning: ffmpeg not found (neither on PATH nor from the imageio-ffmpeg package): the page plays "
              "the finished WAV instead of streaming, and the API offers only wav and pcm", flush=True)
    service = Service(engine, max_waiting=args.max_queue, auth=auth, rate_limit=args.rate_limit)
    for name, seconds in service.warm_up():
        print(f"warmed up {name} in {seconds:.1f} s", flush=True)
    app = create_app(service, args.max_queue, stream_audio=ffmpeg is not None)
    print(f"sambert serving on http://{args.host}:{args.port} ({engine.describe()})", flush=True)
    # WebSocket frames over the API's body limit are refused by the protocol layer before they are read
    # (uvicorn's default is 16 MiB); ws.py then checks each message's length itself.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5,
                ws_max_size=MAX_BODY_BYTES)


if __name__ == "__main__":
    main()
