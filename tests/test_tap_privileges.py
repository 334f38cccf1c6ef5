"""
Tests for what L{l4lb.tap} reads from twistd to hand files over to the
user it switches to (C{--uid}/C{--gid}).
"""

from __future__ import annotations

import pwd

from twisted.scripts.twistd import ServerOptions

from l4lb.tap import Options, _run_as


def parsed(*argv: str) -> Options:
    """
    The l4lb options as twistd parses them from C{argv}.
    """
    server = ServerOptions()
    server.parseOptions([*argv, "l4lb", "--config", "/dev/null"])
    options = server.subOptions
    assert isinstance(options, Options)
    return options


def test_no_switch_without_uid_or_gid() -> None:
    """
    Without C{--uid} and C{--gid}, nothing is handed over.
    """
    assert _run_as(parsed("-n")) is None


def test_uid_and_gid_by_name() -> None:
    """
    Names given to C{--uid} and C{--gid} are read as twistd resolves them.
    """
    nobody = pwd.getpwnam("nobody")
    assert _run_as(parsed("-n", "--uid", "nobody", "--gid", "0")) == (nobody.pw_uid, 0)


def test_gid_defaults_to_the_users_group() -> None:
    """
    C{--uid} alone switches to that user's primary group too, as twistd does.
    """
    nobody = pwd.getpwnam("nobody")
    assert _run_as(parsed("-n", "--uid", str(nobody.pw_uid))) == (nobody.pw_uid, nobody.pw_gid)


def test_gid_alone() -> None:
    """
    C{--gid} alone keeps the user and changes the group.
    """
    assert _run_as(parsed("-n", "--gid", "0")) == (None, 0)


def test_options_outside_twistd() -> None:
    """
    Options parsed on their own (an embedding application) switch nothing.
    """
    options = Options()
    options.parseOptions(["--config", "/dev/null"])
    assert _run_as(options) is None
