"""The SMTP server the tests send to (aiosmtpd) and what it received."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Mailbox:
    """What the SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

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


@dataclass
class SMTPServer:
    mailbox: Mailbox
    port: int
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
