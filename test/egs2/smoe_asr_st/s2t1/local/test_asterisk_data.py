"""Tests for local/asterisk_data.py: transcript parsing, normalisation, ids."""

import gzip
import logging

import pytest

from local import asterisk_data as ad
from local.file_io import c_sorted


def test_parse_transcript_real_format(tmp_path, caplog):
    text = (
        "; Core Asterisk Sounds in English\n"
        "\n"
        "vm-tocallback: press 2 to call the person who sent this message\n"
        "digits/1: one\n"
        "dir-welcome:\n"
        "beep: [this is a simple beep tone]\n"
        "this line has no colon\n"
        "digits/1: uno\n"
        "spy-iax2: IAX (note: does not say \"2\")\n"
        "conf-adminmenu: Please press 1: to mute\n"
    )
    path = tmp_path / "core-sounds-en.txt.gz"
    path.write_bytes(gzip.compress(text.encode()))
    with caplog.at_level(logging.WARNING):
        entries, stats = ad.parse_transcript(path)
    assert list(entries) == ["vm-tocallback", "digits/1", "dir-welcome", "beep", "spy-iax2", "conf-adminmenu"]
    assert entries["digits/1"].raw == "one"  # first occurrence wins
    assert entries["dir-welcome"].raw == ""
    assert entries["conf-adminmenu"].raw == "Please press 1: to mute"  # split on the first colon only
    assert stats == {"entries": 6, "comments": 1, "blank": 1, "malformed": 1, "duplicate": 1}
    assert "malformed line" in caplog.text and "duplicate entry 'digits/1'" in caplog.text


def test_parse_transcript_latin1_fallback(tmp_path):
    path = tmp_path / "core-sounds-fr.txt"
    path.write_bytes("activated: activ\u00e9\n".encode("latin-1"))
    entries, _ = ad.parse_transcript(path)
    assert entries["activated"].raw == "activ\u00e9"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("[ascending tones]", ""),
        ("<beep ascending>", ""),
        ("dot [.]", "dot"),
        ("space [ ]", "space"),
        ("(10 seconds of silence)", ""),
        ('IAX (note: does not say "2")', "IAX"),
        ("Pour (emphase)", "Pour"),
        ("Please leave your message.  When done hang up. (simple tone sound plays)",
         "Please leave your message. When done hang up."),
        ("au menu poli (ne m'appelez plus, jamais), 4.", "au menu poli (ne m'appelez plus, jamais), 4."),
        ("  Press\t1 \n now...  ", "Press 1 now..."),
        ("Cafe\u0301", "Caf\u00e9"),  # NFC
        ("Thank you.", "Thank you."),
    ],
)
def test_normalize_text(raw, expected):
    assert ad.normalize_text(raw) == expected


@pytest.mark.parametrize(
    "name, family",
    [("vm-tocallback", "vm"), ("digits/h-1", "digits"), ("letters/a", "letters"),
     ("activated", "activated"), ("conf-adminmenu-162", "conf"), ("silence/1", "silence")],
)
def test_prompt_family(name, family):
    assert ad.prompt_family(name) == family


def test_ids_and_sorting():
    assert ad.utt_base("vm-tocallback", "nb") == "en_nb_vm-tocallback"
    assert ad.utt_base("digits/1", "wb") == "en_wb_digits-1"
    with pytest.raises(ValueError):
        ad.utt_base("x", "sb")
    assert ad.is_silence("silence/1") and not ad.is_silence("silence-please")
    # C locale: upper case before lower case, '-' (0x2d) before '_' (0x5f)
    assert c_sorted(["b", "B", "a_x", "a-x"]) == ["B", "a-x", "a_x", "b"]
