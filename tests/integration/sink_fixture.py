# SPDX-License-Identifier: ISC
"""
sink_fixture.py - next-hop SMTP servers for the queue tests: Python's aiosmtpd
(Debian python3-aiosmtpd), run in a thread of the test process on a loopback
address, recording every message it takes.

    sink = Sink("127.0.0.3", port).start()
    ... sink.messages: list of Received(mail_from, rcpt_tos, data, peer)
    sink.wait_for(lambda msgs: len(msgs) >= 3)
    sink.stop()

Behaviour is chosen by recipient local part:
    reject-*   RCPT gets 550 5.1.1 (permanent)
    defer-*    RCPT gets 450 4.2.1 (temporary)
everything else is accepted. `data_reply` (e.g. "451 4.3.0 try later") makes
the reply to the final "." fail for the whole transaction; `data_delay` holds
that reply back (a slow next hop). With a TLS context
the server offers STARTTLS.

GatedSink (the crash tests of test_durability.py) also keeps, per connection,
the order of what it saw (MAIL, each message taken, each 250 sent, RSET,
QUIT, the close) and can hold replies until release(): every reply to a
final "." after the first `hold_data_after` messages (the message is taken
first, so it is in flight: received, its 250 not sent), or the reply to MAIL
on a connection that already delivered (`hold_mail_on_reuse`: the sender has
read the 250 of its last message, and shows it by starting the next one).
in_flight() then says which messages a crash of the sender may repeat: on
each connection, a message with nothing after it but its 250.
"""

from __future__ import annotations

import asyncio
import email
import re
import collections
import threading
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from harness import wait_until


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: str
    tls: bool

    @property
    def message_id(self) -> str | None:
        m = re.search(rb"^Message-ID:\s*(\S+)\s*$", self.data, re.M | re.I)
        return m.group(1).decode() if m else None

    def parsed(self):
        return email.message_from_bytes(self.data)


class _Handler:
    def __init__(self, sink: "Sink"):
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject-"):
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        if local.startswith("defer-"):
            return "450 4.2.1 <%s>: Recipient address temporarily unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self.sink.lock:
            self.sink.data_started += 1
        if self.sink.data_delay:
            await asyncio.sleep(self.sink.data_delay)
        if self.sink.data_reply:
            return self.sink.data_reply
        tls = session.ssl is not None
        with self.sink.lock:
            self.sink.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                               envelope.original_content or envelope.content,
                                               session.peer[0], tls))
        return "250 2.0.0 Ok: queued"


class Sink:
    def __init__(self, host: str, port: int, tls_context=None, require_tls: bool = False):
        self.host, self.port = host, port
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.data_reply: str | None = None
        self.data_delay: float = 0          # seconds before the reply to "."
        self.data_started = 0               # transactions that reached the "."
        self.tls_context = tls_context
        self.require_tls = require_tls
        self.controller: Controller | None = None

    def start(self) -> "Sink":
        kw = {}
        if self.tls_context is not None:
            kw = {"tls_context": self.tls_context, "require_starttls": self.require_tls}
        self.controller = Controller(_Handler(self), hostname=self.host, port=self.port,
                                     server_hostname="sink.test", ready_timeout=10,
                                     decode_data=False, enable_SMTPUTF8=True, **kw)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            try:
                self.controller.stop()
            except Exception:
                pass
            self.controller = None

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, predicate, timeout: float = 30, what: str = "the sink"):
        """Wait until predicate(messages) holds; return what it returned, or
        the messages when that was just True."""
        got = wait_until(lambda: predicate(self.snapshot()), timeout, what)
        return self.snapshot() if got is True else got

    def rcpts(self) -> list[str]:
        return [r for m in self.snapshot() for r in m.rcpt_tos]


@dataclass
class SinkConn:
    """What one connection to a GatedSink did, in order: ("mail",),
    ("data", message_id), ("250", message_id), ("rset",), ("quit",)."""
    peer: tuple
    session: object = None    # kept so that its id() is never reused
    events: list = field(default_factory=list)
    closed: bool = False
    held: str | None = None   # "mail" or "data" while a reply is held

    def last_message(self) -> str | None:
        for ev in reversed(self.events):
            if ev[0] == "data":
                return ev[1]
        return None

    def in_flight(self) -> str | None:
        """The message this connection's sender may not have seen answered:
        the last one taken, unless a command came after it."""
        for ev in reversed(self.events):
            if ev[0] in ("mail", "rset", "quit"):
                return None
            if ev[0] == "data":
                return ev[1]
        return None


class _GatedHandler(_Handler):
    async def _hold(self, conn: SinkConn, what: str):
        with self.sink.cond:
            conn.held = what
            self.sink.holds[what] += 1
            self.sink.cond.notify_all()
        while not self.sink.released.is_set():
            await asyncio.sleep(0.005)
        conn.held = None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        sink: GatedSink = self.sink
        conn = sink._conn(session)
        with sink.lock:
            reuse = conn.last_message() is not None
            conn.events.append(("mail",))
        if reuse and sink.hold_mail_on_reuse:
            await self._hold(conn, "mail")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_DATA(self, server, session, envelope):
        sink: GatedSink = self.sink
        conn = sink._conn(session)
        data = envelope.original_content or envelope.content
        rec = Received(envelope.mail_from, list(envelope.rcpt_tos), data, session.peer[0],
                       session.ssl is not None)
        with sink.lock:
            sink.messages.append(rec)
            conn.events.append(("data", rec.message_id))
            n = len(sink.messages)
        if sink.hold_data_after is not None and n > sink.hold_data_after:
            await self._hold(conn, "data")
        with sink.lock:
            conn.events.append(("250", rec.message_id))
            sink.replied += 1
            sink.cond.notify_all()
        return "250 2.0.0 Ok: queued"

    async def handle_RSET(self, server, session, envelope):
        with self.sink.lock:
            self.sink._conn(session).events.append(("rset",))
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server, session, envelope):
        with self.sink.lock:
            self.sink._conn(session).events.append(("quit",))
        return "221 2.0.0 Bye"


class _GatedSMTP(SMTP):
    def __init__(self, handler, sink: "GatedSink", **kw):
        super().__init__(handler, **kw)
        self._sink = sink

    def connection_lost(self, exc):
        with self._sink.lock:
            c = self._sink.conns.get(id(self.session)) if self.session else None
            if c is not None:
                c.closed = True
        super().connection_lost(exc)


class _GatedController(Controller):
    def __init__(self, sink: "GatedSink", *args, **kw):
        self._sink = sink
        super().__init__(*args, **kw)

    def factory(self):
        return _GatedSMTP(self.handler, self._sink, **self.SMTP_kwargs)


class GatedSink(Sink):
    def __init__(self, host: str, port: int):
        super().__init__(host, port)
        # Re-entrant: the handlers look up their connection under it.
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.conns: dict[int, SinkConn] = {}
        self.hold_data_after: int | None = None
        self.hold_mail_on_reuse = False
        self.released = threading.Event()
        self.replied = 0
        self.holds = collections.Counter()   # replies held so far, by command

    def _conn(self, session: Session) -> SinkConn:
        with self.lock:
            c = self.conns.get(id(session))
            if c is None:
                c = self.conns[id(session)] = SinkConn(session.peer, session)
            return c

    def start(self) -> "GatedSink":
        self.controller = _GatedController(self, _GatedHandler(self), hostname=self.host,
                                           port=self.port, server_hostname="sink.test",
                                           ready_timeout=10, decode_data=False,
                                           enable_SMTPUTF8=True)
        self.controller.start()
        return self

    def release(self):
        """Send every held reply and hold nothing from now on."""
        self.hold_data_after = None
        self.hold_mail_on_reuse = False
        self.released.set()

    def wait_replied(self, n: int, timeout: float = 30):
        """Return as soon as the n-th 250 to a final "." is on its way."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.replied >= n, timeout):
                raise AssertionError(f"the sink answered {self.replied} messages, not {n}")

    def wait_held(self, what: str, n: int, timeout: float = 30):
        """Return as soon as n open connections wait for a held reply to
        `what` ("mail" or "data")."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.held(what) >= n, timeout):
                raise AssertionError(f"{self.held(what)} connections held at {what}, "
                                     f"not {n}")

    def wait_holds(self, what: str, n: int, timeout: float = 30):
        """Return once n replies to `what` have been held in all (whatever
        became of their connections)."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.holds[what] >= n, timeout):
                raise AssertionError(f"{self.holds[what]} replies to {what} held, not {n}")

    def connections(self) -> list[SinkConn]:
        with self.lock:
            return list(self.conns.values())

    def held(self, what: str) -> int:
        return sum(1 for c in self.connections() if c.held == what and not c.closed)

    def open_connections(self) -> list[SinkConn]:
        return [c for c in self.connections() if not c.closed]

    def in_flight(self) -> set[str]:
        return {m for c in self.connections() if (m := c.in_flight()) is not None}
