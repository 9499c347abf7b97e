"""A parser for the Logstash pipeline configuration language, for tests: there is no Logstash binary here.

It follows the grammar Logstash itself uses (``logstash-core/lib/logstash/config/grammar.treetop``),
closely enough to reject what Logstash would reject in the configs we ship:

- a config is ``input``/``filter``/``output`` sections, each ``{ ... }`` holding plugins and branches;
- a plugin is ``name { key => value ... }`` (attributes separated by whitespace, no commas);
- a value is a string (double or single quoted), a number, a bareword (two characters or more), an array
  ``[v, v]`` (commas, no trailing comma), a hash ``{ k => v k => v }`` (whitespace, no commas) or a plugin
  (``codec => json { ... }``);
- a branch is ``if COND { ... }``, any number of ``else if COND { ... }``, an optional ``else { ... }``;
- a condition joins expressions with ``and``/``or``/``xor``/``nand``; an expression is a parenthesised
  condition, ``!``-negation of a selector or parenthesised condition, ``in``/``not in``, a comparison
  (``== != < > <= >=``), a regexp match (``=~ !~`` against a string or ``/regexp/``) or a lone rvalue
  (string, number, field selector ``[a][b]``, array, regexp or method call);
- ``#`` starts a comment wherever whitespace may stand.

It does not know which plugins or options exist, does not substitute ``${ENV}`` variables and does not
unescape strings (Logstash leaves them raw unless ``config.support_escapes`` is on). What it gives back is
a small tree (``Config`` → ``Section`` → ``Plugin``/``Branch``) that tests walk to find field references.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SECTION_TYPES = ("input", "filter", "output")
BOOLEAN_OPERATORS = ("and", "or", "xor", "nand")
COMPARE_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
REGEXP_OPERATORS = ("=~", "!~")

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_BAREWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]*)?")
_SELECTOR_ELEMENT = re.compile(r"\[[^\]\[,]+\]")


class LogstashConfigError(ValueError):
    """A syntax error, with the line and column where parsing stopped."""

    def __init__(self, message: str, text: str, pos: int) -> None:
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        super().__init__(f"line {line}, column {column}: {message}")
        self.line, self.column = line, column


class Bareword(str):
    """An unquoted word value (``codec => json``, ``mode => tail``)."""


class Regexp(str):
    """A ``/.../`` literal in a condition (the text between the slashes)."""


@dataclass(frozen=True)
class Selector:
    """A field reference such as ``[event][id]``; ``path`` is ``("event", "id")``."""

    path: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass
class Plugin:
    name: str
    attributes: list[tuple[str, Any]]
    line: int

    def get(self, key: str, default: Any = None) -> Any:
        """The last value given for ``key`` (Logstash merges repeats; the configs here never repeat one)."""
        found = [v for k, v in self.attributes if k == key]
        return found[-1] if found else default


@dataclass
class Condition:
    text: str  # as written, for messages
    selectors: list[Selector] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)  # string literals compared against


@dataclass
class Branch:
    clauses: list[tuple[Condition | None, list[Plugin | Branch]]]  # None: the else clause


@dataclass
class Section:
    kind: str
    body: list[Plugin | Branch]


@dataclass
class Config:
    sections: list[Section]

    def plugins(self, kind: str | None = None) -> Iterator[Plugin]:
        """Every plugin of the given section kind (all kinds when None), inside branches too."""
        for section in self.sections:
            if kind is None or section.kind == kind:
                yield from _walk_plugins(section.body)

    def conditions(self) -> Iterator[Condition]:
        for section in self.sections:
            yield from _walk_conditions(section.body)


def _walk_plugins(body: list[Plugin | Branch]) -> Iterator[Plugin]:
    for item in body:
        if isinstance(item, Plugin):
            yield item
            for _, value in item.attributes:  # codec => json { ... }
                if isinstance(value, Plugin):
                    yield value
        else:
            for _, clause_body in item.clauses:
                yield from _walk_plugins(clause_body)


def _walk_conditions(body: list[Plugin | Branch]) -> Iterator[Condition]:
    for item in body:
        if isinstance(item, Branch):
            for condition, clause_body in item.clauses:
                if condition is not None:
                    yield condition
                yield from _walk_conditions(clause_body)


def parse(text: str) -> Config:
    """Parse a whole pipeline configuration; ``LogstashConfigError`` on any syntax error."""
    return _Parser(text).config()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # --- low level
    def error(self, message: str) -> LogstashConfigError:
        return LogstashConfigError(message, self.text, self.pos)

    def skip(self) -> bool:
        """Skip whitespace and comments; True when anything was skipped."""
        start = self.pos
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r\n":
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end + 1
            else:
                break
        return self.pos > start

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def peek_word(self, word: str) -> bool:
        """``word`` here, not followed by a name character (``in`` but not ``index``)."""
        end = self.pos + len(word)
        return self.peek(word) and (end >= len(self.text) or not re.match(r"[A-Za-z0-9_-]", self.text[end]))

    def expect(self, literal: str, what: str | None = None) -> None:
        if not self.peek(literal):
            found = self.text[self.pos : self.pos + 20].split("\n")[0] or "end of file"
            raise self.error(f"expected {what or repr(literal)}, found {found!r}")
        self.pos += len(literal)

    def match(self, pattern: re.Pattern[str]) -> str | None:
        m = pattern.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return m.group(0)

    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    # --- structure
    def config(self) -> Config:
        sections: list[Section] = []
        self.skip()
        while self.pos < len(self.text):
            kind = self.match(_NAME)
            if kind not in SECTION_TYPES:
                raise self.error(f"expected input, filter or output, found {kind or self.text[self.pos]!r}")
            self.skip()
            self.expect("{", f"'{{' after {kind}")
            sections.append(Section(kind, self.body()))
            self.skip()
        if not sections:
            raise self.error("no input, filter or output section")
        return Config(sections)

    def body(self) -> list[Plugin | Branch]:
        """Plugins and branches up to and including the closing brace."""
        items: list[Plugin | Branch] = []
        while True:
            self.skip()
            if self.peek("}"):
                self.pos += 1
                return items
            if self.pos >= len(self.text):
                raise self.error("unexpected end of file: a '{' is not closed")
            if self.peek_word("if"):
                items.append(self.branch())
            elif self.peek_word("else"):
                raise self.error("'else' without an 'if' before it")
            else:
                items.append(self.plugin())

    def plugin(self) -> Plugin:
        line = self.line()
        name = self.string() if self.peek('"') or self.peek("'") else self.match(_NAME)
        if not name:
            raise self.error("expected a plugin name")
        self.skip()
        self.expect("{", f"'{{' after plugin name {name!r}")
        attributes: list[tuple[str, Any]] = []
        self.skip()
        while not self.peek("}"):
            if self.pos >= len(self.text):
                raise self.error(f"unexpected end of file in plugin {name!r}")
            if attributes and not self.text[self.pos - 1].isspace():
                raise self.error("attributes must be separated by whitespace")
            key = self.string() if self.peek('"') or self.peek("'") else self.match(_NAME)
            if not key:
                raise self.error(f"expected an attribute name in plugin {name!r}")
            self.skip()
            self.expect("=>", f"'=>' after {key!r}")
            self.skip()
            attributes.append((key, self.value(allow_plugin=True)))
            self.skip()
        self.pos += 1
        return Plugin(name, attributes, line)

    def branch(self) -> Branch:
        self.pos += len("if")
        clauses: list[tuple[Condition | None, list[Plugin | Branch]]] = [self.clause()]
        while True:
            mark = self.pos
            self.skip()
            if not self.peek_word("else"):
                self.pos = mark
                return Branch(clauses)
            self.pos += len("else")
            self.skip()
            if self.peek_word("if"):
                self.pos += len("if")
                clauses.append(self.clause())
                continue
            self.expect("{", "'{' or 'if' after 'else'")
            clauses.append((None, self.body()))
            return Branch(clauses)

    def clause(self) -> tuple[Condition, list[Plugin | Branch]]:
        self.skip()
        start = self.pos
        condition = Condition("")
        self.condition(condition)
        condition.text = self.text[start : self.pos].strip()
        self.skip()
        self.expect("{", "'{' after the condition")
        return condition, self.body()

    # --- values
    def value(self, allow_plugin: bool = False) -> Any:
        if self.peek('"') or self.peek("'"):
            return self.string()
        if self.peek("["):
            return self.array()
        if self.peek("{"):
            return self.hash()
        number = self.match(_NUMBER)
        if number is not None:
            return float(number) if "." in number else int(number)
        word = self.match(_BAREWORD)
        if word is not None:
            if allow_plugin:
                mark = self.pos
                self.skip()
                if self.peek("{"):  # codec => json { ... }
                    self.pos = mark - len(word)
                    return self.plugin()
                self.pos = mark
            return Bareword(word)
        raise self.error("expected a value (string, number, bareword, array or hash)")

    def string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        start = self.pos
        while True:
            if self.pos >= len(self.text):
                self.pos = start - 1
                raise self.error("unterminated string")
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                self.pos += 2
            elif ch == quote:
                self.pos += 1
                return self.text[start : self.pos - 1]
            else:
                self.pos += 1

    def array(self) -> list[Any]:
        self.expect("[")
        items: list[Any] = []
        self.skip()
        if self.peek("]"):
            self.pos += 1
            return items
        while True:
            items.append(self.value())
            self.skip()
            if self.peek("]"):
                self.pos += 1
                return items
            self.expect(",", "',' or ']' in an array")
            self.skip()
            if self.peek("]"):
                raise self.error("trailing ',' in an array")

    def hash(self) -> dict[Any, Any]:
        self.expect("{")
        entries: dict[Any, Any] = {}
        self.skip()
        while not self.peek("}"):
            if self.pos >= len(self.text):
                raise self.error("unexpected end of file in a hash")
            if entries and not self.text[self.pos - 1].isspace():
                raise self.error("hash entries must be separated by whitespace (no commas)")
            if self.peek('"') or self.peek("'"):
                key: Any = self.string()
            else:
                key = self.match(_NUMBER) or self.match(_BAREWORD)
                if key is None:
                    raise self.error("expected a hash key (string, number or bareword)")
            self.skip()
            self.expect("=>", f"'=>' after hash key {key!r}")
            self.skip()
            entries[key] = self.value()
            self.skip()
        self.pos += 1
        return entries

    # --- conditions
    def condition(self, out: Condition) -> None:
        self.expression(out)
        while True:
            mark = self.pos
            self.skip()
            operator = next((op for op in BOOLEAN_OPERATORS if self.peek_word(op)), None)
            if operator is None:
                self.pos = mark
                return
            self.pos += len(operator)
            self.skip()
            self.expression(out)

    def expression(self, out: Condition) -> None:
        if self.peek("("):
            self.pos += 1
            self.skip()
            self.condition(out)
            self.skip()
            self.expect(")", "')' closing a condition")
            return
        if self.peek("!") and not self.peek("!="):
            self.pos += 1
            self.skip()
            if self.peek("("):
                self.expression(out)
            elif self.peek("["):
                out.selectors.append(self.selector())
            else:
                raise self.error("'!' must be followed by a field reference or '('")
            return
        self.rvalue(out)
        mark = self.pos
        self.skip()
        if self.peek_word("in"):
            self.pos += len("in")
            self.skip()
            self.rvalue(out)
        elif self.peek_word("not"):
            self.pos += len("not")
            if not self.skip():
                raise self.error("expected 'not in'")
            if not self.peek_word("in"):
                raise self.error("expected 'in' after 'not'")
            self.pos += len("in")
            self.skip()
            self.rvalue(out)
        elif any(self.peek(op) for op in REGEXP_OPERATORS):
            self.pos += 2
            self.skip()
            if self.peek("/"):
                self.regexp()
            elif self.peek('"') or self.peek("'"):
                out.strings.append(self.string())
            else:
                raise self.error("expected a /regexp/ or a string after =~ or !~")
        elif (op := next((o for o in COMPARE_OPERATORS if self.peek(o)), None)) is not None:
            self.pos += len(op)
            self.skip()
            self.rvalue(out)
        else:
            self.pos = mark  # a lone rvalue: true when the field exists and is truthy

    def rvalue(self, out: Condition) -> None:
        if self.peek('"') or self.peek("'"):
            out.strings.append(self.string())
        elif self.peek("/"):
            self.regexp()
        elif self.peek("["):
            if _SELECTOR_ELEMENT.match(self.text, self.pos):
                out.selectors.append(self.selector())
            else:
                for item in self.array():
                    if isinstance(item, str) and not isinstance(item, Bareword):
                        out.strings.append(item)
        elif self.match(_NUMBER) is not None:
            pass
        elif self.match(_BAREWORD) is not None:  # method call: name(args)
            self.skip()
            self.expect("(", "'(' after a method name (barewords are not values in a condition)")
            self.skip()
            if not self.peek(")"):
                while True:
                    self.rvalue(out)
                    self.skip()
                    if self.peek(")"):
                        break
                    self.expect(",", "',' or ')' in a method call")
                    self.skip()
            self.pos += 1
        else:
            raise self.error("expected a field reference, string, number, array, regexp or method call")

    def selector(self) -> Selector:
        parts: list[str] = []
        while (element := self.match(_SELECTOR_ELEMENT)) is not None:
            parts.append(element[1:-1])
        if not parts:
            raise self.error("expected a field reference like [a][b]")
        return Selector(tuple(parts))

    def regexp(self) -> Regexp:
        start = self.pos
        self.pos += 1
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                self.pos = start
                raise self.error("unterminated /regexp/")
            ch = self.text[self.pos]
            if ch == "\\":
                self.pos += 2
            elif ch == "/":
                self.pos += 1
                return Regexp(self.text[start + 1 : self.pos - 1])
            else:
                self.pos += 1


_FIELD_REF = re.compile(r"^(?:\[[^\]\[,]+\])+$")
_SPRINTF = re.compile(r"%\{([^}]+)\}")


def field_path(reference: str) -> str:
    """``[event][id]`` → ``event.id``; a bare top-level name (``message``, ``@version``) is returned as is."""
    reference = reference.strip()
    if _FIELD_REF.match(reference):
        return ".".join(part for part in re.findall(r"\[([^\]\[,]+)\]", reference))
    return reference


def sprintf_fields(value: str) -> list[str]:
    """The field references inside ``%{...}`` of a string (``%{+YYYY.MM.dd}`` date formats left out)."""
    return [field_path(ref) for ref in _SPRINTF.findall(value) if not ref.startswith("+")]
