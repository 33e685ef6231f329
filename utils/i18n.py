"""The course language at runtime: `t()` for strings that code shows, numbers, Chinese fonts.

    set_language("fr"); t("Loss") -> "Perte"; t("{n} images", n=3); number(0.5, ".2f") -> "0,50"
Translations: `utils/locales/<lang>.po` (msgid = the English; untranslated or fuzzy -> English).
"""

from __future__ import annotations

import functools
import numbers
import re
import string
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

LOCALES = Path(__file__).resolve().parent / "locales"
LANGUAGES = {"en": "English", "fr": "Français", "es": "Español", "it": "Italiano",
             "pt": "Português", "zh": "中文"}
SOURCE_LANG = "en"
# Babel's locale of each course language (pt is Brazilian Portuguese, zh Simplified Chinese)
BABEL_LOCALES = {"en": "en", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "zh": "zh_Hans"}
# Fonts that draw Chinese, most common first (Linux, macOS, Windows).
_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
              "WenQuanYi Micro Hei", "Droid Sans Fallback", "PingFang SC", "Heiti SC",
              "Microsoft YaHei", "SimHei", "Arial Unicode MS")

_current = {"lang": SOURCE_LANG}
_warned: set[str] = set()


def set_language(lang: str) -> str:
    """Choose the language of `t()` (and, for zh, a font that plots can draw it with)."""
    if lang not in LANGUAGES:
        raise ValueError(f"Unknown language {lang!r}; choose one of {', '.join(LANGUAGES)}.")
    _current["lang"] = lang
    if lang == "zh":
        use_cjk_font()
    return lang


def get_language() -> str:
    """The language `t()` uses now."""
    return _current["lang"]


def find_cjk_font() -> str | None:
    """The name of an installed font that draws Chinese (matplotlib's name for it), or None."""
    try:
        from matplotlib import font_manager
    except ImportError:
        return None
    installed = {f.name for f in font_manager.fontManager.ttflist}
    if not installed.intersection(_CJK_FONTS):  # installed after matplotlib built its cache?
        for path in font_manager.findSystemFonts():
            if re.search(r"cjk|wqy|wenquanyi|droidsansfallback|notosanssc", Path(path).name, re.I):
                font_manager.fontManager.addfont(path)
        installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def use_cjk_font() -> str | None:
    """Put an installed Chinese font first in matplotlib's sans-serif list; returns its name.
    Without one, say so in one line (with the fix) instead of a warning per missing glyph."""
    font = find_cjk_font()
    if font is None:
        if "font" not in _warned:
            _warned.add("font")
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from (current )?font")
            print("提示：未找到中文字体，图中的中文会显示为方框；请安装 fonts-noto-cjk 并重启内核。"
                  "(No Chinese font for plots: install fonts-noto-cjk, then restart the kernel.)")
        return None
    from matplotlib import rcParams
    rcParams["font.family"] = "sans-serif"
    rcParams["font.sans-serif"] = [font] + [f for f in rcParams["font.sans-serif"] if f != font]
    rcParams["axes.unicode_minus"] = False  # CJK fonts often lack the minus sign glyph
    return font


@functools.cache
def catalog(lang: str, locales: Path = LOCALES) -> dict[str, str]:
    """{English: translated} from `<locales>/<lang>.po`, read once, translated entries only."""
    path = Path(locales) / f"{lang}.po"
    if not path.exists():
        return {}
    import polib  # only when a language other than English is used
    return {e.msgid: e.msgstr for e in polib.pofile(str(path)) if e.translated()}


def t(text: str, lang: str | None = None, **values) -> str:
    """Translate a string shown to students; `values` fill `{placeholders}` after translation."""
    lang = lang or _current["lang"]
    out = text if lang == SOURCE_LANG else catalog(lang).get(text, text)
    return _NumberFormatter(lang).format(out, **values) if values else out


def notice_file():
    """stdout in a notebook (stderr looks like an error), else stderr (keeps --json clean)."""
    return sys.stdout if "ipykernel" in sys.modules else sys.stderr


@functools.cache
def number_symbols(lang: str) -> tuple[str, str, str]:
    """(thousands separator, decimal mark, percent template) of a language, from Babel's CLDR data:
    ("\u202f", ",", "{}\u00a0%") in French, so 50000 -> "50 000", 0.3 -> "0,3", 0.5 -> "50 %"."""
    from babel.numbers import format_percent, get_decimal_symbol, get_group_symbol

    locale = BABEL_LOCALES.get(lang, lang)
    return (get_group_symbol(locale), get_decimal_symbol(locale),
            format_percent(0, locale=locale).replace("0", "{}", 1))


def number(value: float, spec: str = "", lang: str | None = None) -> str:
    """`format(value, spec)` the course language's way: number(0.5, ".2f") -> "0,50" in fr."""
    out, lang = format(value, spec), lang or _current["lang"]
    if lang == SOURCE_LANG or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return out
    thousands, decimal, percent = number_symbols(lang)
    out = out.translate({ord(","): thousands, ord("."): decimal})
    return percent.format(out[:-1]) if spec.endswith("%") and out.endswith("%") else out


@dataclass
class _NumberFormatter(string.Formatter):
    """str.format that writes each number with `number`."""
    lang: str

    def format_field(self, value, format_spec: str) -> str:
        return number(value, format_spec, self.lang)
