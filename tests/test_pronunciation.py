"""Pronunciation the user controls: inline pinyin, user lexicons (per request and a server file), the
reading preview, reading modes, and that an override reaches the audio's units and timings; the page's
modes and lexicon box through its own endpoints (gradio_client)."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest_app import app_server  # noqa: F401  (the shared app server, for the page's endpoints)

from sambert.__main__ import main
from sambert.frontend import Frontend, Lexicon, LexiconError, LexiconFile
from sambert.frontend.inline import extract
from sambert.frontend.lexicon import server_lexicon

pytestmark = pytest.mark.timeout(120)


def _reading(sentences):
    return [(r["char"], r["pinyin"], r["source"]) for s in sentences for r in s.readings]


@pytest.fixture(scope="module")
def frontend():
    return Frontend()


# ---- inline pinyin ---------------------------------------------------------------------------------

def test_inline_pinyin_sets_the_characters_it_follows(frontend):
    plain = _reading(frontend.sentences("他长大了。"))
    fixed = _reading(frontend.sentences("他长(chang2)大了。"))
    assert plain[1] == ("长", "zhang3", "model")
    assert fixed[1] == ("长", "chang2", "inline")
    assert plain[:1] + plain[2:] == fixed[:1] + fixed[2:]  # the rest of the sentence as before


def test_inline_pinyin_for_a_word_and_the_right_occurrence(frontend):
    # the annotated 长 is the second one: the first (长城) keeps the model's reading
    reading = _reading(frontend.sentences("长城很长(zhang3)。去银行(yin2 xing2)。"))
    assert reading[0] == ("长", "chang2", "model")
    assert reading[3] == ("长", "zhang3", "inline")
    assert reading[5:7] == [("银", "yin2", "inline"), ("行", "xing2", "inline")]


def test_inline_pinyin_is_said_as_written(frontend):
    # 3-3 sandhi would make 你 ni2; an inline syllable is exact, its neighbours still follow the rules
    (sentence,) = frontend.sentences("你(ni3)好。")
    assert sentence.pinyin == ["ni3", "hao3"]
    (sentence,) = frontend.sentences("你好(hao3)。")
    assert sentence.pinyin == ["ni2", "hao3"]


@pytest.mark.parametrize("text", ["长(zhang)大", "长(zhang3 da4)", "长(xyz3)大", "长（zhang3）大", "(zhang3)大",
                                  "长(zhang9)大"])
def test_other_parentheses_stay_text(text):
    stripped, marks = extract(text)
    assert (stripped, marks) == (text, [])


def test_inline_marks_keep_offsets_in_the_stripped_text():
    assert extract("重(chong2)新来过，银行(yin2 hang2)") == ("重新来过，银行", [
        (0, "重", ["chong2"], "inline"), (5, "银行", ["yin2", "hang2"], "inline")])


# ---- lexicons --------------------------------------------------------------------------------------

def test_request_lexicon_wins_over_the_model(frontend):
    assert _reading(frontend.sentences("曾乐来了。"))[:2] == [("曾", "ceng2", "model"), ("乐", "le4", "model")]
    fixed = frontend.sentences("曾乐来了。", {"曾乐": "zeng1 yue4"})
    assert _reading(fixed)[:3] == [("曾", "zeng1", "lexicon"), ("乐", "yue4", "lexicon"), ("来", "lai2", "model")]


def _word_flags(sentence):
    return [u.split("$")[3] for u in sentence.units if not u.startswith("{#")]


def test_lexicon_word_is_kept_whole(frontend):
    # jieba cuts the name 朴|正好 (two words); as a lexicon word it is one: word_begin ... word_end
    plain = frontend.sentences("朴正好来了。")[0]
    fixed = frontend.sentences("朴正好来了。", {"朴正好": "piao2 zheng4 hao3"})[0]
    assert _word_flags(plain)[:2] == ["word_begin", "word_end"]
    assert _word_flags(fixed)[:6] == ["word_begin"] + ["word_middle"] * 4 + ["word_end"]


def test_inline_wins_over_lexicon_and_lexicon_tones_take_sandhi(frontend):
    (sentence,) = frontend.sentences("一起(qi4)走。", {"一起": "yi1 qi3"})
    assert _reading([sentence])[:2] == [("一", "yi1", "lexicon"), ("起", "qi4", "inline")]
    assert sentence.pinyin[0] == "yi2"  # lexical yi1 before a 4th tone is said yi2


@pytest.mark.parametrize("mapping, message", [
    ({"银行": "yin2"}, "must be 2 toned pinyin syllable"),
    ({"银行": "yin hang"}, "must be 2 toned pinyin syllable"),
    ({"ABC": "ei1 bi4 xi1"}, "must be Chinese characters only"),
    ({"银": 3}, "must be a string of pinyin"),
])
def test_bad_request_lexicon_says_what_is_wrong(mapping, message):
    with pytest.raises(LexiconError, match=message):
        Lexicon.from_mapping(mapping)


def test_lexicon_file_reports_bad_lines_by_number(tmp_path):
    path = tmp_path / "words.tsv"
    path.write_text("# comment\n行长\thang2 zhang3\n银行\n\n重要\tzhong4\n曾乐 zeng1 yue4\n", encoding="utf-8")
    with pytest.raises(LexiconError) as err:
        Lexicon.from_file(path)
    assert f"{path}:3: expected word<TAB>pinyin" in str(err.value)
    assert f"{path}:5: lexicon reading 'zhong4'" in str(err.value)
    assert ":2:" not in str(err.value) and ":6:" not in str(err.value)
    # a space for the tab, as the page's lexicon box is typed (Tab moves the focus there)
    assert Lexicon.from_text("曾乐 zeng1 yue4\n行长\thang2  zhang3 ").entries == {"曾乐": ["zeng1", "yue4"],
                                                                              "行长": ["hang2", "zhang3"]}


def test_server_lexicon_file_is_reloaded_when_it_changes(tmp_path, frontend):
    path = tmp_path / "words.tsv"
    path.write_text("行长\thang2 chang2\n", encoding="utf-8")
    server = Frontend(lexicon=LexiconFile(path))
    assert [r["pinyin"] for r in server.sentences("行长。")[0].readings] == ["hang2", "chang2"]
    path.write_text("行长\txing2 zhang3\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a different mtime even on a coarse clock
    assert [r["pinyin"] for r in server.sentences("行长。")[0].readings] == ["xing2", "zhang3"]
    path.write_text("行长\tbroken\n", encoding="utf-8")  # a bad edit: the last good version stays
    assert [r["pinyin"] for r in server.sentences("行长。")[0].readings] == ["xing2", "zhang3"]
    # a request's own entry wins over the server's
    assert server.sentences("行长。", {"行长": "hang2 zhang3"})[0].readings[0]["source"] == "lexicon"
    assert [r["pinyin"] for r in server.sentences("行长。", {"行长": "hang2 zhang3"})[0].readings] == [
        "hang2", "zhang3"]


# ---- CLI -------------------------------------------------------------------------------------------

def test_cli_g2p_sources_and_lexicon(tmp_path, capsys):
    path = tmp_path / "words.tsv"
    path.write_text("行长\thang2 chang2\n", encoding="utf-8")
    assert main(["g2p", "--sources", "--lexicon", str(path), "银行行长重(chong2)说。"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "银行行长重说。"
    assert lines[3:6] == ["行\thang2\thang2\tlexicon", "长\tchang2\tchang2\tlexicon", "重\tchong2\tchong2\tinline"]


def test_cli_bad_lexicon_exits_2(tmp_path, capsys):
    path = tmp_path / "words.tsv"
    path.write_text("行长\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["g2p", "--lexicon", str(path), "行长"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {path}:1: expected word<TAB>pinyin (a space for the tab works too)\n"


# ---- honoured in the audio ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(ref):
    from test_engine import fixture_voice

    from sambert.engine import Engine

    return Engine(profile="cpu", voices=[fixture_voice(ref)])


def test_override_changes_the_audio_units_exactly_there(engine):
    text = "他长大了。"
    plain = engine.synthesize(text, voice="fixture")
    fixed = engine.synthesize("他长(chang2)大了。", voice="fixture")
    by_lexicon = engine.synthesize(text, voice="fixture", lexicon={"长大": "chang2 da4"})
    plain_units = engine.frontend.sentences(text)[0].units
    fixed_units = engine.frontend.sentences("他长(chang2)大了。")[0].units
    changed = [i for i, (a, b) in enumerate(zip(plain_units, fixed_units)) if a != b]
    assert len(plain_units) == len(fixed_units)
    # 长: its two units (zh_c ang_c tone3 -> ch_c ang_c tone2), nothing else
    assert [plain_units[i].strip("{}").split("$")[:2] for i in changed] == [["zh_c", "tone3"], ["ang_c", "tone3"]]
    assert [fixed_units[i].strip("{}").split("$")[:2] for i in changed] == [["ch_c", "tone2"], ["ang_c", "tone2"]]
    # what the voice read: the same phones but the initial of 长, with timings for each
    assert [u.text for u in fixed.units] == [u.text if i != changed[0] else "ch_c" for i, u in enumerate(plain.units)]
    assert [u.text for u in by_lexicon.units] == [u.text for u in fixed.units]
    # the timings follow the units: the word holding 长 spans exactly its units, and the SRT has the sentence
    word = next(w for w in fixed.words if "长" in w.text)
    assert word.start <= fixed.units[changed[0]].start and word.end >= fixed.units[changed[-1]].end
    assert fixed.sentences[0].text == plain.sentences[0].text == text
    assert "他长大了" in fixed.srt() and len(fixed.audio) / 16000 == pytest.approx(fixed.sentences[0].end, abs=0.02)


def test_engine_refuses_a_bad_request_lexicon_before_any_audio(engine):
    with pytest.raises(LexiconError, match="must be 2 toned pinyin"):
        engine.stream("他长大了。", voice="fixture", lexicon={"长大": "zhang3"})


# ---- HTTP API and the app's start-up ------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(engine):
    from fastapi.testclient import TestClient

    from sambert.server import Service
    from sambert.server.api import create_api

    with TestClient(create_api(Service(engine))) as client:
        yield client


def test_api_g2p_preview_shows_sources(client):
    reply = client.post("/v1/g2p", json={"input": "他长(chang2)大了。曾乐来了。", "lexicon": {"曾乐": "zeng1 yue4"}})
    assert reply.status_code == 200
    first, second = reply.json()["sentences"]
    assert first["text"] == "他长大了。" and second["text"] == "曾乐来了。"
    assert [(c["char"], c["pinyin"], c["source"]) for c in first["chars"]][:2] == [("他", "ta1", "model"),
                                                                                 ("长", "chang2", "inline")]
    assert [(c["pinyin"], c["source"]) for c in second["chars"]][:2] == [("zeng1", "lexicon"), ("yue4", "lexicon")]
    assert second["pinyin"] == ["zeng1", "yue4", "lai2", "le5"]


def test_api_refuses_a_bad_lexicon_with_400(client):
    for path in ("/v1/g2p", "/v1/audio/speech"):
        reply = client.post(path, json={"input": "行长", "lexicon": {"行长": "hang2"}, "response_format": "wav"})
        assert reply.status_code == 400, path
        assert "must be 2 toned pinyin syllable" in reply.json()["error"]["message"]


def test_api_speech_follows_the_request_lexicon(client):
    def pcm(**extra):
        reply = client.post("/v1/audio/speech", json={"input": "他长大了。", "response_format": "pcm", **extra})
        assert reply.status_code == 200
        return reply.content

    plain, same, fixed = pcm(), pcm(), pcm(lexicon={"长大": "chang2 da4"})
    assert plain == same  # synthesis is deterministic, so a difference is the lexicon's doing
    assert fixed != plain


def test_server_lexicon_comes_from_the_flag_or_the_environment(tmp_path, monkeypatch):
    # app.py and the CLI call this before loading the engine; its LexiconError becomes `error: ...`, exit 2
    good, bad = tmp_path / "good.tsv", tmp_path / "bad.tsv"
    good.write_text("行长\thang2 chang2\n", encoding="utf-8")
    bad.write_text("行长\thang2 chang2\n重要\tzhong4 yao\n", encoding="utf-8")
    monkeypatch.delenv("SAMBERT_LEXICON", raising=False)
    assert server_lexicon() is None
    monkeypatch.setenv("SAMBERT_LEXICON", str(good))
    assert server_lexicon().current().entries == {"行长": ["hang2", "chang2"]}
    with pytest.raises(LexiconError, match=f"^{bad}:2: lexicon reading 'zhong4 yao'"):
        server_lexicon(bad)


# ---- SSML --------------------------------------------------------------------------------------------

def test_ssml_compiles_to_the_text_it_reads():
    from sambert.frontend.ssml import to_text

    document = ('<speak>他<phoneme alphabet="pinyin" ph="chang2">长</phoneme>大了。'
                '拨<say-as interpret-as="telephone">110</say-as>，<say-as interpret-as="digits">2024</say-as>'
                '<break time="300ms"/><say-as interpret-as="cardinal">2024</say-as><break strength="strong"/>'
                '<sub alias="世界卫生组织">WHO</sub><say-as interpret-as="date">2024-03-15</say-as>'
                '<break time="0ms"/><say-as interpret-as="characters">AB12</say-as></speak>')
    assert to_text(document) == ("他长(ssml:chang2)大了。拨幺幺零，二零二四，二千零二十四。世界卫生组织"
                                 "二零二四年三月十五日AB一二")


def test_ssml_phoneme_is_marked_as_ssml(frontend):
    reading = _reading(frontend.sentences('<speak>他<phoneme alphabet="pinyin" ph="chang2">长</phoneme>大了。</speak>'))
    assert reading[:2] == [("他", "ta1", "model"), ("长", "chang2", "ssml")]


@pytest.mark.parametrize("document, message", [
    ("<speak>你好<prosody rate='fast'>快</prosody></speak>", "line 1, column 10 (<prosody>): <prosody> must hold all"),
    ("<speak><prosody rate='fast'>快</prosody>慢</speak>", "line 1, column 8 (<prosody>): <prosody> must hold all"),
    ("<speak><prosody pitch='+2st'>快</prosody></speak>", "column 8 (<prosody>): pitch='+2st'; valid: x-low"),
    ("<speak><prosody rate='quick'>快</prosody></speak>", "column 8 (<prosody>): rate='quick'; valid: x-slow"),
    ("<speak><prosody duration='2s'>快</prosody></speak>", "(<prosody>): attribute 'duration'; supported: rate"),
    ("<speak>你好\n<foo/></speak>", "line 2, column 1 (<foo>): unknown or unsupported tag"),
    ("<speak>你好<break time='3x'/></speak>", "column 10 (<break>): <break time='3x'>"),
    ("<speak>你<phoneme ph='zhang3'>长大</phoneme></speak>", "column 9 (<phoneme>): ph='zhang3' must be 2"),
    ("<speak>你<say-as interpret-as='money'>3</say-as></speak>", "(<say-as>): interpret-as='money'"),
    ("<speak>你好", "line 1, column 10: no element found"),
    ("<speak>你好</speak>x", "line 1, column 18: junk after document element"),
])
def test_bad_ssml_names_the_place_and_the_tag(frontend, document, message):
    from sambert.frontend import SsmlError

    with pytest.raises(SsmlError) as err:
        frontend.sentences(document)
    assert message in str(err.value)


def test_bad_ssml_is_refused_by_the_api_and_the_cli_before_any_audio(client, capsys):
    document = "<speak>你好<foo>x</foo></speak>"
    for path in ("/v1/audio/speech", "/v1/g2p"):
        reply = client.post(path, json={"input": document, "response_format": "wav"})
        assert reply.status_code == 400, path
        assert reply.json()["error"]["message"].startswith("SSML error at line 1, column 10 (<foo>)")
    with pytest.raises(SystemExit) as exit_:
        main(["g2p", document])
    assert exit_.value.code == 2 and capsys.readouterr().err.startswith("error: SSML error at line 1, column 10 (<foo>)")


@pytest.mark.parametrize("attributes, controls", [
    ('rate="x-slow" pitch="high" volume="loud"', {"speed": 0.5, "pitch": 1.0, "volume": 1.5}),
    ('rate="150%" volume="-6dB"', {"speed": 1.5, "pitch": 0.0, "volume": pytest.approx(0.501, abs=1e-3)}),
    ('rate="+20%" pitch="x-low"', {"speed": 1.2, "pitch": -2.0, "volume": 1.0}),
])
def test_ssml_prosody_sets_the_controls(attributes, controls):
    from sambert.frontend.ssml import read

    assert read(f"<speak> <prosody {attributes}>你好。再见。</prosody> </speak>") == (" 你好。再见。 ", controls)
    # nested: the inner one scales the outer one's
    assert read('<speak><prosody rate="fast"><prosody rate="50%">好。</prosody></prosody></speak>')[1]["speed"] == 0.75


def test_ssml_prosody_is_the_request_controls_in_the_audio(engine):
    ssml = engine.synthesize('<speak><prosody rate="x-slow" pitch="high" volume="loud">好。</prosody></speak>',
                             voice="fixture")
    controls = engine.synthesize("好。", voice="fixture", speed=0.5, pitch=1.0, volume=1.5)
    plain = engine.synthesize("好。", voice="fixture")
    assert (ssml.audio == controls.audio).all()
    assert len(ssml.audio) > 1.5 * len(plain.audio)  # said at half the speed
    with pytest.raises(ValueError, match="speed must be a number in"):  # 2 x 3 is over the speed range
        engine.stream('<speak><prosody rate="x-fast">好。</prosody></speak>', voice="fixture", speed=3.0)


def test_ssml_through_the_engine_reads_like_inline_pinyin(engine):
    ssml = engine.synthesize('<speak>他<phoneme alphabet="pinyin" ph="chang2">长</phoneme>大了。</speak>', voice="fixture")
    inline_ = engine.synthesize("他长(chang2)大了。", voice="fixture")
    assert [u.text for u in ssml.units] == [u.text for u in inline_.units]
    assert ssml.sentences[0].text == "他长大了。"


# ---- the page's preview --------------------------------------------------------------------------------

def test_annotated_reading_pasted_back_reads_the_same(frontend):
    from sambert.frontend import annotated

    text = "他长(chang2)大了，花儿很好看。一起走吧！"
    sentences = frontend.sentences(text)
    lines = [annotated(s) for s in sentences]
    assert lines[0] == "他(ta1)长(chang2)大(da4)了(le5)，花(hua1)儿很(hen3)好(hao3)看(kan4)。"  # 儿: erhua, no syllable
    assert lines[1].startswith("一(yi4)起(qi2)走(zou3)")  # spoken tones, after sandhi
    again = frontend.sentences("".join(lines))
    assert [s.units for s in again] == [s.units for s in sentences]


# ---- reading modes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("numbers, expected", [
    (None, "二零二四年有两个，电话幺幺零。"),  # auto: a year digit by digit, 2 before a measure word 两, 110 with 幺
    ("digits", "二零二四年有二个，电话一一零。"),
    ("cardinal", "两千零二十四年有两个，电话一百一十。"),
])
def test_number_modes(frontend, numbers, expected):
    modes = None if numbers is None else {"numbers": numbers}
    assert "".join(s.text for s in frontend.sentences("2024年有2个，电话110。", normalization=modes)) == expected


def test_number_modes_leave_inline_tone_digits_alone(frontend):
    (sentence,) = frontend.sentences("长(zhang3)了3岁。", normalization={"numbers": "digits"})
    assert sentence.text == "长了三岁。" and sentence.readings[0]["source"] == "inline"


def test_bad_modes_are_refused_by_the_api(client):
    for body, message in (({"numbers": "roman"}, "normalization numbers must be one of auto, digits, cardinal"),
                          ({"emoji": "words"}, "unknown normalization mode 'emoji'; valid: numbers, english")):
        for path in ("/v1/audio/speech", "/v1/g2p"):
            reply = client.post(path, json={"input": "第1名", "normalization": body, "response_format": "wav"})
            assert reply.status_code == 400 and message in reply.json()["error"]["message"], (path, reply.text)


def test_api_and_cli_take_the_number_mode(client, capsys):
    reply = client.post("/v1/g2p", json={"input": "2024年", "normalization": {"numbers": "cardinal"}})
    assert reply.json()["sentences"][0]["text"] == "两千零二十四年"
    assert main(["g2p", "--numbers", "digits", "2个"]) == 0
    assert capsys.readouterr().out == "er4 ge4\n"


# ---- the page's reading modes and lexicon box (its endpoints, through gradio_client) ----------------------

@pytest.fixture(scope="module")
def page(app_server):  # noqa: F811
    return pytest.importorskip("gradio_client").Client(app_server.url, verbose=False)


def page_synthesis(page, voice, text, numbers="auto", english="auto", lexicon=""):
    """(int16 samples, subtitles) of the page's /synthesize with these reading modes and lexicon box."""
    wav, srt, _ = page.predict(text, voice, "neutral", None, 1.0, 0.0, 1.0, numbers, english, lexicon,
                               api_name="/synthesize")
    return soundfile.read(wav, dtype="int16")[0], Path(srt).read_text(encoding="utf-8")


def test_page_number_mode_reaches_the_preview_and_the_audio(app_server, page):  # noqa: F811
    voice = app_server.voices[0]["name"]
    shown = {n: page.predict("编号2024。", voice, n, "auto", "", api_name="/preview") for n in ("digits", "cardinal")}
    assert shown["digits"] == "编(bian1)号(hao4)二(er4)零(ling2)二(er4)四(si4)。"
    assert shown["cardinal"] == "编(bian1)号(hao4)两(liang3)千(qian1)零(ling2)二(er4)十(shi2)四(si4)。"
    (digits, digits_srt), (cardinal, cardinal_srt) = (page_synthesis(page, voice, "编号2024。", n)
                                                      for n in ("digits", "cardinal"))
    assert "编号二零二四" in digits_srt and "编号两千零二十四" in cardinal_srt  # the subtitles have what was read
    assert len(cardinal) > len(digits)  # six syllables said, not four


def test_page_lexicon_box_reaches_the_preview_and_the_audio(app_server, page):  # noqa: F811
    voice = app_server.voices[0]["name"]
    words = "# names\n曾乐 zeng1 yue4"
    assert page.predict("曾乐来了。", voice, "auto", "auto", "", api_name="/preview") == "曾(ceng2)乐(le4)来(lai2)了(le5)。"
    assert page.predict("曾乐来了。", voice, "auto", "auto", words, api_name="/preview") == (
        "曾(zeng1)乐(yue4)来(lai2)了(le5)。\n\n已指定：曾 zeng1（词典），乐 yue4（词典）")
    # synthesis is deterministic, so a difference is the lexicon's doing
    assert not np.array_equal(page_synthesis(page, voice, "曾乐来了。", lexicon=words)[0],
                              page_synthesis(page, voice, "曾乐来了。")[0])


def test_page_names_a_bad_lexicon_line(app_server, page):  # noqa: F811
    from gradio_client.exceptions import AppError

    voice = app_server.voices[0]["name"]
    words = "曾乐 zeng1 yue4\n\n重要 zhong4"
    with pytest.raises(AppError, match="本次词典:3: lexicon reading 'zhong4' of '重要' must be 2 toned pinyin"):
        page.predict("重要。", voice, "auto", "auto", words, api_name="/preview")
    with pytest.raises(AppError, match="本次词典:3: lexicon reading 'zhong4'"):
        page_synthesis(page, voice, "重要。", lexicon=words)
