"""The "speakable sentence" filter for en->fr text pairs.

``check_pair(en, fr)`` returns ``(reason, en_clean, fr_clean)`` where ``reason`` is None for a
kept pair, else one of ``REASONS`` (the first check that fails, in that order). A kept pair has
only Latin letters, spaces and basic punctuation, 4-20 English words, and a French/English
character-length ratio within 0.3-3.5.
"""

from __future__ import annotations

import re
import unicodedata

# in the order they are checked (the first failing check names the reason)
REASONS = (
    "empty_source",        # no English text (e.g. the catalog header)
    "untranslated",        # no French text
    "plural",              # msgid_plural entries (forms depend on a number)
    "multiline",           # a newline inside the string
    "url",                 # URLs, e-mail addresses, file paths
    "format_specifier",    # %s %d %1 %(name)s {0} {name} ${VAR} \n escapes
    "markup",              # <b>, </a>, &amp; &#169;
    "accelerator",         # _File  &Open  ~Save  (keyboard mnemonics)
    "command_option",      # -v --print-dir, or a list bullet "- item"
    "digits",              # numerals: read differently by TTS than written
    "non_speakable_chars",  # anything else than letters and basic punctuation
    "too_short",           # fewer than MIN_WORDS English words
    "too_long",            # more than MAX_WORDS English words
    "length_ratio",        # len(fr) / len(en) outside [MIN_RATIO, MAX_RATIO]
    "same_as_source",      # French identical to English (not translated)
)
MIN_WORDS, MAX_WORDS = 4, 20
MIN_RATIO, MAX_RATIO = 0.3, 3.5

# punctuation allowed besides letters and spaces (after normalisation)
BASIC_PUNCT = set(".,;:!?'\"-«»")

_URL = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://|www\.|\S+@\S+\.[a-z]{2,}|(?:^|[\s(\"'])~?/[\w.-]+/|"
    r"\b[\w-]+\.(?:com|org|net|html?|php|xml|txt|png|svg|jpe?g|desktop|conf)\b)",
    re.IGNORECASE,
)
_FORMAT = re.compile(
    r"%(?:\d+\$)?[-+#0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|t|I64|I)?[diouxXeEfFgGaAcsSpn@]"
    r"|%\(\w+\)[a-zA-Z]|%\d+|%%|%\w+%"              # printf, python named, Qt %1, %%, %VAR%
    r"|\{\w*(?:[:!][^}]*)?\}"                       # {} {0} {name} {0:d}
    r"|\$\{?[A-Za-z_]\w*\}?|\$\d+"                    # $VAR ${VAR} $1
    r"|\\[ntr\"\\]"                                  # escapes left in the string
)
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>|&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);")
# GTK "_File", "Save _As"; KDE/Qt "&Open"; LibreOffice "~Save"
_ACCEL = re.compile(r"_[^\W_]|&[^\W\d_]|~[^\W\d_]")
_OPTION = re.compile(r"(?:^|\s)--?[^\W\d_]|^-\s")
# the pattern checks of check_pair, in the order of REASONS
_PATTERNS = (("url", _URL), ("format_specifier", _FORMAT), ("markup", _MARKUP), ("accelerator", _ACCEL),
             ("command_option", _OPTION))

_TRANSLATE = {
    "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " ",   # (narrow) no-break spaces
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"',
    "\u2013": "-", "\u2010": "-", "\u2011": "-",
    "\u2026": "...",
}


def normalize(text: str) -> str:
    """Unicode NFC, typographic spaces/quotes/dashes/ellipsis to basic ones, collapsed spaces."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(_TRANSLATE.get(ch, ch) for ch in text)
    return " ".join(text.split())


def _bad_chars(text: str) -> tuple[bool, bool]:
    """(has digits, has other non-speakable characters)."""
    odd = [ch for ch in text if ch != " " and ch not in BASIC_PUNCT
           and not (ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN"))]  # not a Latin letter
    return any(ch.isdigit() for ch in odd), any(not ch.isdigit() for ch in odd)


def num_words(text: str) -> int:
    return sum(1 for tok in text.split() if any(ch.isalpha() for ch in tok))


def check_pair(en: str, fr: str, plural: bool = False) -> tuple[str | None, str, str]:
    """Classify one en->fr pair: (None, en, fr) if speakable, else (reason, en, fr)."""
    if not en or not en.strip():
        return "empty_source", en, fr
    if not fr or not fr.strip():
        return "untranslated", en, fr
    if plural:
        return "plural", en, fr
    if "\n" in en.strip() or "\n" in fr.strip():
        return "multiline", en, fr
    en_n, fr_n = normalize(en), normalize(fr)
    both = (en_n, fr_n)
    for reason, pattern in _PATTERNS:
        if any(pattern.search(t) for t in both):
            return reason, en_n, fr_n
    flags = [_bad_chars(t) for t in both]
    if any(d for d, _ in flags):
        return "digits", en_n, fr_n
    if any(o for _, o in flags):
        return "non_speakable_chars", en_n, fr_n
    words = num_words(en_n)
    if words < MIN_WORDS:
        return "too_short", en_n, fr_n
    if words > MAX_WORDS:
        return "too_long", en_n, fr_n
    ratio = len(fr_n) / max(1, len(en_n))
    if not MIN_RATIO <= ratio <= MAX_RATIO:
        return "length_ratio", en_n, fr_n
    if fr_n.casefold() == en_n.casefold():
        return "same_as_source", en_n, fr_n
    return None, en_n, fr_n


def dedup_key(en: str) -> str:
    """Key under which two English sentences count as the same (case, punctuation, spacing)."""
    return " ".join("".join(ch if ch.isalnum() or ch.isspace() else " " for ch in en.casefold()).split())
