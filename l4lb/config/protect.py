"""
The frontend keys of protection: the C{tcp-request connection} rules, the
C{stick-table} of per-source counters and C{rate-limit sessions}.

Rules, one per line, in order; the first whose condition holds decides, and
a connection no rule decides is accepted::

    tcp-request connection =
        reject if src -f /etc/l4lb/deny.lst
        accept if src 10.0.0.0/8 192.168.0.0/16
        reject if { src_conn_cur ge 10 }
        reject if { src_conn_rate ge 100 }
        reject if !src -f allow.lst

The grammar is C{accept|reject if|unless CONDITION}, where CONDITION is,
optionally inside C{{ }} and after C{!}:

 - C{src ADDRESS|RANGE ... | -f FILE ...}: the source is in a range;
 - C{src_conn_cur OP N}: the source's connections open now;
 - C{src_conn_rate OP N}: its new connections over the table's period;

with OP one of C{ge gt le lt eq}.  A C{-f} file lists one address or range
per line; C{#} starts a comment.  A relative path is relative to the
directory of C{lb.ini}.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from l4lb.config.errors import InvalidValue
from l4lb.config.model import SourceRule, StickTableSpec
from l4lb.config.units import not_allowed, parse_int, parse_time
from l4lb.protect.cidr import AddressSet, Range, parse_range

#: The frontend keys this module parses.
PROTECT_KEYS = ("tcp-request connection", "stick-table", "rate-limit sessions")

ACTIONS = ("accept", "reject")
OPERATORS = ("ge", "gt", "le", "lt", "eq")
#: Condition fetches, with HAProxy's tracked-counter names as synonyms.
FETCHES = {
    "src": "src",
    "src_conn_cur": "src_conn_cur",
    "sc0_conn_cur": "src_conn_cur",
    "src_conn_rate": "src_conn_rate",
    "sc0_conn_rate": "src_conn_rate",
}

RULE_SYNTAX = (
    "accept|reject if|unless [!]src ADDRESS|RANGE ... | [!]src -f FILE"
    " | { src_conn_cur OP N } | { src_conn_rate OP N }, OP one of ge gt le lt eq"
)
TABLE_SYNTAX = (
    "type ip|ipv6 size N[k|m] expire TIME [store conn_cur,conn_rate(TIME)]"
    " [ipv6-prefix 1-128]"
)

#: The largest C{stick-table} size (entries).
MAX_TABLE_SIZE = 16 * 1024 * 1024
#: The most problems reported for one C{-f} file.
MAX_FILE_PROBLEMS = 10

#: A problem in a C{-f} file: the file, its line, and what is wrong.
FileProblem = Tuple[str, int, str]


class ListFileError(InvalidValue):
    """
    A C{-f} file has lines that are not addresses or ranges.

    @ivar problems: Each bad line as C{(file, line, message)}.
    """

    def __init__(self, problems: Sequence[FileProblem]) -> None:
        super().__init__(problems[0][2])
        self.problems = list(problems)


def _network(word: str) -> Range:
    try:
        return parse_range(word)
    except ValueError:
        raise InvalidValue(
            f"{word!r} is not an address or address range; expected one such"
            " as 10.0.0.0/8, 192.0.2.7, 2001:db8::/32 or ::ffff:10.0.0.0/104"
        )


def read_list_file(path: str) -> List[Range]:
    """
    Read a C{-f} file: one address or range a line, C{#} comments.

    @raise InvalidValue: When the file cannot be read.
    @raise ListFileError: Naming every bad line (up to
        L{MAX_FILE_PROBLEMS}).
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise InvalidValue(
            f"cannot read the address list {path!r}: {reason}; '-f' takes a"
            " readable file of addresses or ranges, one a line"
        )
    networks: List[Range] = []
    problems: List[FileProblem] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            networks.append(_network(text))
        except InvalidValue as error:
            if len(problems) < MAX_FILE_PROBLEMS:
                problems.append((path, number, error.message))
    if problems:
        raise ListFileError(problems)
    return networks


def _resolve(path: str, base_dir: str) -> str:
    return path if os.path.isabs(path) else os.path.join(base_dir, path)


def parse_rule(
    text: str,
    line: int = 0,
    base_dir: str = ".",
    read: Callable[[str], List[Range]] = read_list_file,
) -> SourceRule:
    """
    Parse one C{tcp-request connection} rule.

    @param base_dir: The directory relative C{-f} paths are in.
    @param read: Reads a C{-f} file (L{read_list_file}).
    @raise InvalidValue: Saying what is allowed (a L{ListFileError} for
        bad lines of a C{-f} file).
    """
    words = text.split()
    written = " ".join(words)
    if len(words) < 3:
        raise InvalidValue(f"{written!r} is not a rule; expected {RULE_SYNTAX}")
    action = words[0].lower()
    if action not in ACTIONS:
        raise InvalidValue(
            not_allowed(f"unknown action {words[0]!r} in {written!r}", action, ACTIONS)
        )
    keyword = words[1].lower()
    if keyword not in ("if", "unless"):
        raise InvalidValue(
            f"expected 'if' or 'unless' after {words[0]!r} in {written!r}; a rule"
            f" is {RULE_SYNTAX}"
        )
    condition = words[2:]
    if condition[0] == "{" or condition[-1] == "}":
        if condition[0] != "{" or condition[-1] != "}" or len(condition) < 3:
            raise InvalidValue(
                f"unbalanced braces in {written!r}: write '{{ CONDITION }}' with"
                " spaces inside the braces, or no braces"
            )
        condition = condition[1:-1]
    negate = keyword == "unless"
    if condition[0] == "!":
        negate = not negate
        condition = condition[1:]
    elif condition[0].startswith("!"):
        negate = not negate
        condition = [condition[0][1:]] + condition[1:]
    if not condition or not condition[0]:
        raise InvalidValue(f"missing condition in {written!r}; expected {RULE_SYNTAX}")
    fetch_word = condition[0].lower()
    fetch = FETCHES.get(fetch_word)
    if fetch is None:
        raise InvalidValue(
            not_allowed(
                f"unknown condition {condition[0]!r} in {written!r}",
                fetch_word,
                sorted(FETCHES),
            )
        )
    args = condition[1:]
    if fetch == "src":
        return SourceRule(
            action,
            negate,
            fetch,
            _addresses(args, written, base_dir, read),
            text=written,
            line=line,
        )
    if len(args) != 2 or args[0].lower() not in OPERATORS:
        raise InvalidValue(
            f"{written!r}: {fetch_word} is compared with a number, e.g."
            f" '{fetch_word} ge 10'; operators: {', '.join(OPERATORS)}"
        )
    threshold = parse_int(args[1], 0, 1 << 31)
    return SourceRule(
        action,
        negate,
        fetch,
        operator=args[0].lower(),
        threshold=threshold,
        text=written,
        line=line,
    )


def _addresses(
    args: List[str], written: str, base_dir: str, read: Callable[[str], List[Range]]
) -> AddressSet:
    if not args:
        raise InvalidValue(
            f"{written!r}: 'src' needs addresses or ranges (src 10.0.0.0/8"
            " 192.0.2.7) or files of them (src -f /etc/l4lb/allow.lst)"
        )
    networks: List[Range] = []
    words = iter(args)
    for word in words:
        if word == "-f":
            path = next(words, None)
            if path is None:
                raise InvalidValue(f"{written!r}: '-f' needs a file name")
            networks.extend(read(_resolve(path, base_dir)))
        else:
            networks.append(_network(word))
    return AddressSet.from_ranges(networks)


def parse_rules(
    pieces: Sequence[Tuple[int, str]], base_dir: str = "."
) -> Tuple[List[SourceRule], List[Tuple[int, str]], List[Tuple[str, int, str, int]]]:
    """
    Parse a C{tcp-request connection} value given as its lines, one rule
    per line.

    @param pieces: C{(line, text)} for each line of the value.
    @param base_dir: The directory relative C{-f} paths are in.
    @return: The rules in order, C{(line, message)} per problem of the
        value, and C{(file, line, message, rule line)} per bad line of a
        C{-f} file.
    """
    rules: List[SourceRule] = []
    errors: List[Tuple[int, str]] = []
    file_problems: List[Tuple[str, int, str, int]] = []
    for line, text in pieces:
        if not text.strip():
            continue
        try:
            rules.append(parse_rule(text, line, base_dir))
        except ListFileError as error:
            file_problems.extend(
                (path, number, message, line) for path, number, message in error.problems
            )
        except InvalidValue as error:
            errors.append((line, error.message))
    if not rules and not errors and not file_problems:
        errors.append(
            (
                pieces[0][0] if pieces else 0,
                f"missing rules; write one rule per line: {RULE_SYNTAX}",
            )
        )
    return rules, errors, file_problems


_SIZE = re.compile(r"^([0-9]{1,9})([kmg]?)$")
_RATE = re.compile(r"^conn_rate\(([^()]*)\)$")


def parse_size(text: str) -> int:
    """
    Parse a table size: a whole number with an optional C{k}, C{m} or C{g}
    (times 1024, as in HAProxy), from 1 to L{MAX_TABLE_SIZE}.
    """
    match = _SIZE.match(text.strip().lower())
    allowed = f"a number from 1 to {MAX_TABLE_SIZE} with an optional k or m (x1024), e.g. 100k"
    if match is None:
        raise InvalidValue(f"{text!r} is not a size; expected {allowed}")
    size = int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]
    if not 1 <= size <= MAX_TABLE_SIZE:
        raise InvalidValue(f"{text!r} is out of range; expected {allowed}")
    return size


def parse_stick_table(text: str) -> StickTableSpec:
    """
    Parse C{stick-table}: C{type ip size 100k expire 30s store
    conn_cur,conn_rate(10s)}.  C{type ipv6} is the same table (both
    families are always stored); without C{store}, both counters are kept,
    the rate over 10s.
    """
    words = text.split()
    values: Dict[str, str] = {}
    names = ("type", "size", "expire", "store", "ipv6-prefix")
    index = 0
    while index < len(words):
        name = words[index].lower()
        if name not in names:
            raise InvalidValue(
                not_allowed(f"unknown stick-table option {words[index]!r}", name, names)
                + f"; expected {TABLE_SYNTAX}"
            )
        if index + 1 >= len(words):
            raise InvalidValue(f"{name!r} needs a value; expected {TABLE_SYNTAX}")
        if name in values:
            raise InvalidValue(f"{name!r} is given twice; expected {TABLE_SYNTAX}")
        values[name] = words[index + 1]
        index += 2
    for required in ("type", "size", "expire"):
        if required not in values:
            raise InvalidValue(f"missing '{required}'; expected {TABLE_SYNTAX}")
    if values["type"].lower() not in ("ip", "ipv6"):
        raise InvalidValue(
            f"type {values['type']!r} is not supported; allowed: ip, ipv6 (both"
            " store IPv4 and IPv6 sources)"
        )
    size = parse_size(values["size"])
    expire = parse_time(values["expire"])
    if expire <= 0:
        raise InvalidValue("'expire' must be more than 0, e.g. 30s")
    conn_cur = True
    conn_rate: Optional[float] = 10.0
    if "store" in values:
        conn_cur, conn_rate = False, None
        for item in values["store"].split(","):
            item = item.strip().lower()
            match = _RATE.match(item)
            if item == "conn_cur":
                conn_cur = True
            elif match is not None:
                conn_rate = parse_time(match.group(1))
                if conn_rate <= 0:
                    raise InvalidValue(
                        "the period of conn_rate must be more than 0, e.g. conn_rate(10s)"
                    )
            else:
                raise InvalidValue(
                    f"cannot store {item!r}; allowed: conn_cur, conn_rate(PERIOD)"
                    " such as conn_rate(10s), separated by commas"
                )
    prefix = parse_int(values.get("ipv6-prefix", "128"), 1, 128)
    return StickTableSpec(size, expire, conn_cur, conn_rate, prefix)


#: Parsers of the single-line keys in L{PROTECT_KEYS}.
PROTECT_VALUES: Dict[str, Callable[[str], object]] = {
    "stick-table": parse_stick_table,
    "rate-limit sessions": lambda text: parse_int(text, 0, 1 << 30),
}


def protection_problems(
    rules: Sequence[SourceRule], table: Optional[StickTableSpec], mode: str, line: int
) -> List[Tuple[int, str, str]]:
    """
    What is wrong in a frontend's rules and table taken together: a rule
    on a counter needs a C{stick-table} that stores it, and only TCP
    frontends have these keys.

    @param line: The line of the section, for problems of no rule.
    @return: C{(line, key, message)} per problem.
    """
    problems: List[Tuple[int, str, str]] = []
    if mode != "tcp":
        if rules:
            problems.append(
                (rules[0].line or line, "tcp-request connection",
                 "source rules apply to 'mode tcp' frontends only")
            )
        if table is not None:
            problems.append(
                (
                    table.line or line,
                    "stick-table",
                    "a stick-table applies to 'mode tcp' frontends only",
                )
            )
        return problems
    for rule in rules:
        if rule.fetch == "src":
            continue
        stored = "conn_cur" if rule.fetch == "src_conn_cur" else "conn_rate(PERIOD)"
        if table is None:
            problems.append(
                (
                    rule.line or line,
                    "tcp-request connection",
                    f"{rule.text!r} reads per-source counters; add"
                    " 'stick-table = type ip size 100k expire 30s store"
                    " conn_cur,conn_rate(10s)' to the section",
                )
            )
        elif (rule.fetch == "src_conn_cur" and not table.conn_cur) or (
            rule.fetch == "src_conn_rate" and table.conn_rate is None
        ):
            problems.append(
                (
                    rule.line or line,
                    "tcp-request connection",
                    f"{rule.text!r} reads {rule.fetch}, which the"
                    f" stick-table does not store; add {stored} to its 'store'",
                )
            )
    return problems
