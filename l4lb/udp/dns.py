"""
The DNS part of C{udp-check dns NAME [TYPE]}: one query datagram, and
whether a datagram answers it.
"""

from __future__ import annotations

from twisted.names import dns


def build_query(query_id: int, name: str, kind: str = "A") -> bytes:
    """
    A recursive DNS query for C{name} of type C{kind}, as one datagram.

    @param query_id: The message id (0-65535) the answer must carry.
    """
    message = dns.Message(id=query_id, recDes=1)
    message.queries = [dns.Query(name.encode("idna"), getattr(dns, kind), dns.IN)]
    return message.toStr()  # type: ignore[no-any-return]


def answers(datagram: bytes, query_id: int) -> bool:
    """
    Whether C{datagram} is a DNS response to the query C{query_id}, with
    any response code: a server that says NXDOMAIN or SERVFAIL still
    answers.
    """
    message = dns.Message()
    try:
        message.fromStr(datagram)
    except Exception:
        return False
    return bool(message.answer) and message.id == query_id
