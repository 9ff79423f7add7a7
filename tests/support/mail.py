"""The SMTP server the tests send to (aiosmtpd) and what it received, and over which of its
connections."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


@dataclass
class Mailbox:
    """What the SMTP server received. Each connection is numbered (1, 2, …) when it greets
    the server (EHLO or HELO); `connections[i]` is the connection of `messages[i]`."""

    messages: list[EmailMessage] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections_seen: int = 0
    quits: int = 0  # QUIT commands answered

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        number = self.number_connection(session)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.connections.append(number)
        return "250 OK"

    def number_connection(self, session: Any) -> int:
        with self.lock:
            number = getattr(session, "connection_number", None)
            if number is None:
                self.connections_seen += 1
                number = session.connection_number = self.connections_seen
            return int(number)

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.quits += 1
        return "221 Bye"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.connections.clear()
            self.connections_seen = 0
            self.quits = 0

    def connections_to(self, address: str) -> list[int]:
        """The connection each message to `address` came over, in order."""
        with self.lock:
            return [
                n
                for m, n in zip(self.messages, self.connections, strict=True)
                if m["To"] == address
            ]

    def message_ids(self) -> list[str]:
        with self.lock:
            return [str(m["Message-ID"]) for m in self.messages]

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    @staticmethod
    def text(message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    def last_link(self, address: str) -> str:
        messages = self.to(address)
        assert messages, f"no email reached {address}"
        links = re.findall(r"https?://\S+", self.text(messages[-1]))
        assert links, "the email has no link"
        return str(links[-1])

    def last_token(self, address: str) -> str:
        return self.last_link(address).split("token=", 1)[1]


class _Numbered(SMTP):
    """Numbers each connection in the Mailbox at its greeting: the connection the
    Controller opens to itself at start, which never greets, is not counted."""

    async def smtp_HELO(self, hostname: str) -> None:
        self.event_handler.number_connection(self.session)
        await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:
        self.event_handler.number_connection(self.session)
        await super().smtp_EHLO(hostname)


class _Controller(Controller):
    def __init__(self, server_class: type[SMTP], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_class = type("NumberedSMTP", (_Numbered, server_class), {})

    def factory(self) -> SMTP:
        return self.server_class(self.handler, **self.SMTP_kwargs)


@dataclass
class SMTPServer:
    """aiosmtpd on 127.0.0.1:`port`; `stop()` closes every connection it has, as a server
    that goes down does, and `start()` listens on the same port again."""

    mailbox: Mailbox
    port: int
    controller: Controller | None = None
    server_class: type[SMTP] = SMTP  # aiosmtpd's protocol, or a subclass that misbehaves

    def start(self) -> None:
        self.controller = _Controller(
            self.server_class, self.mailbox, hostname="127.0.0.1", port=self.port
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
