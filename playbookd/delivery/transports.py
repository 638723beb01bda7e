"""Handing messages to a transport: a directory of .eml files, or SMTP.

The only module that imports aiosmtplib. SMTP failures are classified by the phase they happen in,
because that decides whether a retry could send the same email twice:
before the message body was handed over, a failure is safe to retry (TemporaryFailure) or final
(PermanentFailure); once the body is on the wire and the server's verdict is lost, nobody knows
whether it was accepted (UncertainDelivery), and the caller must not retry blindly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib
from aiosmtplib.email import quote_address

from playbookd.config.delivery import Delivery, Smtp
from playbookd.delivery.message import Wire, wire_of
from playbookd.delivery.pipeline import Garbled, Lost, Pipe, body
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


class Timed:
    """Wraps a transport to hand each send's seconds, failures included, to `observe(name, seconds)`."""

    def __init__(self, inner: Transport, observe: Callable[[str, float], None]) -> None:
        self.inner, self.observe = inner, observe
        self.name = inner.name

    async def send(self, message: Message) -> None:
        started = time.perf_counter()
        try:
            await self.inner.send(message)
        finally:
            self.observe(self.name, time.perf_counter() - started)

    async def close(self) -> None:
        await self.inner.close()


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


def _refusal(code: int, message: str, phase: str) -> DeliveryError:
    text = f"{phase}: {code} {message}"
    verdict = classify(code, message, phase)
    if verdict.temporary:
        return TemporaryFailure(text, soft_bounce=verdict.soft_bounce)
    return PermanentFailure(text, unknown_user=verdict.hard_bounce, policy=verdict.policy)


def _classify_refusal(exc: aiosmtplib.SMTPResponseException, phase: str) -> DeliveryError:
    return _refusal(exc.code, exc.message, phase)


_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


def _path(address: str, encoding: str) -> bytes:
    """An address as MAIL FROM and RCPT TO carry it, without parsing again one that is plainly an
    addr-spec (a tenth of a send's CPU went there)."""
    return (f"<{address}>" if _PLAIN.fullmatch(address) else quote_address(address)).encode(encoding)


async def _envelope(client: aiosmtplib.SMTP, command: bytes, address: str, options: list[str],
                    encoding: str) -> None:
    """MAIL FROM or RCPT TO, as client.mail and client.rcpt send them."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    verb, _, arg = command.partition(b" ")
    reply = await client.execute_command(verb, arg + _path(address, encoding), *(o.encode() for o in options))
    if verb == b"MAIL" and reply.code != 250:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, address)
    if verb == b"RCPT" and reply.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, address)


Connection = aiosmtplib.SMTP | Pipe
_ENVELOPE = (("MAIL", (250,)), ("RCPT", (250, 251)), ("DATA", (354,)))  # what each pipelined command needs


class SmtpTransport:
    """One SMTP connection, kept open between messages and ticks; reconnects when the server closed it.
    A server that offers PIPELINING gets each envelope and DATA in one write (delivery.pipeline);
    any other keeps aiosmtplib's command-by-command exchange."""

    name = "smtp"

    def __init__(self, settings: Smtp, local_hostname: str | None = None,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self.tls_context = tls_context
        self.client: aiosmtplib.SMTP | None = None
        self.pipe: Pipe | None = None
        self.extensions: set[str] = set()  # what the pipe's server offered in its EHLO reply
        self.lock = asyncio.Lock()

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(hostname=s.host, port=s.port, use_tls=s.tls, start_tls=s.starttls,
                               timeout=s.timeout, local_hostname=self.local_hostname,
                               tls_context=self.tls_context, username=s.username, password=s.password)

    @property
    def _open(self) -> bool:
        return (self.pipe is not None and self.pipe.alive) or (self.client is not None and self.client.is_connected)

    async def _connected(self) -> Connection:
        if self.pipe is not None and self.pipe.alive:
            return self.pipe
        if self.client is not None and self.client.is_connected:
            return self.client
        self._drop()
        client = self._new_client()
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise PermanentFailure(f"authentication refused by {self.settings.host}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            where = f"{self.settings.host}:{self.settings.port}"
            raise TemporaryFailure(f"cannot connect to {where}: {exc}") from exc
        self.client = client
        if await self._offers(client, "pipelining") and isinstance(client.transport, asyncio.Transport):
            # the greeting, EHLO, STARTTLS and AUTH are done: the send phase reads the stream itself
            self.extensions = set(client.esmtp_extensions)
            self.pipe, self.client, client.transport, client.protocol = Pipe(client.transport, self.settings.timeout), \
                None, None, None
            return self.pipe
        return client

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.pipe is not None:
            self.pipe.close()
        self.client = self.pipe = None

    async def send(self, message: Message) -> None:
        wired = _wired(message)
        async with self.lock:
            reused = self._open
            try:
                await self.send_once(wired)
            except _Stale:
                if not reused:
                    raise
                # A kept connection the server closed while idle (or is closing: 421): nothing was handed
                # over, so the same message goes out on a fresh one.
                await self.send_once(wired)

    async def send_once(self, message: Wire) -> None:
        connection = await self._connected()
        try:
            if isinstance(connection, Pipe):
                await self._pipelined(connection, message)
            else:
                await self._transaction(connection, message)
        except _Stale:
            self._drop()
            raise
        except DeliveryError:
            await self._reset(connection)
            raise

    def _options(self, message: Wire, offered: set[str]) -> tuple[list[str], str]:
        """MAIL's options and the envelope's encoding; a message that needs SMTPUTF8 fails where it is not offered."""
        if not message.utf8:
            return [], "ascii"
        if "smtputf8" not in offered:
            # about our server, not the recipient: the message fails, the address is not suppressed
            who = message.recipient if not message.recipient.isascii() else message.sender
            raise PermanentFailure(f"{who} needs SMTPUTF8, which {self.settings.host}:{self.settings.port} does "
                                   "not offer; nothing was sent")
        return ["SMTPUTF8", *(["BODY=8BITMIME"] if "8bitmime" in offered else [])], "utf-8"

    async def _pipelined(self, pipe: Pipe, message: Wire) -> None:
        """MAIL, RCPT and DATA in one write, their three replies, then the body in one write and its reply."""
        options, encoding = self._options(message, self.extensions)
        mail = b" ".join([b"MAIL FROM:" + _path(message.sender, encoding), *(o.encode() for o in options)])
        replies: list[tuple[int, str]] = []
        lost = None
        try:
            pipe.write(mail + b"\r\nRCPT TO:" + _path(message.recipient, encoding) + b"\r\nDATA\r\n", len(_ENVELOPE))
            while len(replies) < len(_ENVELOPE):
                replies.append(await pipe.reply())
        except Lost as exc:  # nothing was handed over, whatever the server read
            lost = exc
        except Garbled as exc:
            raise PermanentFailure(f"{_ENVELOPE[len(replies)][0]}: {exc}") from exc
        refused = [phase for (phase, taken), (code, _) in zip(_ENVELOPE, replies, strict=False) if code not in taken]
        if refused and refused != ["DATA"] and len(replies) == len(_ENVELOPE) and replies[-1][0] == 354:
            await self._end_empty(pipe)  # RFC 2920 says a server must not open DATA then; this one did
        for (phase, taken), (code, text) in zip(_ENVELOPE, replies, strict=False):
            if code == 421 and phase == "MAIL":
                raise _Stale(f"MAIL: {code} {text}")
            if code not in taken:
                raise _refusal(code, text, phase)
        if lost is not None:
            if not replies:
                raise _Stale(f"MAIL: {lost}") from lost
            raise TemporaryFailure(f"{_ENVELOPE[len(replies)][0]}: {lost}") from lost
        if not pipe.alive:  # closed by a fault after the envelope's replies: no byte of the body went out
            raise TemporaryFailure(f"DATA: {pipe.replies.fault or 'connection closed'} (before the message was sent)")
        try:
            pipe.write(body(message.data), 1)
            code, text = await pipe.reply()
        except (Lost, Garbled) as exc:
            raise UncertainDelivery(f"after the message was sent: {exc}") from exc
        if code != 250:
            raise _refusal(code, text, "DATA")

    @staticmethod
    async def _end_empty(pipe: Pipe) -> None:
        """End a DATA opened for a refused envelope with no message; the refusal is what counts."""
        try:
            pipe.write(b".\r\n", 1)
            await pipe.reply()
        except (Lost, Garbled):
            pipe.close()

    async def _transaction(self, client: aiosmtplib.SMTP, message: Wire) -> None:
        sender, recipient, data = message.sender, message.recipient, message.data
        offered = {"smtputf8", "8bitmime"} if message.utf8 and await self._offers(client, "smtputf8") else set()
        options, encoding = self._options(message, {e for e in offered if client.supports_extension(e)})
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

    async def _reset(self, connection: Connection) -> None:
        """After a failed transaction, start clean: RSET if the line is alive, else drop it."""
        try:
            if isinstance(connection, Pipe):
                if connection.alive:
                    connection.write(b"RSET\r\n", 1)
                    if (await connection.reply())[0] == 250:
                        return
            elif connection.is_connected:
                await connection.rset()
                return
        except (aiosmtplib.SMTPException, OSError, Lost, Garbled):
            pass
        self._drop()

    async def close(self) -> None:
        # under the send lock: QUIT written while a send waits for its reply would take that reply
        async with self.lock:
            if self.pipe is not None and self.pipe.alive:
                with contextlib.suppress(Lost, Garbled):
                    self.pipe.write(b"QUIT\r\n", 1)
                    await self.pipe.reply()
            elif self.client is not None and self.client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await self.client.quit()
            self._drop()


def make_transport(delivery: Delivery) -> Transport:
    if delivery.transport == "smtp":
        return SmtpTransport(delivery.smtp)
    return FileTransport(delivery.directory)
