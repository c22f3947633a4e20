"""Grapheme to phoneme: normalised text -> words with lexical pinyin (TONE3, neutral tone 5).

jieba segments and tags parts of speech; pypinyin reads each word with its phrase dictionary; g2pM's
polyphone model (polyphone.py) reads every polyphonic character that no phrase covers; then our
context rules fix the everyday polyphones the model misreads (得 de/dei, 地, 着, 还, 长, 重 ...),
which depend on the neighbouring words rather than on the word itself; last, our everyday polyphone
model (polyphone.py) overrules that reading of its 114 characters where it is sure enough.
Latin letters are spelled with Chinese letter names (see LETTERS).
"""

import functools
import logging
import re
import threading
from dataclasses import dataclass, field

from pypinyin import Style, lazy_pinyin
from pypinyin.constants import PHRASES_DICT
from pypinyin.seg.mmseg import seg as _mmseg

from . import polyphone, tagger

log = logging.getLogger(__name__)

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3007]+")

# Letter names as Mandarin speakers say them, in pinyin: every voice reads them with the Mandarin phones
# it was trained on (the ARPAbet rows of the inventory are untrained in Mandarin-only voices).
LETTERS = {
    "A": "ei1", "B": "bi4", "C": "xi1", "D": "di4", "E": "yi4", "F": "ai2 fu5", "G": "ji4",
    "H": "ei1 qi1", "I": "ai4", "J": "zhei4", "K": "kei4", "L": "ai2 lu5", "M": "ai2 mu5", "N": "en1",
    "O": "ou1", "P": "pi4", "Q": "kiu1", "R": "a4 er5", "S": "ai2 si5", "T": "ti4", "U": "you1",
    "V": "wei1", "W": "da2 bu5 liu5", "X": "ai2 ke5 si5", "Y": "wai4", "Z": "zei4",
}

# Words whose everyday reading pypinyin's phrase dictionary gets wrong.
OVERRIDES = {
    "大夫": "dai4 fu5",
    "一会儿": "yi1 hui4 er5",
    "哪儿": "na3 er5",
    "这儿": "zhe4 er5",
    "那儿": "na4 er5",
    "背着": "bei1 zhe5",
    "样子": "yang4 zi5",  # outside the phrase dictionary, and the model reads 子 zi3 (right in 电子, 男子)
}

# Particles and suffixes that are read in the neutral tone when they stand alone after a word.
# (过 is left to the polyphone model: on CPP's dev split it reads it better than this table, guo4/guo5)
NEUTRAL = {"的": "de5", "了": "le5", "着": "zhe5", "吗": "ma5", "呢": "ne5", "吧": "ba5", "啊": "a5",
           "们": "men5", "么": "me5", "嘛": "ma5", "呀": "ya5", "啦": "la5"}

# 儿 at the end of these words is a full syllable, not erhua.
NOT_ERHUA = set(
    "女儿 儿 婴儿 孤儿 幼儿 健儿 宠儿 胎儿 少儿 男儿 患儿 新生儿 混血儿 弃儿 侄儿 孙儿 乞儿 育儿 托儿 "
    "妻儿 犬儿 豚儿 孩儿 产儿 晚儿 童儿 病儿 养儿 生儿 宁馨儿 弄潮儿 幸运儿 中儿 小儿".split()
)

NUMERALS = set("零一二两三四五六七八九十百千万亿几第半每")
# characters with context rules in _fix_polyphones (得 is handled on whole words, see _fix_de)
RULE_CHARS = set("地着了还行长重为数背处率差弹觉乐都好当相会")


@dataclass
class Word:
    """One segment of a sentence: a Chinese word, a Latin token, or punctuation."""

    text: str
    pos: str
    start: int  # offset of the word in the sentence text
    kind: str  # "han", "latin" or "punct"
    syllables: list = field(default_factory=list)  # lexical pinyin, e.g. "hao3"
    chars: list = field(default_factory=list)  # for each syllable, its character offset
    erhua: list = field(default_factory=list)  # for each syllable, True if it is an erhua 儿
    phrase: bool = False  # read as part of a dictionary phrase with a neighbour: no context rules
    sources: list = field(default_factory=list)  # for each syllable: "model", or the user's "lexicon", "inline", "ssml"


_lock = threading.Lock()
_posseg = None


def _segmenter():
    """jieba.posseg, loaded once on first use (it reads a ~5 MB dictionary: under a second)."""
    global _posseg
    with _lock:
        if _posseg is None:
            log.info("frontend: loading the jieba dictionary (once per process)")
            _posseg = tagger.load()
    return _posseg


def posseg():
    """jieba.posseg, loaded on first use: `posseg().cut(text)` -> pairs of word and part-of-speech flag."""
    return _segmenter()


def segment(text):
    """Text -> [Word] with offsets; punctuation and Latin letters become their own words."""
    words, offset = [], 0
    for pair in _segmenter().cut(text):
        token, pos = pair.word, pair.flag
        for part in re.findall(r"[\u3400-\u4dbf\u4e00-\u9fff\u3007]+|[A-Za-z]+|\s+|.", token):
            if HAN.fullmatch(part):
                words.append(Word(part, pos, offset, "han"))
            elif part.isascii() and part.isalpha():
                words.append(Word(part, "eng", offset, "latin"))
            elif not part.isspace():
                words.append(Word(part, "x", offset, "punct"))
            offset += len(part)
    return words


# English words that normalisation writes out and a Chinese reader says as words: O2O -> "O to O"
WORDS = {"to": "tu4"}


def _read_latin(word):
    if word.text.lower() in WORDS:
        word.syllables = WORDS[word.text.lower()].split()
        word.chars = [word.start] * len(word.syllables)
        word.erhua = [False] * len(word.syllables)
        return
    for i, letter in enumerate(word.text.upper()):
        for syllable in LETTERS[letter].split():
            word.syllables.append(syllable)
            word.chars.append(word.start + i)
            word.erhua.append(False)


@functools.lru_cache(maxsize=1 << 16)
def _dictionary_reading(text):
    """pypinyin's reading of a word (a tuple of TONE3 syllables). It depends on the word alone, and
    converting it is the dearest step of the lookup; words repeat, so each is converted once."""
    return tuple(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))


def _pinyin(words):
    """Lexical pinyin for the Chinese words, by phrase lookup (pairs of single characters included)."""
    readings = []
    i = 0
    while i < len(words):
        word = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else None
        if word.text in OVERRIDES:
            readings.append(OVERRIDES[word.text].split())
        elif (nxt is not None and len(word.text) == 1 and len(nxt.text) == 1 and not _tagged(word, "d")
              and word.start + 1 == nxt.start and word.text + nxt.text in PHRASES_DICT):
            # jieba sometimes splits a dictionary phrase into single characters (为/人, 和/面):
            # read the pair as the phrase; the segmentation used for prosody stays as it is. Not after
            # an adverb, which jieba keeps apart from what it modifies (都/会 'all will', not 都会 du1)
            pair = _dictionary_reading(word.text + nxt.text)
            readings += [pair[:1], pair[1:]]
            word.phrase = nxt.phrase = True
            i += 2
            continue
        else:
            readings.append(_dictionary_reading(word.text))
        i += 1
    return readings


def _is_reduplicated(text):
    return len(text) >= 2 and (text[0] == text[1] or (len(text) == 4 and text[0] == text[1] and text[2] == text[3]))


def _tagged(word, *prefixes):
    return word is not None and word.pos.startswith(prefixes)


def _starts(word, chars):
    return word is not None and word.kind == "han" and word.text[0] in chars


def _fix_polyphones(han, sentence):
    """Context rules for single-character polyphones and for words outside the phrase dictionary.

    `han`: the Chinese words (or pieces of words) in order; `sentence`: the text they come from."""
    for k, word in enumerate(han):
        prev = han[k - 1] if k > 0 and han[k - 1].start + len(han[k - 1].text) == word.start else None
        nxt = han[k + 1] if k + 1 < len(han) and word.start + len(word.text) == han[k + 1].start else None
        text, syl = word.text, word.syllables
        if word.phrase:
            continue
        known = text in PHRASES_DICT or text in OVERRIDES
        if "得" in text and not known:
            _fix_de(word, prev, nxt)
        elif text == "地":
            before = sentence[max(0, word.start - 2):word.start]
            manner = _tagged(prev, "a", "d", "z", "b", "i", "l") or (len(before) == 2 and before[0] == before[1])
            if nxt is not None and manner:
                syl[0] = "de5"  # adverbial marker: 慢慢地走, 高兴地跳
        elif text == "着":
            if prev is not None and _tagged(prev, "v", "a"):
                syl[0] = "zhe5"
        elif text == "了":
            # V不了 / V得了 'can (not) manage' (受不了, 吃得了); after a word ending in 得 (赢得, 获得) it is le5
            can = prev and (prev.text[-1] == "不" or (prev.text[-1] == "得" and _word_frequency(prev.text[-2:]) < 10))
            syl[0] = "liao3" if can and not _starts(nxt, "解结") and prev.text != "得" else "le5"
        elif text == "还":
            # 'give back' before what is returned, before 了/给, or ending a clause (借了要还)
            returns = _starts(nxt, "钱书债款账贷礼给") or (nxt is not None and nxt.text == "了") or nxt is None
            syl[0] = "huan2" if returns else "hai2"
        elif text.endswith("行") and (text[:-1] or (prev.text if prev else ""))[-1:] in NUMERALS and (
            _starts(nxt, "字诗文代数句") or (text == "一行" and prev and prev.text[-1] in "这那哪各每干")
        ):
            syl[-1] = "hang2"  # a line of text (三行字), a trade (这一行)
        elif text == "长":
            grows = _starts(nxt, "得出成满大高胖") or re.match(r"了(?:[一二两三四五六七八九十几半]|不少|很多)",
                                                           sentence[word.start + 1:word.start + 4])
            syl[0] = "zhang3" if grows else "chang2"
        elif len(text) > 1 and text.endswith("长") and not known and _tagged(word, "n"):
            syl[-1] = "zhang3"  # heads of organisations: 副院长, 教研组长
        elif text == "重":
            syl[0] = "chong2" if _tagged(nxt, "v") and not _starts(nxt, "要视量达") else "zhong4"
        elif len(text) == 2 and text[0] == "重" and not known and _tagged(word, "v"):
            syl[0] = "chong2"  # again: 重写, 重做
        elif text == "为":
            clause = _clause_before(sentence, word)
            if (prev and prev.text[-1] in "成作认以称视变化改分选评转誉沦") or "以" in clause or _starts(nxt, "所"):
                syl[0] = "wei2"
            elif _tagged(nxt, "r") or _starts(nxt, "国人") or (nxt and nxt.text == "大家"):
                syl[0] = "wei4"  # for someone: 为大家服务, 为国争光, 为人民; else the model (为 'is' is wei2)
        elif text == "数":
            if nxt and (nxt.text[0] in "以十百千万亿" or nxt.text.startswith("不胜")):
                syl[0] = "shu4"
            elif _tagged(word, "v") or (nxt and nxt.text[0] in "一了着过到清完星钱"):
                syl[0] = "shu3"
        elif text == "背":
            syl[0] = "bei1" if _starts(nxt, "着起上包在孩走") else "bei4"
        elif text == "处":
            if _starts(nxt, "于在以理置"):
                syl[0] = "chu3"
            elif prev and prev.text[-1] in NUMERALS | set("此何各多某住到好坏长短难"):
                syl[0] = "chu4"
        elif text == "率" and (_starts(nxt, "领军团队部众先") or (_tagged(prev, "n", "v") and not _tagged(prev, "nr", "ns"))):
            # lead (率领, 率部) before those; a rate after a noun or verb (转化率, 利润率); after a
            # name (粟裕率新四军) and elsewhere the model
            syl[0] = "shuai4" if _starts(nxt, "领军团队部众先") else "lv4"
        elif len(text) > 1 and text.endswith("率") and not known:
            syl[-1] = "lv4"  # rates: 转化率, 通过率
        elif text == "差" and prev and prev.text[-1] == "出":
            syl[0] = "chai1"  # 出差; elsewhere the model (落差 cha1, 很差 cha4)
        elif text == "弹":
            syl[0] = "tan2"
        elif len(text) > 1 and text.endswith("弹") and not known:
            syl[-1] = "dan4"
        elif text == "觉":
            before = "".join(w.text for w in han[max(0, k - 3):k])
            syl[0] = "jiao4" if "睡" in before or (prev and prev.text[-1] in NUMERALS | set("个午")) else "jue2"
        elif "觉" in text and sentence[word.start - 1:word.start] in ("一", "个", "午") and word.start > 0:
            syl[text.index("觉")] = "jiao4"  # a sleep, even where a phrase took the character (一觉醒来)
        elif text == "乐":
            syl[0] = "le4"
        elif text == "都":
            syl[0] = "dou1"
        elif text == "好" and _starts(nxt, "奇学客胜强") and nxt and len(nxt.text) == 1:
            syl[0] = "hao4"
        elif text == "当":
            syl[0] = "dang4" if _starts(nxt, "作成做") and nxt and len(nxt.text) == 1 else "dang1"
        elif text == "相":
            syl[0] = "xiang1"
        elif text == "会" and nxt and nxt.text in ("计", "计师"):
            syl[0] = "kuai4"
        elif text in NEUTRAL and prev is not None and "啦啦" not in sentence[word.start - 1:word.start + 2]:
            syl[0] = NEUTRAL[text]  # (啦啦, the cheer, is la1 la1: the model reads it)


def _fix_de(word, prev, nxt):
    """得 outside a dictionary phrase: de5 after a verb or adjective (跑得快, 说得对), dei3 'must'
    after a pronoun, noun or adverb before what is to be done (我得去, 你得小心), else de2 'get'."""
    for i, ch in enumerate(word.text):
        if ch != "得":
            continue
        rest = word.text[i + 1:]
        after = rest or (nxt.text if nxt else "")
        if rest[:1] not in ("", "了") and _word_frequency(word.text[i:i + 2]) >= 10:
            word.syllables[i] = "de2"  # 得 opens a common word: 'get' (得到, 得主, 得分)
        elif i > 0:
            # inside a word: V得 is a complement (说得对, 跑得) unless X得 is itself a common word,
            # read as the dictionary says (取得成功, 心得); 不得 keeps its de2 (不得不)
            pair = word.text[i - 1:i + 1]
            if pair in _NEUTRAL_DE or (pair[0] != "不" and _word_frequency(pair) < 10):
                word.syllables[i] = "de5"
        elif _tagged(prev, "v", "a") or (prev and prev.text[-1] in _VERB_CHARS):
            word.syllables[i] = "de5"
        elif prev is not None and after[:1] not in _NOT_AFTER_DEI and (
            _tagged(prev, "r", "n", "d", "t", "m", "q") or prev.text[-1] in "就还也都总可必非真又"
        ):
            word.syllables[i] = "dei3"
        else:
            word.syllables[i] = "de2"


def _word_frequency(text):
    return _segmenter().dt.FREQ.get(text, 0)


# common words whose 得 is neutral although jieba knows them well (取得, 获得, 难得 keep de2)
_NEUTRAL_DE = set("变得 显得 懂得 晓得 使得 免得 省得 舍得 落得 弄得 搞得 闹得 觉得 记得 认得 值得 怪得 乐得".split())
# characters that are verbs or adjectives on their own, when jieba tags the word before 得 otherwise
_VERB_CHARS = set("跑说写做长唱画走跳睡吃玩学干来去哭笑看听讲打飞忙累饿冷热高低快慢好坏多少大小")
# after these, a bare 得 is 'get' (得了, 得到, 得不到, 得一百分), not 'must'
_NOT_AFTER_DEI = set("了到出过很太最不一二三四五六七八九十几第")


def _copy_reduplicated(pieces):
    """V一V / V了V (数一数, 看了看): the second verb is read like the first."""
    chars = [(p, i) for p in pieces for i in range(len(p.text))]
    for k in range(len(chars) - 2):
        (a, i), (b, j), (c, m) = chars[k:k + 3]
        if a.text[i] == c.text[m] and b.text[j] in "一了" and a.start + i + 2 == c.start + m:
            neutral = c.syllables[m].endswith("5")
            c.syllables[m] = a.syllables[i][:-1] + ("5" if neutral else a.syllables[i][-1])


# kinship terms and the like whose doubled form ends in a neutral tone (妈妈 ma1 ma5, 奶奶 nai3 nai5)
KINSHIP = set("爸妈爷奶姥哥姐弟妹叔舅婶伯姑姨嫂婆公宝太娃谢")


def _neutral_reduplication(pieces):
    """AA kinship nouns and AA verbs (看看, 想想) read their second syllable in the neutral tone."""
    for piece in pieces:
        text = piece.text
        verb = piece.pos.startswith("v") and text not in PHRASES_DICT  # 处处 (everywhere) is in it
        if len(text) == 2 and text[0] == text[1] and (text[0] in KINSHIP or verb):
            piece.syllables[1] = piece.syllables[1][:-1] + "5"


def _clause_before(text, word):
    """The sentence text from the last pause up to `word`."""
    return re.split(r"[，、；：…。！？]", text[:word.start])[-1]


def _mark_erhua(words):
    """儿 after a syllable in the same word (or glued to the previous word) is erhua: read as -r."""
    han = [w for w in words if w.kind == "han"]
    for k, word in enumerate(han):
        for i, ch in enumerate(word.text):
            if ch != "儿" or word.text in NOT_ERHUA:
                continue
            if i > 0:
                glued = True
            else:
                prev = han[k - 1] if k > 0 else None
                glued = (prev is not None and prev.start + len(prev.text) == word.start and word.text == "儿"
                         and prev.syllables and prev.syllables[-1][:-1] != "er")
            if glued and not (i > 0 and word.syllables[i - 1][:-1] == "er"):
                word.erhua[i] = True
                word.syllables[i] = "er5"


def _lexical_yi_bu(words):
    """pypinyin's phrases carry some sandhi (一个 yi2 ge4, 不要 bu2 yao4): back to lexical tones."""
    for word in words:
        for i, ch in enumerate(word.text if word.kind == "han" else ""):
            if ch == "一" and word.syllables[i] in ("yi2", "yi4"):
                word.syllables[i] = "yi1"
            elif ch == "不" and word.syllables[i] == "bu2":
                word.syllables[i] = "bu4"


def _pieces(word):
    """A word outside the phrase dictionary that holds a rule character is read in pieces (pypinyin's
    own phrase segmentation), so a rule sees 长 in 长时间 as it sees a lone 长; other words stay whole."""
    if word.text in PHRASES_DICT or word.text in OVERRIDES or not RULE_CHARS & set(word.text):
        return [word]
    pieces, offset = [], 0
    for part in _mmseg.cut(word.text):
        pieces.append(Word(part, word.pos, word.start + offset, "han"))
        offset += len(part)
    return pieces


def _model_readings(pieces, readings):
    """g2pM's reading for each character that no dictionary phrase covers; -> the offsets it read.

    Inside a phrase of pypinyin's dictionary the phrase's reading stands: on CPP's dev split the
    two agree in accuracy there (97.6% / 97.7%), and the model, trained on Wikipedia sentences with
    every reading of a character about equally common, misreads everyday words (乐器 le4, 一只 zhi3).
    A character read alone is where pypinyin falls back to its most common reading (78.6% on dev,
    the model 97.0%)."""
    read = set()
    for piece in pieces:
        if piece.phrase or piece.text in OVERRIDES or piece.text in PHRASES_DICT:
            continue
        offset = 0
        for part in (_mmseg.cut(piece.text) if len(piece.text) > 1 else [piece.text]):
            if len(part) == 1 or part not in PHRASES_DICT:
                for i in range(offset, offset + len(part)):
                    reading = readings.get(piece.start + i)
                    if reading and reading.g2pm:
                        piece.syllables[i] = reading.g2pm
                        read.add(piece.start + i)
            offset += len(part)
    return read


# How sure our everyday model must be to overrule the reading the rest settled on: g2pM's (trained on
# Wikipedia) at 0.8, a dictionary phrase's or a context rule's at 0.95; never inside a name (jieba's
# nr, ns, nrt, nrfg), which g2pL's everyday sentences hardly have and g2pM learned from Wikipedia
# (塞浦路斯 sai4, 薄熙来 bo2). Measured on the dev splits (README): overruling everywhere reads g2pL
# 96.78% but CPP 97.07% (below the frontend without it, 97.33%); these gates read 96.68% and 97.33%.
OVER_G2PM, OVER_PHRASES = 0.8, 0.95
NAMES = ("nr", "ns", "nrt", "nrfg")


def _everyday(pieces, readings, by_g2pm):
    """Our everyday model (polyphone.py) on its characters: it was given the reading everything above
    settled on, and learned from g2pL's web sentences where that reading is wrong. `by_g2pm`: the
    offsets whose reading is g2pM's."""
    for piece in pieces:
        if piece.pos in NAMES:
            continue
        for i, syllable in enumerate(piece.syllables):
            at = piece.start + i
            reading = readings.get(at)
            if reading and reading.everyday:
                ours, probability = reading.everyday.get(syllable, reading.everyday[None])
                if probability >= (OVER_G2PM if at in by_g2pm else OVER_PHRASES):
                    piece.syllables[i] = ours


def _keep_whole(words, spans):
    """Cut and join the Chinese words so that each (start, end) span of `text` is one word (a user's
    lexicon word or annotated group): jieba's segmentation of everything else stays."""
    cuts = {b for span in spans for b in span}
    pieces = []
    for word in words:
        bounds = [0] + sorted(c - word.start for c in cuts if word.start < c < word.start + len(word.text))
        if word.kind != "han" or len(bounds) == 1:
            pieces.append(word)
            continue
        for a, b in zip(bounds, bounds[1:] + [len(word.text)]):
            pieces.append(Word(word.text[a:b], word.pos, word.start + a, "han"))
    starts = {start: end for start, end in spans}
    out = []
    for piece in pieces:
        inside = out and out[-1].kind == "han" and out[-1].start + len(out[-1].text) == piece.start and (
            out[-1].start in starts and piece.start < starts[out[-1].start])
        if inside and piece.kind == "han":
            out[-1].text += piece.text  # the span's first piece collects the rest
        else:
            out.append(piece)
    return out


def analyze(text, readings=None, overrides=None, whole=()):
    """Normalised text -> [Word] with lexical pinyin on every Chinese and Latin word.

    `readings`: the polyphone models' {offset: polyphone.Reading} for `text`, when the caller has read
    a longer text at once (Frontend.sentences); computed here otherwise. `overrides`: the user's
    {offset: (syllable, source)}, which win over everything else; `whole`: (start, end) spans that
    are kept as one word each."""
    words = _keep_whole(segment(text), whole) if whole else segment(text)
    han = [w for w in words if w.kind == "han"]
    pieces = [p for w in han for p in _pieces(w)]
    for piece, reading in zip(pieces, _pinyin(pieces)):
        piece.syllables = list(reading)
    readings = polyphone.read(text) if readings is None else readings
    by_g2pm = _model_readings(pieces, readings)
    _lexical_yi_bu(pieces)
    _fix_polyphones(pieces, text)
    _copy_reduplicated(pieces)
    _neutral_reduplication(pieces)
    _everyday(pieces, readings, by_g2pm)
    by_char = {p.start + i: s for p in pieces for i, s in enumerate(p.syllables)}
    for word in han:
        word.chars = [word.start + i for i in range(len(word.text))]
        word.syllables = [by_char[c] for c in word.chars]
        word.erhua = [False] * len(word.text)
    for word in words:
        if word.kind == "latin":
            _read_latin(word)
    _mark_erhua(words)
    for word in words:
        word.sources = ["model"] * len(word.syllables)
        for i, char in enumerate(word.chars if word.kind == "han" else ()):
            if overrides and char in overrides:
                word.syllables[i], word.sources[i] = overrides[char]
                word.erhua[i] = False  # a 儿 the user gave a syllable is that syllable
    return words


def g2p(text):
    """Normalised text -> one lexical pinyin syllable per Chinese character (letters spelled)."""
    return [s for word in analyze(text) for s in word.syllables]
