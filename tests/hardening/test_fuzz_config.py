"""The config loader on any TOML *text* (issue 11): a Config or ConfigErrors naming the file
(and a line that exists in it), never another exception.

tests/proxy/test_config_fuzz.py (the config engineer's) already feeds arbitrary *parsed*
data to `config.from_data`. This file covers the layer above it, which that test never
reaches: the bytes of a file through `config.load` (UTF-8 decoding, tomllib's syntax errors,
and `config_lines.Lines`, which maps key paths to line numbers by scanning the text itself:
dotted keys, inline tables, arrays of tables, multi-line strings, CRLF), with

- the shipped conf/tlsfront.toml mutated line by line and byte by byte, and
- documents written in every TOML style from a shaped strategy.
"""

from __future__ import annotations

import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsfront import config
from tlsfront.errors import ConfigErrors

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_LINES = (ROOT / "conf" / "tlsfront.toml").read_text().splitlines()
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def check_load(path: Path, raw: bytes) -> None:
    """The property: load() gives a Config, or ConfigErrors whose every problem names `path`
    and, when it has a line, one that exists in the file."""
    path.write_bytes(raw)
    try:
        cfg = config.load(path)
    except ConfigErrors as exc:
        assert exc.problems
        # Lines as TOML and editors count them (LF or CRLF), not bytes.splitlines() (which also
        # breaks at a lone CR): a line number must exist there and point at the key or its table.
        lines = raw.decode("utf-8", "replace").split("\n")
        for p in exc.problems + exc.warnings:
            assert p.where.startswith(str(path)), p
            assert p.message
            if p.message.startswith(("TOML syntax error", "not UTF-8 text")):
                # the whole file is refused: the problem must say where, and the line tomllib or the decoder
                # names is the one reported (an editor jumps there)
                assert p.line is not None, str(p)
                assert 1 <= p.line <= len(lines), (p.line, len(lines), str(p))
                assert f"(at line {p.line}," in p.message or p.message.startswith("not UTF-8") \
                    or p.message.endswith("(at end of document)"), str(p)
            elif p.line is not None:
                assert 1 <= p.line <= len(lines), (p.line, len(lines), str(p))
                assert points_at_key(lines[p.line - 1], p.where), (p.line, lines[p.line - 1], str(p))
        text = str(exc)
        assert "Traceback" not in text and str(path) in text
        return
    assert cfg.vhosts  # a valid configuration serves something


def points_at_key(line: str, where: str) -> bool:
    """Whether `line` can be where `where`'s key path is written: a key line whose key (the part
    before the first "=", dotted or quoted) names one of the path's keys, or a table header naming
    one of them (a missing key is reported at its table, an inline table's at the line that opens
    it). A key's *value* does not count: `certificate = "/x/server.key"` is not where `tls.key` is
    written. A line number shifted by one (the str.splitlines() bug of config_lines, fixed with this
    check) points elsewhere."""
    _, _, keypath = where.partition(": ")
    names = {part.split("[", 1)[0] for part in keypath.split(".") if part} - {""}
    text = line.strip()
    if text.startswith("["):  # [table] or [[array of tables]], maybe dotted, spaced or quoted
        written = text.lstrip("[").split("]", 1)[0]
    elif "=" in text:
        written = text.split("=", 1)[0]
    else:
        return False
    return any(part.strip().strip("\"'") in names for part in written.split("."))


# -- the shipped file, mutated -------------------------------------------------------------

JUNK = st.sampled_from(["[", "]", "[[", "=", '"', "'", '"""', "{", "}", ",", ".", "#", "\\", "\x00",
                        "\r", "\t", "é", "\u2028", "\ufeff", "vhost", "tls", "0", "-1", "1e999",
                        "true", "inf", "nan", "1979-05-27", "[vhost]", "[[tls]]", "a.b.c = 1"])


@st.composite
def mutated_reference(draw) -> bytes:
    lines = list(REFERENCE_LINES)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "splice", "swap"]))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, draw(JUNK) + draw(st.text(string.printable, max_size=10)))
        elif op == "splice":
            line = lines[i]
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + draw(JUNK) + line[j + draw(st.integers(0, 3)):]
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    raw = eol.join(lines).encode("utf-8")
    if draw(st.booleans()):
        raw = raw[:draw(st.integers(0, len(raw)))]  # truncated file
    if draw(st.integers(0, 9)) == 0:
        raw = raw.replace(b"\xc3\xa9", b"\xe9")  # latin-1 bytes: not UTF-8
    return raw


@SETTINGS
@given(mutated_reference())
def test_mutated_reference_file(tmp_path, raw):
    check_load(tmp_path / "tlsfront.toml", raw)


COMMENTS = [i for i, line in enumerate(REFERENCE_LINES) if "#" in line]
LINE_SEPARATORS = st.sampled_from(["\u2028", "\u2029", "\u0085"])  # line breaks to str.splitlines, not to TOML


@st.composite
def separators_in_comments(draw) -> bytes:
    """The shipped file with U+2028/U+2029/NEL put into comments (valid TOML) and a broken
    vhost at the end: the problems there must be reported at their own lines."""
    lines = list(REFERENCE_LINES)
    for i in draw(st.lists(st.sampled_from(COMMENTS), min_size=1, max_size=4)):
        j = draw(st.integers(lines[i].index("#") + 1, len(lines[i])))
        lines[i] = lines[i][:j] + draw(LINE_SEPARATORS) + lines[i][j:]
    lines += ["[[vhost]]", 'listen = "nonsense"']
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines).encode("utf-8")


@SETTINGS
@given(separators_in_comments())
def test_line_separators_in_comments(tmp_path, raw):
    check_load(tmp_path / "tlsfront.toml", raw)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes(tmp_path, raw):
    check_load(tmp_path / "tlsfront.toml", raw)


# -- shaped documents in every TOML style -----------------------------------------------------

KEYS = ["listen", "server_name", "backends", "tls", "certificate", "key", "protocols", "ciphers",
        "workers", "user", "error_log", "max_header_count", "client_header_seconds", "verify_client",
        "redirect_to_https", "trusted_proxies", "attribute", "pattern", "set", "bogus", "a b", "é"]
SCALAR = st.one_of(
    st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["127.0.0.1:8443", "*:80", "[::1]:1", "http://127.0.0.1:1", "none", "TLSv1.2",
                     "+TLSv1.3 -TLSv1", "/nonexistent", "nobody", "10.0.0.0/8", "MSIE", "(", ""]),
    st.text(max_size=6),
)


def toml_key(k: str) -> str:
    return k if all(c.isascii() and (c.isalnum() or c in "_-") for c in k) and k else '"' + k + '"'


@st.composite
def toml_value(draw, depth: int = 0) -> str:
    v = draw(SCALAR) if depth >= 2 else draw(st.one_of(SCALAR, st.just("[list]"), st.just("{inline}")))
    if v == "[list]":
        items = [draw(toml_value(depth + 1)) for _ in range(draw(st.integers(0, 3)))]
        sep = draw(st.sampled_from([", ", ",\n  "]))
        return "[" + sep.join(items) + ("," if items and draw(st.booleans()) else "") + "]"
    if v == "{inline}":
        items = [f"{toml_key(draw(st.sampled_from(KEYS)))} = {draw(toml_value(depth + 1))}"
                 for _ in range(draw(st.integers(0, 3)))]
        return "{" + ", ".join(items) + "}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    style = draw(st.sampled_from(["basic", "literal", "multi"]))
    if style == "literal" and "'" not in v and "\n" not in v:
        return "'" + v + "'"
    escaped = v.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() or c == " " else f"\\u{ord(c):04x}" for c in escaped)
    return ('"""\n' + escaped + '"""') if style == "multi" else ('"' + escaped + '"')


@st.composite
def toml_document(draw) -> str:
    out = []
    for _ in range(draw(st.integers(0, 3))):  # top-level and dotted keys first
        k = draw(st.sampled_from(["server.workers", "tls.protocols", "limits.max_header_count", "bogus"]))
        out.append(f"{k} = {draw(toml_value())}")
    for _ in range(draw(st.integers(0, 5))):
        header = draw(st.sampled_from(["[server]", "[tls]", "[timeouts]", "[limits]", "[admin]",
                                       "[[vhost]]", "[vhost.tls]", "[vhost.forwarding]", "[[quirk]]",
                                       "[ vhost . tls ]", "[[ vhost ]]", "[vhost]"]))
        out.append(header + draw(st.sampled_from(["", "  # comment"])))
        for _ in range(draw(st.integers(0, 4))):
            out.append(f"{toml_key(draw(st.sampled_from(KEYS)))} = {draw(toml_value())}")
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return eol.join(out) + eol


@SETTINGS
@given(toml_document())
def test_documents_in_every_style(tmp_path, text):
    check_load(tmp_path / "tlsfront.toml", text.encode("utf-8"))


def test_the_documents_reach_the_loader_not_only_tomllib():
    """The generator is not all syntax errors: it makes documents that parse and have vhosts."""
    import tomllib

    from hypothesis import find

    def parses_with_vhosts(text: str) -> bool:
        try:
            return isinstance(tomllib.loads(text).get("vhost"), list)
        except tomllib.TOMLDecodeError:
            return False

    assert find(toml_document(), parses_with_vhosts, settings=settings(max_examples=500, database=None))
