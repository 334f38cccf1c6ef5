"""
Load for the upgrade tests, run as separate processes so that neither the
clients nor the echo servers compete with pytest for one interpreter lock:

    python handover_load.py echo
    python handover_load.py tcp --port P --rate 600 --streams 50
    python handover_load.py udp --port P --interval 0.001

C{echo} serves a TCP echo and a UDP echo on 127.0.0.1 (ports chosen by the
kernel) and prints C{READY TCP_PORT UDP_PORT}. C{tcp} opens new connections
at a steady rate, each sending a few bytes and checking their echo, while
C{--streams} clients each stream seeded pseudo-random bytes and check every
byte echoed back. C{udp} sends one numbered datagram per C{--interval} from
one socket and checks each reply. The clients print C{RUNNING} once the
first exchange went through, run until a line (or EOF) arrives on their
standard input or C{--max-seconds} pass, finish what is in flight (bounded),
and print one JSON object with what they counted. Every loop is bounded in
count and time; every address is loopback. Only the standard library is
used: the script runs with any Python 3.9 or later.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
import sys
import threading
import time
from typing import Any, Dict, List, Optional

HOST = "127.0.0.1"
"""Every socket of this module is on this address."""

ECHO_LIFETIME = 600.0
"""Seconds an echo process serves at most, if nobody stops it."""


# -- the echo servers --------------------------------------------------------


class _TcpEcho(asyncio.Protocol):
    """
    Writes back what it reads; closes its side once the peer closed its own.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool:
        # False: asyncio closes the transport once the echo is written out.
        return False


class _UdpEcho(asyncio.DatagramProtocol):
    """
    Sends each datagram back to where it came from.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def _echo_main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_TcpEcho, HOST, 0, backlog=4096)
    transport, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=(HOST, 0))
    tcp_port = server.sockets[0].getsockname()[1]
    udp_port = transport.get_extra_info("sockname")[1]
    print(f"READY {tcp_port} {udp_port}", flush=True)
    await _stopped(ECHO_LIFETIME)
    server.close()
    transport.close()


async def _stopped(limit: float) -> None:
    """
    Return once a line (or EOF) arrives on standard input, or after C{limit}
    seconds.
    """
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def wait() -> None:
        sys.stdin.readline()
        loop.call_soon_threadsafe(finish)

    threading.Thread(target=wait, daemon=True).start()
    try:
        await asyncio.wait_for(done, limit)
    except asyncio.TimeoutError:
        pass


# -- the TCP clients ---------------------------------------------------------


class TcpTally:
    """
    What the TCP clients counted.
    """

    def __init__(self) -> None:
        self.attempted = 0
        self.skipped = 0
        self.ok = 0
        self.failures: Dict[str, int] = {}
        self.examples: List[str] = []
        self.done_at: List[float] = []
        self.streams_done = 0
        self.streams_failed = 0
        self.stream_bytes_sent = 0
        self.stream_bytes_checked = 0
        self.stream_longest = 0.0

    def fail(self, kind: str, detail: str) -> None:
        """
        Count a failed connection or stream of C{kind}.
        """
        self.failures[kind] = self.failures.get(kind, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {detail}")


def _kind(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError):
        return "reset"
    if isinstance(error, asyncio.IncompleteReadError):
        return "closed early"
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    return type(error).__name__


async def _one_connection(port: int, payload: bytes, tally: TcpTally, timeout: float) -> None:
    tally.attempted += 1
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        writer.write(payload)
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
        if echoed != payload:
            tally.fail("corrupt", f"{echoed!r} != {payload!r}")
            return
        writer.write_eof()
        rest = await asyncio.wait_for(reader.read(), timeout)
        if rest:
            tally.fail("extra bytes", repr(rest[:40]))
            return
        tally.ok += 1
        tally.done_at.append(time.monotonic())
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
        tally.fail(_kind(e), repr(e))
    finally:
        if writer is not None:
            writer.close()


async def _connections(
    port: int, rate: float, tally: TcpTally, stop: asyncio.Event, seed: int
) -> None:
    """
    Start one short connection every 1/C{rate} seconds until C{stop} is set;
    a start that falls behind the schedule is made at once.
    """
    rng = random.Random(seed)
    interval = 1.0 / rate
    pending: set = set()
    next_at = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now < next_at:
            await asyncio.sleep(next_at - now)
            continue
        # Bounded concurrency: a balancer that stops answering does not
        # make this loop pile up sockets without end (a start left out is
        # counted, so the rate reached shows it).
        if len(pending) < 400:
            task = asyncio.ensure_future(_one_connection(port, rng.randbytes(24), tally, 10.0))
            pending.add(task)
            task.add_done_callback(pending.discard)
        else:
            tally.skipped += 1
        next_at += interval
        # Behind the schedule, still let the started connections run.
        await asyncio.sleep(0)
    if pending:
        await asyncio.wait(pending, timeout=15.0)


async def _stream(
    port: int,
    number: int,
    tally: TcpTally,
    stop: asyncio.Event,
    size: int,
    chunk: int,
    pace: float,
) -> None:
    """
    Stream after stream until C{stop}: each sends C{size} bytes (varied by a
    seeded generator) in chunks every C{pace} seconds, checks every byte of
    the echo as it arrives, closes its side and expects EOF right after the
    last byte.
    """
    rng = random.Random(number)
    round_ = 0
    while not stop.is_set():
        round_ += 1
        total = rng.randint(size // 2, size)
        data = random.Random(number * 100003 + round_).randbytes(total)
        started = time.monotonic()
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10.0)

            async def send() -> None:
                for offset in range(0, total, chunk):
                    writer.write(data[offset : offset + chunk])  # type: ignore[union-attr]
                    await writer.drain()  # type: ignore[union-attr]
                    await asyncio.sleep(pace)
                writer.write_eof()  # type: ignore[union-attr]

            sender = asyncio.ensure_future(send())
            checked = 0
            while checked < total:
                got = await asyncio.wait_for(reader.read(65536), 10.0)
                if not got:
                    raise asyncio.IncompleteReadError(b"", total - checked)
                if got != data[checked : checked + len(got)]:
                    tally.fail("stream corrupt", f"stream {number} at byte {checked}")
                    raise _Abandon()
                checked += len(got)
            await asyncio.wait_for(sender, 10.0)
            tail = await asyncio.wait_for(reader.read(), 10.0)
            if tail:
                tally.fail("stream extra bytes", f"stream {number}: {len(tail)}")
                raise _Abandon()
            tally.streams_done += 1
            tally.stream_bytes_sent += total
            tally.stream_bytes_checked += checked
            tally.stream_longest = max(tally.stream_longest, time.monotonic() - started)
        except _Abandon:
            tally.streams_failed += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
            tally.streams_failed += 1
            tally.fail("stream " + _kind(e), f"stream {number}: {e!r}")
        finally:
            if writer is not None:
                writer.close()


class _Abandon(Exception):
    """
    A stream already counted its failure.
    """


async def _tcp_main(args: argparse.Namespace) -> Dict[str, Any]:
    tally = TcpTally()
    stop = asyncio.Event()
    # One exchange first, so that RUNNING means the path works.
    await _one_connection(args.port, b"warm-up", tally, 10.0)
    tally.attempted = tally.ok = 0
    tally.done_at.clear()
    started = time.monotonic()
    print("RUNNING", flush=True)
    tasks = [asyncio.ensure_future(_connections(args.port, args.rate, tally, stop, args.seed))]
    tasks += [
        asyncio.ensure_future(
            _stream(args.port, n + 1, tally, stop, args.stream_bytes, args.chunk, args.pace)
        )
        for n in range(args.streams)
    ]
    await _stopped(args.max_seconds)
    stop.set()
    stopped = time.monotonic()
    await asyncio.wait(tasks, timeout=30.0)
    return {
        "started": started,
        "stopped": stopped,
        "attempted": tally.attempted,
        "skipped": tally.skipped,
        "ok": tally.ok,
        "failures": tally.failures,
        "examples": tally.examples,
        "done_at": [round(t, 4) for t in tally.done_at],
        "streams_done": tally.streams_done,
        "streams_failed": tally.streams_failed,
        "stream_bytes_sent": tally.stream_bytes_sent,
        "stream_bytes_checked": tally.stream_bytes_checked,
        "stream_longest": round(tally.stream_longest, 3),
        "unfinished_tasks": sum(1 for t in tasks if not t.done()),
    }


# -- the UDP client ----------------------------------------------------------


def _udp_main(args: argparse.Namespace) -> Dict[str, Any]:
    rng = random.Random(args.seed)
    payloads: List[bytes] = []
    sent_at: List[float] = []
    replied = bytearray(args.max_count)
    tally = {"corrupt": 0, "duplicate": 0, "unknown": 0}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.connect((HOST, args.port))
    sock.settimeout(0.2)
    stop = threading.Event()

    def receive() -> None:
        while True:
            try:
                data = sock.recv(2048)
            except socket.timeout:
                if stop.is_set():
                    return
                continue
            except OSError:
                # ICMP port unreachable surfaces here as a refused receive.
                continue
            seq = struct.unpack("!Q", data[:8])[0] if len(data) >= 8 else -1
            if not 0 <= seq < len(payloads):
                tally["unknown"] += 1
            elif data != payloads[seq]:
                tally["corrupt"] += 1
            elif replied[seq]:
                tally["duplicate"] += 1
            else:
                replied[seq] = 1

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    # The first datagram must come back before the count starts.
    warm = struct.pack("!Q", 2**63) + b"warm-up"
    deadline = time.monotonic() + 10.0
    sock.settimeout(None)
    ready = False
    while not ready and time.monotonic() < deadline:
        sock.send(warm)
        ready = _wait_unknown(tally, 1.0)
    if not ready:
        raise SystemExit("no reply to the warm-up datagram")
    tally["unknown"] = 0
    print("RUNNING", flush=True)
    ending = threading.Event()
    def wait() -> None:
        sys.stdin.readline()
        ending.set()

    threading.Thread(target=wait, daemon=True).start()
    start = time.monotonic()
    limit = start + args.max_seconds
    seq = 0
    while seq < args.max_count and not ending.is_set():
        due = start + seq * args.interval
        now = time.monotonic()
        if now >= limit:
            break
        if now < due:
            time.sleep(due - now)
            continue
        payload = struct.pack("!Q", seq) + rng.randbytes(24)
        payloads.append(payload)
        sent_at.append(time.monotonic())
        try:
            sock.send(payload)
        except OSError:
            # A refused send (ICMP from an earlier datagram) loses only this one.
            pass
        seq += 1
    stopped = time.monotonic()
    # Replies still on their way get a second.
    wait_until = time.monotonic() + 1.0
    while time.monotonic() < wait_until and sum(replied[:seq]) < seq:
        time.sleep(0.02)
    stop.set()
    receiver.join(2.0)
    sock.close()
    lost = [n for n in range(seq) if not replied[n]]
    return {
        "started": start,
        "stopped": stopped,
        "sent": seq,
        "replied": seq - len(lost),
        "lost": lost,
        "lost_sent_at": [round(sent_at[n], 4) for n in lost],
        "first_sent_at": sent_at[0] if sent_at else None,
        "last_sent_at": sent_at[-1] if sent_at else None,
        **tally,
    }


def _wait_unknown(tally: Dict[str, int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tally["unknown"]:
            return True
        time.sleep(0.01)
    return False


# -- command line ------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> None:
    """
    Run the echo servers or one of the clients, as the arguments say.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("echo")
    tcp = commands.add_parser("tcp")
    tcp.add_argument("--port", type=int, required=True)
    tcp.add_argument("--rate", type=float, default=600.0)
    tcp.add_argument("--streams", type=int, default=50)
    tcp.add_argument("--stream-bytes", type=int, default=256 * 1024)
    tcp.add_argument("--chunk", type=int, default=4096)
    tcp.add_argument("--pace", type=float, default=0.05)
    tcp.add_argument("--seed", type=int, default=17)
    tcp.add_argument("--max-seconds", type=float, default=120.0)
    udp = commands.add_parser("udp")
    udp.add_argument("--port", type=int, required=True)
    udp.add_argument("--interval", type=float, default=0.001)
    udp.add_argument("--max-count", type=int, default=100_000)
    udp.add_argument("--seed", type=int, default=17)
    udp.add_argument("--max-seconds", type=float, default=100.0)
    args = parser.parse_args(argv)
    if args.command == "echo":
        asyncio.run(_echo_main())
        return
    if args.command == "tcp":
        result = asyncio.run(_tcp_main(args))
    else:
        result = _udp_main(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
