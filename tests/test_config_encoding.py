"""
Tests for how a configuration file's bytes become text
(L{l4lb.config._ini.decode_text} and L{l4lb.config.load_config}): UTF-8
with or without a byte order mark, and bytes that are not UTF-8 reported
at their line and column like every other error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from l4lb.config import ConfigError, load_config, load_config_with_warnings, parse_config
from l4lb.config._ini import decode_text

TEXT = """\
[global]
maxconn = 100
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
[backend be]
server s1 = 127.0.10.1:80
[frontend fe]
bind = 127.0.0.1:8001
default_backend = be
"""

BOM = b"\xef\xbb\xbf"


def test_bom_at_the_start_is_ignored(tmp_path: Path) -> None:
    """
    A file saved with a UTF-8 byte order mark (as some Windows editors
    save it) reads as the same file without it, with no warning.
    """
    plain, bommed = tmp_path / "plain.ini", tmp_path / "bom.ini"
    plain.write_bytes(TEXT.encode())
    bommed.write_bytes(BOM + TEXT.encode())
    config, warnings = load_config_with_warnings(str(bommed))
    assert warnings == []
    assert config.global_settings.maxconn == 100
    assert config.frontends == load_config(str(plain)).frontends


def test_bom_in_text_is_ignored() -> None:
    """
    Text handed to L{parse_config} that starts with U+FEFF (a file read
    with Python's C{utf-8} codec) parses too.
    """
    assert parse_config("\ufeff" + TEXT).global_settings.maxconn == 100


def test_bom_keeps_line_numbers(tmp_path: Path) -> None:
    """
    Errors in a file with a byte order mark are reported at their real
    lines.
    """
    path = tmp_path / "lb.ini"
    path.write_bytes(BOM + TEXT.replace("maxconn = 100", "maxconn = lots").encode())
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert [p.line for p in caught.value.problems] == [2]


def test_bom_elsewhere_is_not_ignored() -> None:
    """
    Only a mark at the very start of the file is ignored; one before a
    later line is part of that line.
    """
    with pytest.raises(ConfigError) as caught:
        parse_config(TEXT + "\ufeff[backend two]\n", "lb.ini")
    assert [p.line for p in caught.value.problems] == [12]


def test_invalid_utf8_reports_line_column_and_bytes(tmp_path: Path) -> None:
    """
    Bytes that are not UTF-8 are errors at their file:line, with the
    column and the bytes, one per bad line, instead of a byte offset in
    the whole file.
    """
    data = TEXT.encode()
    data = data.replace(b"[backend be]", b"# caf\xe9\n[backend be]")
    data = data.replace(b"bind = 127.0.0.1:8001", b"bind = 127.0.0.1:8001 # \xc3\xa9 \xff")
    path = tmp_path / "lb.ini"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:7: column 6: byte 0xe9 is not UTF-8 text (invalid continuation byte);"
        " save the file as UTF-8",
        f"{path}:11: column 27: byte 0xff is not UTF-8 text (invalid start byte);"
        " save the file as UTF-8",
    ]


def test_truncated_character_at_the_end() -> None:
    """
    A file cut in the middle of a multi-byte character names the last
    line and the bytes that are left.
    """
    text, problems = decode_text(b"[global]\n# \xe2\x82", "lb.ini")
    assert text == ""
    assert [(p.line, p.message.split(";")[0]) for p in problems] == [
        (2, "column 3: bytes 0xe2 0x82 are not UTF-8 text (unexpected end of data)")
    ]


def test_line_endings_are_read_as_before(tmp_path: Path) -> None:
    """
    Windows (CRLF) and old Mac (CR) line endings read as text mode reads
    them: the same configuration, and errors at the same lines.
    """
    for newline in ("\r\n", "\r"):
        path = tmp_path / "lb.ini"
        path.write_bytes(TEXT.replace("\n", newline).encode())
        assert load_config(str(path)).frontends == parse_config(TEXT, str(path)).frontends
        path.write_bytes(TEXT.replace("maxconn = 100", "maxconn = x").replace("\n", newline).encode())
        with pytest.raises(ConfigError) as caught:
            load_config(str(path))
        assert [p.line for p in caught.value.problems] == [2]
