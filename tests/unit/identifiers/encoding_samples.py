"""Blacklist files in UTF-8, GB18030, Big5 and mixed encodings, made from realistic Chinese rows.

Rows hold what members' files hold: organization names (city, trade name, business, legal form),
short notes in Chinese, the Chinese category names and case references with a province prefix.
Big5 files carry the same text in traditional characters (OpenCC ``s2tw``), as a Taiwan or Hong
Kong office would write it. Everything is drawn from the caller's seeded ``random.Random``.
"""

from __future__ import annotations

import csv
import functools
import io
import random

import opencc

from alliance_psi.identifiers.categories import CATEGORY_NAMES

CITIES = "北京 上海 广州 深圳 杭州 成都 武汉 西安 天津 南京 重庆 长沙 郑州 济南 青岛 厦门 福州 合肥 昆明 苏州 东莞 佛山".split()
TRADE_NAMES = "鑫源 恒达 宏图 金盛 华信 汇通 诚信 众联 安心 顺达 博远 盛世 瑞丰 聚财 融汇 宝鼎 普惠 钱袋 易贷 乐享 维权 公道".split()
BUSINESSES = "贷款咨询 信息咨询 网络科技 法律咨询 商务咨询 金融服务 投资管理 企业管理 财务顾问 征信修复 债务重组 融资担保".split()
FORMS = "有限公司 有限责任公司 股份有限公司 工作室 事务所 服务部 咨询中心".split()
NOTES = (
    "冒充银行放贷",
    "代理投诉收取高额费用",
    "组织恶意投诉",
    "反催收联盟群主",
    "收取前期费用后失联",
    "诱导客户停止还款",
    "职业投诉人，多地出现",
    "涉嫌洗钱，资金快进快出",
    "出租出借银行账户",
    "批量注册薅羊毛",
    "伪造病历申请停息挂账",
    "自称律师事务所工作人员",
    "征信修复骗局",
    "刷单返利诈骗",
)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN_NAMES = "伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 涛 明 超 建国 志强 海燕 晓明".split()
CATEGORIES = tuple(CATEGORY_NAMES.values())
PROVINCES = "粤京沪浙川鄂陕津苏渝湘豫鲁"
HEADER = ("type", "value", "category", "severity", "first_seen", "case_ref", "note")


def rows(rng: random.Random, n: int) -> list[list[str]]:
    """``n`` rows: two in five organization names, the others mobile numbers, half with a note."""
    out = []
    for _ in range(n):
        note = rng.choice(NOTES) if rng.random() < 0.5 else ""
        if note and rng.random() < 0.3:
            note = f"{rng.choice(SURNAMES)}{rng.choice(GIVEN_NAMES)}：{note}"
        case_ref = f"{rng.choice(PROVINCES)}-2025-{rng.randrange(1, 9999)}"
        if rng.random() < 0.4:
            name = f"{rng.choice(CITIES)}市{rng.choice(TRADE_NAMES)}{rng.choice(BUSINESSES)}{rng.choice(FORMS)}"
            out.append(["org_name", name, rng.choice(CATEGORIES), "", "2025-01-02", case_ref, note])
        else:
            out.append(["phone", f"138{rng.randrange(10**8):08d}", rng.choice(CATEGORIES), "", "", case_ref, note])
    return out


def text(rng: random.Random, n: int) -> str:
    """A CSV file of ``n`` rows under the English header, as Excel writes it (CRLF)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows(rng, n))
    return buffer.getvalue()


@functools.cache
def _traditional() -> opencc.OpenCC:
    return opencc.OpenCC("s2tw")


def traditional(simplified: str) -> str:
    """The text in traditional characters, as Taiwan writes them."""
    return str(_traditional().convert(simplified))


def sample(kind: str, rng: random.Random, n: int) -> bytes:
    """A file of ``n`` rows: ``utf-8``, ``gb18030`` (simplified), ``big5`` or ``traditional-gb18030``
    (traditional characters), or ``mixed`` (UTF-8 with one GB18030 row holding Chinese)."""
    if kind in ("utf-8", "gb18030"):
        return text(rng, n).encode(kind)
    if kind == "big5":
        return traditional(text(rng, n)).encode("big5", errors="replace")
    if kind == "traditional-gb18030":
        return traditional(text(rng, n)).encode("gb18030")
    if kind == "mixed":
        lines = text(rng, n).encode("utf-8").split(b"\r\n")
        while (row := text(rng, 1).split("\r\n")[1].encode("gb18030")).isascii():
            pass
        lines.insert(rng.randrange(1, len(lines)), row)
        return b"\r\n".join(lines)
    raise ValueError(kind)
