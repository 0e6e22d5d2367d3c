"""Outgoing email for verification and password reset: SMTP, or the log when no host is set.

`SmtpMailer` uses the standard library's `smtplib` on a worker thread (so the event loop
never waits on the network): implicit TLS on port 465, STARTTLS whenever the server
offers it, and a login only when `auth.smtp.username` is set. It refuses to send a
password over a connection that is not encrypted. `LogMailer` writes the message to the
`alyx.mail` log instead, which is what development wants: the link is in the terminal.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import Protocol

from alyx_server.config import SmtpSettings

__all__ = ["LogMailer", "Mailer", "SmtpMailer", "mailer_for"]

log = logging.getLogger("alyx.mail")

SMTP_TIMEOUT = 30.0
DEFAULT_FROM = "Alyx <noreply@localhost>"


class Mailer(Protocol):
    """Sends one plain-text email."""

    async def send(self, to: str, subject: str, body: str) -> None: ...


class LogMailer:
    """Writes each email to the log (WARNING, so it shows at the default level)."""

    async def send(self, to: str, subject: str, body: str) -> None:
        log.warning("email not sent (auth.smtp.host is empty); to %s: %s\n%s", to, subject, body)


class SmtpMailer:
    """Sends through the SMTP server of `auth.smtp.*`; see the module docstring."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    async def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self._settings.from_ or DEFAULT_FROM
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        await asyncio.to_thread(self._deliver, message)

    def _deliver(self, message: EmailMessage) -> None:
        s = self._settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.port == 465:
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=SMTP_TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=SMTP_TIMEOUT)
        with smtp:
            smtp.ehlo()
            encrypted = s.port == 465
            if not encrypted and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                encrypted = True
            if s.username:
                if not encrypted:
                    raise smtplib.SMTPException(
                        f"{s.host}:{s.port} offers no TLS; refusing to send the SMTP password in clear"
                    )
                smtp.login(s.username, s.password)
            smtp.send_message(message)


def mailer_for(settings: SmtpSettings) -> Mailer:
    """SMTP when `auth.smtp.host` is set, else the log."""
    return SmtpMailer(settings) if settings.host else LogMailer()
