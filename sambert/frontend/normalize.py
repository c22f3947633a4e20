"""Text normalisation: real-world Chinese text -> what a speaker reads aloud, in Chinese characters.

Numbers, dates, times, money, units and symbols are spelled out; full-width forms become their plain
forms first so one set of rules sees them; traditional characters become simplified (the segmenter and
the phrase dictionary are simplified). Latin letters stay as letters: `g2p` spells them out.
The output keeps Chinese punctuation (，。！？；：、…) because prosody reads pauses from it.

The rules run in a fixed order, most specific first (a phone number before a plain integer, a date
before a range), each one a regex with a function that writes the reading.
"""

import re
import unicodedata

import opencc

from .g2p import posseg as segmenter

# OpenCC's phrase-aware traditional -> simplified tables (幹什麼 -> 干什么, but 不干你事 stays 干).
_TO_SIMPLIFIED = opencc.OpenCC("t2s")

DIGITS = "零一二三四五六七八九"
# Bare "2" before a measure word is read 两 (两个, 两天); dates and ranks keep 二 (二月, 二号, 二楼).
_LIANG_BEFORE = set(
    "个只本位次件条张天年种岁名家辆台部头匹双对块元斤米层周遍倍份句首所座间套杯瓶碗盘片颗粒根支枝把节"
    "届场期批项门道类样回趟笔封架艘棵朵群口桶箱包袋声眼步斤吨升克秒分点小千万亿"
)
_NOT_LIANG_AFTER = ("年级", "点钟以后")  # 2年级 is a grade: 二年级

# a date is no amount: not after a currency sign or code (¥2010.05, HKD 12.05), not before a unit (12.05元, 12.05kg)
_NOT_MONEY = r"(?<![¥￥$€£A-Z])(?<![¥￥$€£A-Z]\s)"
_NO_UNIT = r"(?!\s?[元块角万亿千百兆A-Za-z%‰℃°])"

_SMALL_UNITS = ("", "十", "百", "千")
_BIG_UNITS = ("", "万", "亿", "万亿")


def read_digits(digits, yao=False):
    """'110' -> 一一零 (幺幺零 for phone numbers, where 1 is read yao to keep it apart from 7)."""
    table = DIGITS.replace("一", "幺") if yao else DIGITS
    return "".join(table[int(d)] for d in digits)


def _read_group(group):
    """A group of up to four digits, with inner zeros read once: 1005 -> 一千零五."""
    out, zero = "", False
    for i, d in enumerate(group):
        unit = _SMALL_UNITS[len(group) - 1 - i]
        if d == "0":
            zero = bool(out)
        else:
            out += ("零" if zero else "") + DIGITS[int(d)] + unit
            zero = False
    return out


def read_integer(number, liang=False):
    """'256' -> 二百五十六. `liang`: the leading 2 of 2, 2千, 2万, 2亿 is read 两."""
    number = number.lstrip("0") or "0"
    if number == "0":
        return "零"
    if len(number) > 16:
        return read_digits(number)
    groups = []
    while number:
        groups.insert(0, number[-4:])
        number = number[:-4]
    out, zero = "", False
    for i, group in enumerate(groups):
        big = _BIG_UNITS[len(groups) - 1 - i]
        if int(group) == 0:
            zero = bool(out)
            continue
        if out and (zero or len(group.lstrip("0")) < 4):
            out += "零"
        out += _read_group(group.lstrip("0")) + big
        zero = False
    if out.startswith("一十"):  # 10..19 at the top: 十五, 十万, not 一十五
        out = out[1:]
    if liang and out[0] == "二" and (len(out) == 1 or out[1] in "千万亿"):
        out = "两" + out[1:]
    return out


def read_decimal(number):
    """'3.14' -> 三点一四; an integer string reads as an integer."""
    whole, _, frac = number.partition(".")
    out = read_integer(whole)
    return out + "点" + read_digits(frac) if frac else out


def read_number(number, after=""):
    """A plain number (optional sign, commas, decimals); `after` is the text that follows it."""
    number = number.replace(",", "")
    sign = ""
    if number[0] in "-−":
        sign, number = "负", number[1:]
    if "." in number:
        return sign + read_decimal(number)
    # 两 for a lone 2 before a measure word (两个) and for a leading 2 in 2千 / 2万 / 2亿;
    # 二十, 二百, 二月, 二楼 stay
    measure = after[:1] in _LIANG_BEFORE and not after.startswith(_NOT_LIANG_AFTER)
    liang = not sign and ((number == "2" and measure) or len(number.lstrip("0")) >= 4)
    return sign + read_integer(number, liang=liang)


# --- the rules -----------------------------------------------------------------------------------

NUM = r"\d+(?:\.\d+)?"
_PHONE_WORDS = (
    "电话|手机|号码|手机号|热线|拨打|致电|联系|传真|QQ|qq|微信|验证码|邮编|账号|卡号|尾号|编号|单号|学号|工号|"
    "房间|车牌|航班|车次|密码|分机|座机"
)
_RATIO_WORDS = "比分|比例|比数|打成|战胜|击败|赢|输|胜|负|以|配比|兑|赔率|大比分|比"
_RESULT_WORDS = "获胜|战胜|取胜|击败|胜出|落败|告负|赢|输|战平|逆转|的比分"

_UNITS = {
    "km/h": "公里每小时", "m/s": "米每秒", "km²": "平方公里", "km2": "平方公里", "m²": "平方米",
    "m2": "平方米", "cm²": "平方厘米", "m³": "立方米", "m3": "立方米", "cm³": "立方厘米",
    "kWh": "千瓦时", "kwh": "千瓦时", "mAh": "毫安时", "kHz": "千赫兹", "MHz": "兆赫兹", "GHz": "吉赫兹",
    "Hz": "赫兹", "km": "公里", "kg": "千克", "cm": "厘米", "mm": "毫米", "nm": "纳米", "mg": "毫克",
    "ml": "毫升", "mL": "毫升", "kW": "千瓦", "kw": "千瓦", "ms": "毫秒", "min": "分钟", "mph": "英里每小时",
    "m": "米", "g": "克", "t": "吨", "L": "升", "l": "升", "h": "小时", "s": "秒", "W": "瓦", "V": "伏",
    "lb": "磅", "ft": "英尺", "in": "英寸",
    "KB/s": "KB每秒", "MB/s": "MB每秒", "GB/s": "GB每秒", "kb/s": "kb每秒", "Mb/s": "Mb每秒",
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_CURRENCY = {
    "¥": "元", "￥": "元", "$": "美元", "US$": "美元", "HK$": "港元", "A$": "澳元", "C$": "加元", "S$": "新加坡元",
    "NT$": "新台币", "€": "欧元", "£": "英镑", "₩": "韩元", "₽": "卢布",
    "CNY": "人民币", "RMB": "人民币", "USD": "美元", "HKD": "港元", "EUR": "欧元", "GBP": "英镑", "JPY": "日元",
    "AUD": "澳元", "CAD": "加元", "SGD": "新加坡元", "KRW": "韩元", "TWD": "新台币", "CHF": "瑞士法郎",
}
_CURRENCY_RE = "|".join(re.escape(c) for c in sorted(_CURRENCY, key=len, reverse=True))
# business models said "B to B": the 2 between two letters is English "to" (not every letter-2-letter: H2O)
_TO_WORDS = ("B2B", "B2C", "C2C", "C2B", "O2O", "P2P", "B2G", "G2B", "F2C", "M2M")
# service numbers read digit by digit (123xx government lines: 12306, 12315; 10086, 10010; 955xx banks),
# unless a measure word shows they count something (12306人)
_SERVICE_NUMBER = r"(?<![\d.])(?:123[0-9]{2}|10086|10010|955[0-9]{2})(?![\d.%])(?![个人元块次名件万千百亿年月日号位份台辆米克吨])"
_SYMBOLS = {
    "+": "加", "=": "等于", "×": "乘", "÷": "除以", "≈": "约等于", "≠": "不等于", "≥": "大于等于",
    "≤": "小于等于", ">": "大于", "<": "小于", "±": "正负", "&": "和", "@": "艾特", "#": "井号",
    "°": "度", "‰": "千分号", "%": "百分号", "№": "第", "†": "", "§": "第",
}
_VULGAR = {"½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅛": "1/8"}
_PUNCT = {
    ",": "，", ".": "。", "!": "！", "?": "？", ";": "；", ":": "：", "、": "、", "…": "…", "—": "，",
    "～": "", "~": "", "(": "，", ")": "，", "[": "，", "]": "，", "{": "，", "}": "，", "/": "，",
    "|": "，", "\\": "，", "-": "，", "–": "，", "_": "", "*": "", "^": "", "`": "", "'": "", '"': "",
    "“": "", "”": "", "‘": "", "’": "", "《": "", "》": "", "〈": "", "〉": "", "「": "", "」": "",
    "『": "", "』": "", "【": "，", "】": "，", "〔": "，", "〕": "，", "·": "", "•": "", "・": "",
    "。": "。", "，": "，", "！": "！", "？": "？", "；": "；", "：": "：",
}


def _digits_with_yao(match):
    return read_digits(re.sub(r"\D", "", match.group(0)), yao=True)


def _phone(match):
    prefix = "加" + read_digits(match.group(1)) if match.group(1) else ""
    return prefix + read_digits(re.sub(r"\D", "", match.group(2)), yao=True)


def _keyword_code(match):
    return match.group(1) + read_digits(re.sub(r"\D", "", match.group(2)), yao=True)


def _date(match):
    year, month, day = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group(0)  # not a date: later rules read the numbers
    return f"{read_digits(year)}年{read_integer(month)}月{read_integer(day)}日"


def _month_of_year(match):
    """2008-08, 2008.08, 08/2008: the four-digit number is the year."""
    a, b = re.findall(r"\d+", match.group(0))
    year, month = (a, b) if len(a) == 4 else (b, a)
    if not 1 <= int(month) <= 12:
        return match.group(0)
    return f"{read_digits(year)}年{read_integer(month)}月"


def _date_year_last(match):
    month, day, year = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group(0)
    return f"{read_digits(year)}年{read_integer(month)}月{read_integer(day)}日"


def _month_day(match):
    month, day = re.findall(r"\d+", match.group(0))
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group(0)
    return f"{read_integer(month)}月{read_integer(day)}日"


def _score(match):
    """a-b or a/b ending a clause after a team (中国1-2, 拉齐奥 2/2, 主队3-2) is a score; after
    anything else (年龄18-25) a range or a fraction, as the later rules would read it."""
    name = re.search(r"[\u4e00-\u9fff]{1,10}$", match.string[:match.start(1)] + match.group(1).strip()).group()
    last = list(segmenter().cut(name))[-1]
    a, b = match.group(2, 3)
    if last.flag in ("ns", "nr", "nz", "nt", "nrt") or last.word.endswith("队"):
        return match.group(1) + f"{read_integer(a)}比{read_integer(b)}"
    if "/" in match.group(0):
        return match.group(1) + f"{read_number(b)}分之{read_number(a)}"
    return match.group(1) + f"{read_number(a)}到{read_number(b)}"


def _year_range(match):
    return f"{read_digits(match.group(1))}到{read_digits(match.group(2))}年"


def _year(match):
    return read_digits(match.group(1)) + "年"


def _clock(match):
    hour, minute, second = match.group(1), match.group(2), match.group(3)
    half = (match.group(4) or "").lower() if match.re.groups >= 4 else ""
    out = {"a": "上午", "p": "下午"}.get(half, "") + read_integer(hour, liang=True) + "点"
    if minute != "00" or second:
        out += ("零" if minute[0] == "0" and minute != "00" else "") + read_integer(minute) + "分"
    if second:
        out += ("零" if second[0] == "0" and second != "00" else "") + read_integer(second) + "秒"
    return out


def _time_or_ratio(match):
    a, b, c = match.groups()
    before = match.string[max(0, match.start() - 4):match.start()]
    is_ratio = (
        re.search(f"({_RATIO_WORDS})\\s*$", before)
        or len(b) != 2
        or int(a) > 24
        or int(b) > 59
        or (c is not None and int(c) > 59)
    )
    if is_ratio:
        return "比".join(read_integer(p) for p in (a, b, c) if p)
    return _clock(match)


def _money(match):
    symbol, amount, scale = match.group(1), match.group(2), match.group(3) or ""
    amount = amount.replace(",", "")
    if "." in amount:
        amount = amount.rstrip("0").rstrip(".")  # ¥12.50 -> 十二点五元, ¥3.00 -> 三元
    return read_number(amount, after=scale or "元") + scale + _CURRENCY[symbol]


def _temperature(match):
    low, high, scale = match.group(1), match.group(2), match.group(3)
    unit = "华氏度" if "F" in scale or "℉" in scale else "摄氏度"
    return "到".join(_degrees(v) for v in (low, high) if v) + unit


def _degrees(value):
    value = value.replace(" ", "")
    below = value.startswith(("零下", "-", "−"))
    return ("零下" if below else "") + read_decimal(value.lstrip("零下-−"))


def _percent_range(match):
    return f"百分之{read_decimal(match.group(1))}到百分之{read_decimal(match.group(2))}"


def _percent(match):
    sign = {"-": "负", "−": "负", "+": "正"}.get(match.group(1), "")
    share = "千分之" if match.group(3) == "‰" else "百分之"
    return sign + share + read_decimal(match.group(2))


def _fraction(match):
    return f"{read_number(match.group(2))}分之{read_number(match.group(1))}"


def _range(match):
    a, b, after = match.group(1), match.group(2), match.group(3)
    before = match.string[max(0, match.start() - 4):match.start()]
    rest = match.string[match.end() - len(after):match.end() + 2]
    if all(re.fullmatch(r"(19|20)\d\d", n) for n in (a, b)) and a < b:
        return f"{read_digits(a)}到{read_digits(b)}{after}"  # years: 2023-2024
    if re.search(f"({_RATIO_WORDS})\\s*$", before) or re.match(_RESULT_WORDS, rest):
        return f"{read_number(a)}比{read_number(b)}{after}"  # a score: 3-2获胜
    return f"{read_number(a)}到{read_number(b, after)}{after}"


def _math(match):
    expr = match.group(0)
    out = []
    for token in re.findall(rf"{NUM}|[-+×*÷/=]", expr):
        out.append(read_number(token) if token[0].isdigit() else {"-": "减", "*": "乘", "/": "除以"}.get(token, _SYMBOLS.get(token, "")))
    return "".join(out)


def _times(match):
    return f"{read_number(match.group(1))}乘{read_number(match.group(2))}"


def _unit(match):
    low, high, unit = match.group(1), match.group(2), match.group(3)
    word = _UNITS[unit]
    if high:  # 3-5km -> 三到五公里
        return f"{read_number(low)}到{read_number(high, after=word)}{word}"
    return read_number(low, after=word) + word


def _negative(match):
    return match.group(1) + "负" + read_decimal(match.group(2))


def _version(match):
    return "点".join(read_digits(part) for part in match.group(0).split("."))


def _plain_number(match):
    number, after = match.group(1), match.string[match.end():match.end() + 3]
    digits = number.replace(",", "")
    if len(digits) > 1 and digits[0] == "0" and "." not in digits:
        return read_digits(digits)  # codes like 007, 0571
    before = match.string[max(0, match.start() - 1):match.start()]
    if before in ("第", "、"):  # ranks and enumerations keep 二: 第1、2名
        return read_number(number)
    return read_number(number, after)


def _url(match):
    text = re.sub(r"^[a-zA-Z]+://", "", match.group(0)).rstrip("/")
    return _spell_address(text)


def _spell_address(text):
    names = {".": "点", "/": "斜杠", "@": "艾特", "-": "杠", "_": "下划线", ":": "冒号", "?": "问号",
             "=": "等于", "&": "和", "#": "井号", "%": "百分号", "~": "波浪号", "+": "加"}
    out = []
    for ch in text:
        if ch.isdigit():
            out.append(DIGITS[int(ch)])
        elif ch in names:
            out.append(names[ch])
        else:
            out.append(ch)
    return " ".join(re.findall(r"[A-Za-z]+|[^A-Za-z]+", "".join(out))) + " "


RULES = [
    # addresses first: everything in them is spelled
    (re.compile(r"(?:[a-zA-Z]+://|www\.)[\w./?=&%#~+:-]+[\w/]"), _url),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), lambda m: _spell_address(m.group(0))),
    (re.compile(r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?\s?([aApP])\.?[mM]\.?(?![A-Za-z])"), _clock),  # 8:00 a.m.: before dots in Latin text
    # dots inside Latin text: node.js -> node点js, U.S.A. -> USA
    (re.compile(r"(?<=[a-z])\.(?=[a-z])"), lambda m: "点"),
    (re.compile(r"(?<![A-Za-z])(?:[A-Z]\.){2,}"), lambda m: m.group(0).replace(".", "")),
    (re.compile(r"(?<![A-Za-z])(Mr|Mrs|Ms|Dr|St|Prof|Jr|Inc|Ltd|Co|vs)\."), lambda m: m.group(1) + " "),
    (re.compile(rf"(?<![A-Za-z])({'|'.join(_TO_WORDS)})(?![A-Za-z\d])"), lambda m: f" {m.group(1)[0]} to {m.group(1)[2]} "),
    # letter-digit joins: COVID-19, K-pop, 1st, No.1
    (re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z\d])"), lambda m: " "),
    (re.compile(r"(?<![A-Za-z])(\d+)(?:st|nd|rd|th)(?![A-Za-z])"), lambda m: "第" + read_integer(m.group(1))),
    (re.compile(r"(?<![A-Za-z])No\.\s?(?=\d)"), lambda m: "第"),
    # phone numbers and codes are read digit by digit
    (re.compile(r"(?<![\d.])(?:\+?(86)[- ]?)?(1[3-9]\d[- ]?\d{4}[- ]?\d{4})(?![\d.])"), _phone),
    (re.compile(r"(?<![\d.])(?:\(?0\d{2,3}[-)]\s?\d{7,8}|[48]00-?\d{3}-?\d{4})(?![\d.])"), _digits_with_yao),
    (re.compile(r"(?<=打|拨)(?:1[12]\d|9[56]\d{3}|12\d{3})(?![\d分个次元块下])"), _digits_with_yao),  # 110, 95555
    (re.compile(rf"((?:{_PHONE_WORDS})[是为:：\s]*)(\d[\d -]*\d{{2}})"), _keyword_code),
    (re.compile(_SERVICE_NUMBER), _digits_with_yao),
    (re.compile(r"(?<![\d.])(\d{2})后"), lambda m: read_digits(m.group(1)) + "后"),  # generations: 90后, 00后
    # dates and years
    (re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)"), _date),
    (re.compile(r"(?<![\d.])(\d{1,2})[-/.](\d{1,2})[-/.]((?:19|20)\d\d)(?![\d.])"), _date_year_last),  # 08-08-2008
    # year and month: 2008-08, 2008/8, 2008.08 (two-digit month after a dot: 2008.8 is a decimal), 08/2008
    (re.compile(rf"{_NOT_MONEY}(?<![\d.])(?:1[89]|20)\d\d(?:[-/]\d{{1,2}}|\.\d\d)(?![\d.%/-]){_NO_UNIT}"), _month_of_year),
    (re.compile(rf"{_NOT_MONEY}(?<![\d.])(?:0[1-9]|1[0-2])[-/.](?:19|20)\d\d(?![\d.]){_NO_UNIT}"), _month_of_year),
    # month and day written with a zero: 08-08, 08/08, 12.05 (3-5 stays a range, 3/4 a fraction, 8.08 a decimal)
    (re.compile(rf"{_NOT_MONEY}(?<![\d.])(?:0[1-9][-/.](?:0[1-9]|[12]\d|3[01])|1[0-2][-/.]0[1-9])(?![\d.%]){_NO_UNIT}"), _month_day),
    (re.compile(r"(?<!\d)(\d{4})\s*[-~～至到]\s*(\d{4})年"), _year_range),
    (re.compile(r"(?<!约|近|有|了|过|达)(?<!大约|过去|长达|已有|至少|将近)(?<![\d.])(\d{4})年(?!代?之久|左右|以上|以内|多|的时间)"),
     _year),
    (re.compile(r"['’](\d{2})年"), _year),
    (re.compile(r"(?<=\d[日号月年天点时分秒])\s?[-~～—–]\s?(?=\d)"), lambda m: "到"),
    (re.compile(r"(?<=\d:\d\d)\s?[-~～—–]\s?(?=\d{1,2}:\d\d)"), lambda m: "到"),  # 12:00-14:00
    # clock times vs ratios and scores (比分2:1)
    (re.compile(r"(?<!\d)(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?!\d)"), _time_or_ratio),
    (re.compile(r"(?<!\d)(\d+):(\d+)(?!\d)"), lambda m: f"{read_number(m.group(1))}比{read_number(m.group(2))}"),
    # money, temperature, percent
    (re.compile(rf"(?<![A-Za-z])({_CURRENCY_RE})\s?(\d[\d,]*(?:\.\d+)?)\s?([万亿千百]*)"), _money),
    (re.compile(rf"((?:零下|(?<![\d.])[-−])?\s?{NUM})(?:\s?[-~～至到]\s?((?:零下|[-−])?{NUM}))?\s?(℃|℉|°\s?[CF]|度C)"),
     _temperature),
    (re.compile(rf"({NUM})%?\s?[-~～至到]\s?({NUM})%"), _percent_range),
    (re.compile(rf"([-−+])?({NUM})\s?([%‰])"), _percent),
    (re.compile(r"(?<![A-Za-z\d.])(\d+(?:\.\d+)?)w(?![A-Za-z])"), lambda m: read_number(m.group(1)) + "万"),  # 300w: 万
    # numbers (and ranges) with a unit symbol
    (re.compile(rf"(?<![A-Za-z])({NUM})(?:\s?[-~～至到]\s?({NUM}))?\s?({_UNIT_RE})(?![A-Za-z²³\d])"), _unit),
    # arithmetic, products, fractions, ranges
    (re.compile(rf"{NUM}(?:\s?[-+×*÷/]\s?{NUM})+\s?=\s?{NUM}"), _math),
    (re.compile(rf"(?<![A-Za-z\d])({NUM})\s?[x×*]\s?({NUM})(?![A-Za-z\d])"), _times),
    # a score ends a clause right after a team's name: 中国1-2, 拉齐奥 2/2 (see _score)
    (re.compile(r"([\u4e00-\u9fff]\s?)(\d{1,2})-(\d{1,2})(?=$|[，。！？；,.!?;\s])"), _score),
    (re.compile(r"([\u4e00-\u9fff]\s)(\d{1,2})/(\d{1,2})(?=$|[，。！？；,.!?;\s])"), _score),
    (re.compile(r"(?<![\d./])(\d+)\s?/\s?(\d+)(?![\d/])"), _fraction),
    (re.compile(rf"(?<![\d.])({NUM})\s?[-~～—–]\s?({NUM})(?![\d.])(\D?)"), _range),
    # dotted digit strings: versions, IP addresses
    (re.compile(r"(?<![\d.])\d+(?:\.\d+){2,}(?![\d.])"), _version),
    # signs and plain numbers
    (re.compile(rf"(^|[^\w)）]|[\u4e00-\u9fff])[-−]({NUM})"), _negative),
    (re.compile(rf"(^|[^\w)）])\+(?={NUM})"), lambda m: m.group(1) + "正"),
    (re.compile(r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"), _plain_number),
]


def _clean(text):
    """Full-width -> plain, traditional -> simplified, control characters -> space."""
    text = text.translate(_FULLWIDTH)
    text = "".join(_VULGAR.get(ch, ch) for ch in text)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp") else ch for ch in text)
    return _TO_SIMPLIFIED.convert(text)


# Full-width ASCII (U+FF01..FF5E) and the ideographic space map to plain ASCII; full-width Chinese
# punctuation that has its own meaning (，。：) maps too and is turned back into Chinese punctuation below.
_FULLWIDTH = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20}


def _symbols_and_punctuation(text):
    out = []
    for ch in text:
        if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or ch.isascii() and ch.isalpha():
            out.append(ch)
        elif ch in _PUNCT:
            out.append(_PUNCT[ch])
        elif ch in _SYMBOLS:
            out.append(_SYMBOLS[ch])
        elif ch == " ":
            out.append(" ")
        # anything else (emoji, other scripts, box drawing...) has no reading: dropped
    text = "".join(out)
    # spaces only matter between Latin words; runs of pauses collapse to the strongest one
    text = re.sub(r"(?<![A-Za-z]) +| +(?![A-Za-z])", "", re.sub(" {2,}", " ", text))
    text = re.sub(r"[，、；：…]*([。！？])[，、；：…。！？]*", r"\1", text)
    text = re.sub(r"([，、；：…])[，、；：…]+", r"\1", text)
    return text.lstrip("，、；：…。！？")


def normalize(text):
    """Real-world text -> the words a reader says, in Chinese characters (Latin letters kept)."""
    text = _clean(text)
    text = re.sub(r"\.{3,}|。{2,}", "…", text)
    for pattern, reader in RULES:
        text = pattern.sub(reader, text)
    return _symbols_and_punctuation(text).strip()
