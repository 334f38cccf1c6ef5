"""
Configuration problems: where they are and what is allowed instead.

Every problem found in a configuration file is a L{Problem}.  Errors are
collected over the whole file and raised together as one L{ConfigError};
warnings (the configuration works, but probably not as intended) are
returned beside the parsed L{l4lb.config.model.Config}.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence

import attr

ERROR = "error"
WARNING = "warning"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Problem:
    """
    One thing wrong (or suspicious) in a configuration.

    @ivar file: The file it was found in, as given to the parser.
    @ivar line: The 1-based line number; 0 when it concerns the whole file.
    @ivar section: The section as written between brackets, e.g.
        C{"backend web"}; empty when outside any section.
    @ivar key: The key as written, e.g. C{"server s1"}; empty when the
        problem concerns a whole section or file.
    @ivar message: What is wrong and what is allowed instead.
    @ivar severity: C{"error"} or C{"warning"}.
    """

    file: str
    line: int
    section: str
    key: str
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        """
        Format as C{file:line: [section] key 'k': message}, with
        C{warning: } after the position for a warning.
        """
        parts = [f"{self.file}:{self.line}:" if self.line else f"{self.file}:"]
        if self.severity == WARNING:
            parts.append("warning:")
        if self.section:
            parts.append(f"[{self.section}]")
        if self.key:
            parts.append(f"key {self.key!r}:")
        parts.append(self.message)
        return " ".join(parts)


class InvalidValue(ValueError):
    """
    A value does not fit its key.

    Value parsers raise it with a message that says what is allowed; the
    parser turns it into a L{Problem} that adds the file, line and key.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(Exception):
    """
    A configuration has at least one error.

    @ivar problems: Every error found, in file order.
    @ivar warnings: Every warning found, in file order.
    """

    def __init__(
        self, problems: Sequence[Problem], warnings: Iterable[Problem] = ()
    ) -> None:
        self.problems: List[Problem] = list(problems)
        self.warnings: List[Problem] = list(warnings)
        super().__init__(str(self))

    def __str__(self) -> str:
        """
        One line per error.
        """
        return "\n".join(str(problem) for problem in self.problems)


def sort_problems(problems: Iterable[Problem]) -> List[Problem]:
    """
    Order problems by file and line, keeping the order of equal positions.
    """
    return sorted(problems, key=lambda p: (p.file, p.line))
