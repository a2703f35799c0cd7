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
the reply to the final "." fail for the whole transaction. With a TLS context
the server offers STARTTLS.
"""

from __future__ import annotations

import email
import re
import threading
from dataclasses import dataclass

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

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
