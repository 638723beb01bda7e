"""Handing messages to a transport: a directory of .eml files, or SMTP.

The only module that imports aiosmtplib. SMTP failures are classified by the phase they happen in,
because that decides whether a retry could send the same email twice:
before the message body was handed over, a failure is safe to retry (TemporaryFailure) or final
(PermanentFailure); once the body is on the wire and the server's verdict is lost, nobody knows
whether it was accepted (UncertainDelivery), and the caller must not retry blindly.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import tempfile
from collections.abc import Awaitable
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib
from aiosmtplib.email import quote_address

from playbookd.config.delivery import Delivery, Smtp
from playbookd.delivery.message import Wire, wire_of
from playbookd.delivery.replies import classify
from playbookd.errors import DependencyError


class DeliveryError(DependencyError):
    """A message could not be handed over."""


class TemporaryFailure(DeliveryError):
    """Nothing was accepted; trying again later may work. `soft_bounce` when the server answered
    4xx about this recipient or message (mailbox full...), not when it could not be reached."""

    def __init__(self, message: str, soft_bounce: bool = False) -> None:
        super().__init__(message)
        self.soft_bounce = soft_bounce


class PermanentFailure(DeliveryError):
    """The server refused for good. `unknown_user` when the mailbox does not exist (a hard bounce)."""

    def __init__(self, message: str, unknown_user: bool = False, policy: bool = False) -> None:
        super().__init__(message)
        self.unknown_user = unknown_user
        self.policy = policy  # refused by the server's policy or our setup (5.7.x), not for the recipient


Message = EmailMessage | Wire  # delivery hands over Wire; send-test and older callers an EmailMessage


def _wired(message: Message) -> Wire:
    """The envelope and bytes to hand over; a message that cannot be written fails alone, before any is sent."""
    if isinstance(message, Wire):
        wired = message
    else:
        try:
            wired = wire_of(message)
        except (AttributeError, IndexError) as exc:
            raise PermanentFailure(f"message cannot be built: no usable From or To address ({exc})") from exc
        except Exception as exc:  # only this message's content is involved: it can never be written
            raise PermanentFailure(f"message cannot be built: {type(exc).__name__}: {exc}") from exc
    if "@" not in wired.sender or "@" not in wired.recipient:
        raise PermanentFailure("message cannot be built: no usable From or To address")
    return wired


class UncertainDelivery(DeliveryError):
    """The connection broke after the body was sent: the message may or may not have been accepted."""


class _Stale(TemporaryFailure):
    """The connection was gone (closed, or closing with 421) when a transaction began: nothing was sent."""


class Transport(Protocol):
    name: str

    async def send(self, message: Message) -> None: ...

    async def close(self) -> None: ...


class FileTransport:
    """Writes each message to `<directory>/<message-id>.eml`; rewriting the same message is a no-op."""

    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, message: Message) -> Path:
        message_id = message.message_id if isinstance(message, Wire) else str(message["Message-ID"])
        stem = re.sub(r"[^A-Za-z0-9._@-]", "", message_id) or "message"
        return self.directory / f"{stem}.eml"

    async def send(self, message: Message) -> None:
        wired = _wired(message)
        try:
            self._write(wired, wired.data)
        except OSError as exc:
            raise TemporaryFailure(f"cannot write to {self.directory}: {exc}") from exc

    def _write(self, message: Wire, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path_for(message)
        # Write then rename, so a reader never sees half a message and a crash leaves no torn file.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)

    async def close(self) -> None:
        return None


def _classify_refusal(exc: aiosmtplib.SMTPResponseException, phase: str) -> DeliveryError:
    text = f"{phase}: {exc.code} {exc.message}"
    verdict = classify(exc.code, exc.message, phase)
    if verdict.temporary:
        return TemporaryFailure(text, soft_bounce=verdict.soft_bounce)
    return PermanentFailure(text, unknown_user=verdict.hard_bounce, policy=verdict.policy)


_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


async def _envelope(client: aiosmtplib.SMTP, command: bytes, address: str, options: list[str],
                    encoding: str) -> None:
    """MAIL FROM or RCPT TO, as client.mail and client.rcpt send them, without parsing again an address
    that is plainly an addr-spec (a tenth of a send's CPU went there)."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    quoted = f"<{address}>" if _PLAIN.fullmatch(address) else quote_address(address)
    verb, _, arg = command.partition(b" ")
    reply = await client.execute_command(verb, arg + quoted.encode(encoding), *(o.encode() for o in options))
    if verb == b"MAIL" and reply.code != 250:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, address)
    if verb == b"RCPT" and reply.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, address)


class SmtpTransport:
    """One SMTP connection, kept open between messages and ticks; reconnects when the server closed it."""

    name = "smtp"

    def __init__(self, settings: Smtp, local_hostname: str | None = None,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self.tls_context = tls_context
        self.client: aiosmtplib.SMTP | None = None
        self.lock = asyncio.Lock()

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(hostname=s.host, port=s.port, use_tls=s.tls, start_tls=s.starttls,
                               timeout=s.timeout, local_hostname=self.local_hostname,
                               tls_context=self.tls_context, username=s.username, password=s.password)

    async def _connected(self) -> aiosmtplib.SMTP:
        if self.client is not None and self.client.is_connected:
            return self.client
        self.client = self._new_client()
        try:
            await self.client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            self.client = None
            raise PermanentFailure(f"authentication refused by {self.settings.host}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.client = None
            where = f"{self.settings.host}:{self.settings.port}"
            raise TemporaryFailure(f"cannot connect to {where}: {exc}") from exc
        return self.client

    async def send(self, message: Message) -> None:
        wired = _wired(message)
        async with self.lock:
            reused = self.client is not None and self.client.is_connected
            client = await self._connected()
            try:
                await self._transaction(client, wired)
            except _Stale:
                client.close()
                self.client = None
                if not reused:
                    raise
                # A kept connection the server closed while idle (or is closing: 421): nothing was handed
                # over, so the same message goes out on a fresh one.
                await self.send_once(wired)
            except DeliveryError:
                await self._reset(client)
                raise

    async def send_once(self, message: Wire) -> None:
        client = await self._connected()
        try:
            await self._transaction(client, message)
        except DeliveryError:
            await self._reset(client)
            raise

    async def _transaction(self, client: aiosmtplib.SMTP, message: Wire) -> None:
        sender, recipient, utf8, data = message.sender, message.recipient, message.utf8, message.data
        if utf8 and not await self._offers(client, "smtputf8"):
            # about our server, not the recipient: the message fails, the address is not suppressed
            raise PermanentFailure(f"{recipient if not recipient.isascii() else sender} needs SMTPUTF8, which "
                                   f"{self.settings.host}:{self.settings.port} does not offer; nothing was sent")
        encoding = "utf-8" if utf8 else "ascii"
        options = ["SMTPUTF8", *(["BODY=8BITMIME"] if client.supports_extension("8bitmime") else [])] if utf8 else []
        try:
            await _envelope(client, b"MAIL FROM:", sender, options, encoding)
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise _Stale(f"MAIL: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:
                raise _Stale(f"MAIL: {exc.code} {exc.message}") from exc
            raise _classify_refusal(exc, "MAIL") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _Stale(f"MAIL: {exc}") from exc
        await self._step(_envelope(client, b"RCPT TO:", recipient, [], encoding), "RCPT")
        try:
            await client.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify_refusal(exc, "DATA") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise UncertainDelivery(f"connection lost during DATA: {exc}") from exc

    async def _offers(self, client: aiosmtplib.SMTP, extension: str) -> bool:
        """Whether the server lists `extension` in its EHLO reply (asked once per connection)."""
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                return False  # a HELO-only server offers no extension
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise TemporaryFailure(f"EHLO: {exc}") from exc
        return client.supports_extension(extension)

    @staticmethod
    async def _step(call: Awaitable[object], phase: str) -> None:
        try:
            await call
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify_refusal(exc, phase) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(f"{phase}: {exc}") from exc

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """After a failed transaction, start clean: RSET if the line is alive, else drop it."""
        try:
            if client.is_connected:
                await client.rset()
                return
        except (aiosmtplib.SMTPException, OSError):
            pass
        client.close()
        self.client = None

    async def close(self) -> None:
        if self.client is not None and self.client.is_connected:
            try:
                await self.client.quit()
            except (aiosmtplib.SMTPException, OSError):
                self.client.close()
        self.client = None


def make_transport(delivery: Delivery) -> Transport:
    if delivery.transport == "smtp":
        return SmtpTransport(delivery.smtp)
    return FileTransport(delivery.directory)
