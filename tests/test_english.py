"""English words inside Chinese text: read as words with ARPAbet units by a voice with English phones
(a ModelScope-layout voice, as the official zh-cn voices load), spelled with Chinese letter names by
the bundled default voice; the `english` reading mode; the preview's sources."""

import base64
import json
import urllib.request

import pytest
from conftest_app import AUTH, app_server, build_fixture_voice, locked_server  # noqa: F401

from sambert.__main__ import main
from sambert.frontend import Frontend
from sambert.frontend.english import read, syllables
from sambert.frontend.modes import ModeError

pytestmark = pytest.mark.timeout(240)

TEXT = "我用Python写代码。"


def _fields(units):
    return [u.strip("{}").split("$")[:4] for u in units]


@pytest.fixture(scope="module")
def frontend():
    return Frontend()


def test_dictionary_words_become_arpabet_units_as_kantts_writes_english(frontend):
    (sentence,) = frontend.sentences(TEXT, english_phones=True)
    word = [f for f in _fields(sentence.units) if f[0] in ("p", "ay", "th", "aa", "n")]
    # P AY1 . TH AA0 N: no phone suffix, tone1 on the stressed syllable, tone0 on the other; syllable
    # flags inside each syllable, word flags over the whole word (KAN-TTS's EnXXSyllableFormatter,
    # Syllable.SaveMetafile, ScriptWord.SaveMetafile)
    assert word == [["p", "tone1", "s_begin", "word_begin"], ["ay", "tone1", "s_end", "word_middle"],
                    ["th", "tone0", "s_begin", "word_middle"], ["aa", "tone0", "s_middle", "word_middle"],
                    ["n", "tone0", "s_end", "word_end"]]
    assert sentence.pinyin[2:4] == ["P AY1", "TH AA0 N"]
    python = next(r for r in sentence.readings if r["source"] == "dictionary")
    assert (python["char"], python["pinyin"], python["index"]) == ("Python", "P AY1 TH AA0 N", 2)


def test_only_the_english_word_differs_from_the_spelled_reading(frontend):
    (words,) = frontend.sentences(TEXT, english_phones=True)
    (letters,) = frontend.sentences(TEXT, english_phones=False)
    spelled = [f[0] for f in _fields(letters.units)]
    assert spelled[6:8] == ["p_c", "i_c"] and "ay" not in spelled  # P said bi4... as today
    english = [i for i, c in enumerate(words.unit_chars) if 2 <= c < 8]
    chinese = [i for i, c in enumerate(letters.unit_chars) if 2 <= c < 8]
    # everything before and after the word is the same units
    assert words.units[:english[0]] == letters.units[:chinese[0]]
    assert words.units[english[-1] + 1:] == letters.units[chinese[-1] + 1:]
    assert {r["source"] for r in letters.readings if r["char"].isascii()} == {"letters"}


@pytest.mark.parametrize("word, parts", [
    ("GDP", [(["JH IY1"], 1, "letters"), (["D IY1"], 1, "letters"), (["P IY1"], 1, "letters")]),  # capitals
    ("A", [(["EY1"], 1, "letters")]),  # a letter's name, not the article AH0
    ("iPhone", [(["AY1", "F OW2 N"], 6, "dictionary")]),
    ("WeChat", [(["W IY1"], 2, "dictionary"), (["CH AE1 T"], 4, "dictionary")]),  # not in it: its pieces
    ("ChatGPT", [(["CH AE1 T"], 4, "dictionary"), (["JH IY1"], 1, "letters"), (["P IY1"], 1, "letters"),
                 (["T IY1"], 1, "letters")]),
    ("Zq", [(["Z IY1"], 1, "letters"), (["K Y UW1"], 1, "letters")]),  # not in it, one piece: spelled
])
def test_which_words_are_spelled(word, parts):
    assert read(word) == parts


def test_syllables_split_before_the_last_consonant_between_vowels():
    assert syllables("JH AA1 V AH0 S K R IH2 P T".split()) == ["JH AA1", "V AH0 S K", "R IH2 P T"]
    assert syllables("HH AH0 L OW1".split()) == ["HH AH0", "L OW1"]
    assert syllables("AY1 AH0".split()) == ["AY1", "AH0"]  # two vowels side by side


def test_english_mode(frontend):
    def phones(modes, english_phones):
        (sentence,) = frontend.sentences(TEXT, normalization=modes, english_phones=english_phones)
        return [f[0] for f in _fields(sentence.units)][6:8]

    assert phones(None, True) == phones({"english": "words"}, True) == ["p", "ay"]
    assert phones({"english": "letters"}, True) == phones(None, False) == ["p_c", "i_c"]
    with pytest.raises(ModeError, match="english 'words' needs a voice with English phones"):
        frontend.sentences(TEXT, normalization={"english": "words"}, english_phones=False)
    with pytest.raises(ModeError, match="normalization english must be one of auto, words, letters"):
        frontend.sentences(TEXT, normalization={"english": "french"})


def test_cli_english_option(capsys):
    assert main(["g2p", "--english", "words", "--sources", "用iPhone。"]) == 0
    assert "iPhone\tAY1 F OW2 N\tAY1 F OW2 N\tdictionary\n" in capsys.readouterr().out
    assert main(["g2p", "用iPhone。"]) == 0  # no voice: spelled, as the bundled voice reads it
    assert capsys.readouterr().out == "yong4 ai4 pi4 ei1 qi1 ou1 en1 yi4\n"


# ---- through a real voice ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from sambert.engine import Engine
    from sambert.voices import load_model_dir

    voices = load_model_dir(build_fixture_voice(tmp_path_factory.mktemp("model")))
    assert voices[0].inventory.english_phones  # a ModelScope voice, as the official zh-cn ones load
    return Engine(profile="cpu", voices=voices)


def test_a_voice_with_english_phones_reads_the_word(engine):
    result = engine.synthesize("用Python。")
    assert [u.text for u in result.units][3:8] == ["p", "ay", "th", "aa", "n"]
    # the timings cover the whole word, and the subtitles have the sentence as written
    assert [w.text for w in result.words] == ["用", "Python"]
    assert result.words[1].start == result.units[3].start and result.words[1].end == result.units[7].end
    assert "用Python" in result.srt()


@pytest.fixture(scope="module")
def client(engine):
    from fastapi.testclient import TestClient

    from sambert.server import Service
    from sambert.server.api import create_api

    with TestClient(create_api(Service(engine))) as client:
        yield client


def test_api_preview_and_speech_follow_the_voice_and_the_mode(client):
    reply = client.post("/v1/g2p", json={"input": "用iPhone看NBA。", "voice": "zhitian_emo"})
    assert reply.status_code == 200
    chars = [(c["char"], c["pinyin"], c["source"]) for c in reply.json()["sentences"][0]["chars"]]
    assert chars[1:5] == [("iPhone", "AY1 F OW2 N", "dictionary"), ("看", "kan4", "model"),
                          ("N", "EH1 N", "letters"), ("B", "B IY1", "letters")]
    reply = client.post("/v1/g2p", json={"input": "用iPhone。", "voice": "nobody"})
    assert reply.status_code == 400 and "unknown voice 'nobody'" in reply.json()["error"]["message"]

    def pcm(**extra):
        reply = client.post("/v1/audio/speech", json={"input": TEXT, "response_format": "pcm", **extra})
        assert reply.status_code == 200
        return reply.content

    assert pcm() == pcm(normalization={"english": "words"}) != pcm(normalization={"english": "letters"})


def test_the_default_voice_spells_latin_words(locked_server):  # noqa: F811
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    if "default_female" not in [v["name"] for v in locked_server.voices]:
        pytest.skip("the bundled default voice is not installed")
    assert locked_server.voices[0]["english_phones"] is False  # /v1/voices tells clients "words" is refused
    login = "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()

    def g2p(**extra):
        request = urllib.request.Request(locked_server.url + "/v1/g2p", json.dumps({"input": TEXT, **extra}).encode(),
                                         {"Content-Type": "application/json", "Authorization": login})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    status, body = g2p()
    assert status == 200
    chars = body["sentences"][0]["chars"]
    assert [(c["char"], c["pinyin"], c["source"]) for c in chars[2:4]] == [("P", "pi4", "letters"),
                                                                           ("y", "wai4", "letters")]
    status, body = g2p(normalization={"english": "words"})
    assert status == 400 and "needs a voice with English phones" in body["error"]["message"]
    # the page's 英文读法 box: the same refusal, for the preview and the synthesis
    page = Client(locked_server.url, auth=AUTH, verbose=False)
    for api_name, controls in (("/preview", ()), ("/synthesize", ("neutral", None, 1.0, 0.0, 1.0))):
        with pytest.raises(AppError, match="english 'words' needs a voice with English phones"):
            page.predict(TEXT, "default_female", *controls, "auto", "words", "", api_name=api_name)


def test_the_page_preview_lists_the_english_reading(app_server):  # noqa: F811
    from gradio_client import Client

    voice = app_server.voices[0]["name"]
    if voice == "default_female":
        pytest.skip("the app serves the bundled voice (no English phones): SAMBERT_TEST_MODEL_DIR is unset "
                    "and the fixtures are missing")
    assert app_server.voices[0]["english_phones"] is True  # a ModelScope voice, as /v1/voices reports it
    page = Client(app_server.url, verbose=False)
    shown = page.predict("他长(chang2)大了，用iPhone看NBA。", voice, api_name="/preview")  # the modes' defaults
    assert shown.startswith("他(ta1)长(chang2)大(da4)了(le5)，用(yong4)iPhone看(kan4)NBA。")
    assert shown.endswith("英文和字母：iPhone AY1 F OW2 N，N EH1 N，B B IY1，A EY1")
    # 英文读法 逐个字母读: spelled with the Chinese letter names instead
    spelled = page.predict("用iPhone。", voice, "auto", "letters", "", api_name="/preview")
    assert spelled.endswith("英文和字母：i ai4，P pi4，h ei1 qi1，o ou1，n en1，e yi4")
