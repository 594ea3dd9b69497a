"""Error types shared by every part of pricing_lab: problems with where they came from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with an input and where it is, e.g. path `plans[2].entitlements[0]`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PricingLabError(Exception):
    """Base of every error pricing_lab raises on purpose. The CLI prints it as one message."""

    exit_code = 1


class InputError(PricingLabError):
    """Bad input from the user (a file, a formula, an argument). The CLI exits with status 2."""

    exit_code = 2


class ValidationError(InputError):
    """Input with one or more problems, all listed at once, each with its path."""

    def __init__(self, problems: Iterable[Problem], *, source: str = "") -> None:
        self.problems: Sequence[Problem] = tuple(problems)
        self.source = source
        head = f"{source}: " if source else ""
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{head}{count} {noun}:"] + [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        # Raised in a worker process (a bucket task), it is pickled back to the driver: rebuild
        # it from its problems, not from the message (the default would pass the message as
        # `problems`, one problem per character).
        return (_validation_error, (type(self), self.problems, self.source))


def _validation_error(
    kind: type[ValidationError], problems: Sequence[Problem], source: str
) -> ValidationError:
    return kind(problems, source=source)


class InvariantViolation(PricingLabError):
    """A ledger broke a SPEC §5 invariant: always a bug in pricing_lab, never user error."""
