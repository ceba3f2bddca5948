"""The email connector: plain-text messages through the SMTP server in the settings (``IDP_MCP_SMTP_*``).

Messages carry one-time codes, so neither their body nor their subject is ever logged; a failed delivery is logged
with the recipient's domain and the kind of error only. Delivery runs in a worker thread: smtplib blocks.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import anyio.to_thread

from idp_mcp.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    body: str


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def configured(self) -> bool:
        return self._settings.email_connector_configured

    def _message(self, email: OutgoingEmail) -> EmailMessage:
        sender = self._settings.smtp_from or ""
        message = EmailMessage()
        message["From"] = sender
        message["To"] = email.to
        message["Subject"] = email.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(email.body)
        return message

    def send_sync(self, email: OutgoingEmail) -> None:
        """Deliver ``email`` now; raises ``OSError`` or ``smtplib.SMTPException`` when the server refuses it."""
        settings = self._settings
        if not settings.smtp_host:
            raise smtplib.SMTPException("no SMTP connector is configured")
        message = self._message(email)
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout) as smtp:
            smtp.ehlo()
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if settings.smtp_username:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_username, password)
            smtp.send_message(message)

    async def send(self, email: OutgoingEmail) -> bool:
        """Deliver ``email`` in a worker thread; False (and a log line without the content) when it failed."""
        try:
            await anyio.to_thread.run_sync(self.send_sync, email)
        except (OSError, smtplib.SMTPException) as exc:
            logger.warning(
                "email to a recipient at %s not delivered: %s", email.to.rpartition("@")[2], type(exc).__name__
            )
            return False
        logger.info("email delivered to a recipient at %s", email.to.rpartition("@")[2])
        return True
