"""Errors of the formula language: one type for every bad formula, with its place in the text."""

from __future__ import annotations

from pricing_lab.errors import InputError


class FormulaError(InputError):
    """A formula that cannot be parsed, type-checked, compiled or evaluated.

    `line` and `column` (1-based) point at the offending character when known; the message then
    ends with the formula's line and a caret under that character.
    """

    def __init__(
        self,
        message: str,
        *,
        text: str | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = message
        self.line: int | None = None
        self.column: int | None = None
        if text is not None and offset is not None:
            offset = max(0, min(offset, len(text)))
            line_start = text.rfind("\n", 0, offset) + 1
            line_end = text.find("\n", offset)
            if line_end < 0:
                line_end = len(text)
            self.line = text.count("\n", 0, offset) + 1
            self.column = offset - line_start + 1
            source_line = text[line_start:line_end]
            # Tabs keep their width in the caret line so the caret stays under the character.
            pad = "".join("\t" if ch == "\t" else " " for ch in source_line[: self.column - 1])
            message = (
                f"line {self.line}, column {self.column}: {message}\n  {source_line}\n  {pad}^"
            )
        super().__init__(message)


class FormulaOverflowError(FormulaError):
    """A value left the range of DECIMAL(38, s) while evaluating a formula."""
