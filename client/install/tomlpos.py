"""Where things are in a TOML document: line numbers for keys, tables and array items.

``tomllib`` reports a position only for syntax errors. To point a user at the
offending table or key of a document that parsed fine (``FILE:LINE: ...``),
:func:`toml_lines` scans the text once more, just far enough to know where each
key, table and array element starts.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import tomllib
from collections.abc import Sequence
from typing import Any, ClassVar

import tomli_w

TomlPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# tomllib ends its messages with " (at line L, column C)" or " (at end of document)".
_TOML_ERROR_POSITION = re.compile(r" \((?:at line (\d+), column (\d+)|at end of document)\)$")


def toml_decode_error(exc: tomllib.TOMLDecodeError, text: str) -> tuple[int, str]:
    """The line number and message (without its position suffix) of a tomllib error."""
    message = str(exc)
    match = _TOML_ERROR_POSITION.search(message)
    if match is None:
        return 1, message
    if match.group(1) is None:  # "at end of document": point at the last line with text
        return text.rstrip("\r\n").count("\n") + 1, f"{message[: match.start()]} (at end of file)"
    return int(match.group(1)), f"{message[: match.start()]} (column {match.group(2)})"


class _Scanner:
    """Walks a syntactically valid TOML document and records start lines."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self.lines: dict[TomlPath, int] = {}
        # Concrete path of each array of tables -> number of elements so far.
        self.aot_counts: dict[TomlPath, int] = {}

    def line(self) -> int:
        return bisect.bisect_left(self.newlines, self.pos) + 1

    def record(self, path: TomlPath) -> None:
        self.lines.setdefault(path, self.line())

    def peek(self, count: int = 1) -> str:
        return self.text[self.pos : self.pos + count]

    def skip_space(self, newlines: bool) -> None:
        """Skip blanks, and when ``newlines`` also line ends and comments."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t" or (newlines and ch in "\r\n"):
                self.pos += 1
            elif newlines and ch == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def skip_line(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end + 1

    def simple_key(self) -> str:
        ch = self.peek()
        if ch in ('"', "'"):
            start = self.pos
            self.string()
            # Let tomllib decode the quoted key exactly (escapes included).
            decoded = tomllib.loads(self.text[start : self.pos] + " = 0")
            return next(iter(decoded))
        match = _BARE_KEY.match(self.text, self.pos)
        if match is None:
            raise ValueError("no key")
        self.pos = match.end()
        return match.group()

    def dotted_key(self) -> list[str]:
        keys = [self.simple_key()]
        self.skip_space(newlines=False)
        while self.peek() == ".":
            self.pos += 1
            self.skip_space(newlines=False)
            keys.append(self.simple_key())
            self.skip_space(newlines=False)
        return keys

    def resolve(self, keys: Sequence[str]) -> TomlPath:
        """The concrete path of a header's keys: arrays of tables get their last index."""
        path: TomlPath = ()
        for key in keys:
            path = (*path, key)
            count = self.aot_counts.get(path)
            if count is not None:
                path = (*path, count - 1)
        return path

    def string(self) -> None:
        text = self.text
        quote = text[self.pos]
        if text.startswith(quote * 3, self.pos):
            self.pos += 3
            while not text.startswith(quote * 3, self.pos):
                if quote == '"' and text[self.pos] == "\\":
                    self.pos += 1
                self.pos += 1
                if self.pos >= len(text):
                    raise ValueError("unterminated string")
            self.pos += 3
            # Up to two quotes may end the content right before the delimiter.
            for _ in range(2):
                if self.peek() == quote:
                    self.pos += 1
            return
        self.pos += 1
        while text[self.pos] != quote:
            if quote == '"' and text[self.pos] == "\\":
                self.pos += 1
            self.pos += 1
        self.pos += 1

    def value(self, path: TomlPath) -> None:
        ch = self.peek()
        if ch in ('"', "'"):
            self.string()
        elif ch == "[":
            self.pos += 1
            index = 0
            while True:
                self.skip_space(newlines=True)
                if self.peek() in ("]", ""):
                    self.pos += 1
                    return
                self.record((*path, index))
                self.value((*path, index))
                self.skip_space(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
                index += 1
        elif ch == "{":
            self.pos += 1
            while True:
                self.skip_space(newlines=True)
                if self.peek() in ("}", ""):
                    self.pos += 1
                    return
                self.key_value(path)
                self.skip_space(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
        else:
            # Numbers, booleans and dates (which may contain one space).
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in ",]}\r\n#":
                self.pos += 1
            if self.pos == start:
                raise ValueError("no value")

    def key_value(self, table: TomlPath) -> None:
        keys = self.dotted_key()
        for depth in range(1, len(keys) + 1):
            self.record((*table, *keys[:depth]))
        self.skip_space(newlines=False)
        if self.peek() != "=":
            raise ValueError("no '='")
        self.pos += 1
        self.skip_space(newlines=False)
        self.value((*table, *keys))

    def document(self) -> None:
        table: TomlPath = ()
        while True:
            self.skip_space(newlines=True)
            if self.pos >= len(self.text):
                return
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                self.skip_space(newlines=False)
                keys = self.dotted_key()
                array = (*self.resolve(keys[:-1]), keys[-1])
                index = self.aot_counts.get(array, 0)
                self.aot_counts[array] = index + 1
                table = (*array, index)
                self.record(array)
                self.record(table)
                self.skip_line()
            elif self.peek() == "[":
                self.pos += 1
                self.skip_space(newlines=False)
                keys = self.dotted_key()
                table = self.resolve(keys)
                for depth in range(1, len(keys) + 1):
                    self.record(self.resolve(keys[:depth]))
                self.skip_line()
            else:
                self.key_value(table)


def toml_lines(text: str) -> dict[TomlPath, int]:
    """Map each key path of a TOML document to the 1-based line where it starts.

    A path is a tuple of keys and array indexes as in the parsed document, e.g.
    ``("packages", 3, "wheels", 0, "hashes")``; a table or array element maps
    to its header line or its first character. Meant for documents that tomllib
    accepted; for anything else it returns what it found before getting lost.
    """
    scanner = _Scanner(text)
    # Only a gap in this scanner raises here (tomllib accepted the text); a
    # missing line number must never hide the error being reported.
    with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError, StopIteration):
        scanner.document()
    return scanner.lines


def line_of(lines: dict[TomlPath, int], path: TomlPath) -> int:
    """The line of ``path``, else of its nearest recorded ancestor, else 1."""
    for depth in range(len(path), 0, -1):
        line = lines.get(path[:depth])
        if line is not None:
            return line
    return 1


class TomlPlaces:
    """``FILE:LINE`` of key paths in one TOML text, for error messages.

    The text is scanned on first use: only a document with an error needs it.
    """

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self._lines: dict[TomlPath, int] | None = None

    def at(self, path: TomlPath) -> str:
        """``<source>:<line of path>``."""
        if self._lines is None:
            self._lines = toml_lines(self.text)
        return f"{self.source}:{line_of(self._lines, path)}"


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)``, shortened: error messages must stay readable."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_path(path: TomlPath) -> str:
    """``("project", "my proj", "signers", 2)`` -> ``project."my proj".signers[2]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        key = part
        if _BARE_KEY.fullmatch(part) is None:
            key = tomli_w.dumps({part: 0}).removesuffix(" = 0\n")
        text += f".{key}" if text else key
    return text


class TomlReader:
    """Typed reads of a parsed TOML document; errors say ``FILE:LINE: key.path: what``.

    Subclasses set :attr:`error` to the exception their readers raise.
    """

    error: ClassVar[type[Exception]] = ValueError

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.places = TomlPlaces(text, source)

    def fail(self, path: TomlPath, message: str) -> Exception:
        prefix = f"{key_path(path)}: " if path else ""
        return self.error(f"{self.places.at(path)}: {prefix}{message}")

    def table(
        self, path: TomlPath, value: object, known: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """A table; with ``known``, also refuse keys not in it."""
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a table, not {short_repr(value)}")
        if known is not None:
            for key in value:
                if key not in known:
                    expected = ", ".join(known)
                    raise self.fail((*path, key), f"unknown key (expected one of: {expected})")
        return value

    def array(self, path: TomlPath, value: object) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be an array, not {short_repr(value)}")
        return value

    def string(self, path: TomlPath, value: object) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {short_repr(value)}")
        return value

    def integer(self, path: TomlPath, value: object) -> int:
        # bool is an int in Python, but `threshold = true` is a mistake.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(path, f"must be an integer, not {short_repr(value)}")
        return value

    def strings(self, path: TomlPath, value: object) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be an array of strings, not {short_repr(value)}")
        return [self.string((*path, i), item) for i, item in enumerate(value)]
