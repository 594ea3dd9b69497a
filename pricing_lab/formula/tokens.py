"""Tokenizer of the formula language: text → tokens that carry their line and column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pricing_lab.formula.errors import FormulaError

TokenKind = Literal[
    "number", "string", "name", "quoted_name", "op", "lparen", "rparen", "comma", "end"
]

MAX_FORMULA_LENGTH = 10_000

# Longest first so that `<=` wins over `<`.
_OPERATORS = ("<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/")
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_PART = _NAME_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """One token: its kind, its source text, the decoded value, and where it starts."""

    kind: TokenKind
    text: str
    value: str
    offset: int
    line: int
    column: int


def _is_control(ch: str) -> bool:
    return ord(ch) < 0x20 or ord(ch) == 0x7F


def tokenize(text: str) -> list[Token]:
    """Split formula text into tokens, ending with an `end` token. Raises FormulaError."""
    if len(text) > MAX_FORMULA_LENGTH:
        raise FormulaError(
            f"formula is {len(text)} characters long; at most {MAX_FORMULA_LENGTH} are allowed"
        )
    tokens: list[Token] = []
    pos = 0
    line = 1
    line_start = 0
    length = len(text)

    def make(kind: TokenKind, start: int, value: str) -> Token:
        return Token(
            kind=kind,
            text=text[start:pos],
            value=value,
            offset=start,
            line=line,
            column=start - line_start + 1,
        )

    while pos < length:
        ch = text[pos]
        start = pos
        if ch == "\n":
            pos += 1
            line += 1
            line_start = pos
            continue
        if ch in " \t\r":
            pos += 1
            continue
        if ch in _DIGITS or (ch == "." and pos + 1 < length and text[pos + 1] in _DIGITS):
            while pos < length and text[pos] in _DIGITS:
                pos += 1
            if pos < length and text[pos] == ".":
                pos += 1
                if pos >= length or text[pos] not in _DIGITS:
                    raise FormulaError(
                        "a decimal point must be followed by digits", text=text, offset=pos
                    )
                while pos < length and text[pos] in _DIGITS:
                    pos += 1
            if pos < length and (text[pos] in _NAME_PART or text[pos] == "."):
                raise FormulaError(f"unexpected {text[pos]!r} in a number", text=text, offset=pos)
            tokens.append(make("number", start, text[start:pos]))
            continue
        if ch in _NAME_START:
            while pos < length and text[pos] in _NAME_PART:
                pos += 1
            tokens.append(make("name", start, text[start:pos]))
            continue
        if ch in "'`":
            quote = ch
            kind: TokenKind = "string" if quote == "'" else "quoted_name"
            what = "string" if quote == "'" else "quoted name"
            pos += 1
            parts: list[str] = []
            while True:
                if pos >= length:
                    raise FormulaError(f"unterminated {what}", text=text, offset=start)
                c = text[pos]
                if c == quote:
                    if pos + 1 < length and text[pos + 1] == quote:
                        parts.append(quote)
                        pos += 2
                        continue
                    pos += 1
                    break
                if _is_control(c):
                    raise FormulaError(
                        f"control character {c!r} inside a {what}", text=text, offset=pos
                    )
                parts.append(c)
                pos += 1
            value = "".join(parts)
            if kind == "quoted_name" and not value:
                raise FormulaError("empty quoted name", text=text, offset=start)
            tokens.append(make(kind, start, value))
            continue
        if ch == "(":
            pos += 1
            tokens.append(make("lparen", start, ch))
            continue
        if ch == ")":
            pos += 1
            tokens.append(make("rparen", start, ch))
            continue
        if ch == ",":
            pos += 1
            tokens.append(make("comma", start, ch))
            continue
        for op in _OPERATORS:
            if text.startswith(op, pos):
                pos += len(op)
                tokens.append(make("op", start, op))
                break
        else:
            hint = " (use == for equality)" if ch == "=" else ""
            if ch == "!":
                hint = " (use `not` or !=)"
            raise FormulaError(f"unexpected character {ch!r}{hint}", text=text, offset=pos)
    tokens.append(make("end", pos, ""))
    return tokens
