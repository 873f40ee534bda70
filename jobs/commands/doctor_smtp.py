"""The doctor's mail probe: how far a connection to the SMTP server gets; no mail is sent."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable

from jobs.commands.doctor_checks import SmtpProbe
from jobs.config.settings import SmtpSettings


def probe_smtp(smtp: SmtpSettings, *, timeout: float = 10.0,
               plain: Callable[..., smtplib.SMTP] = smtplib.SMTP,
               implicit: Callable[..., smtplib.SMTP] = smtplib.SMTP_SSL) -> SmtpProbe:
    """Connect, EHLO, STARTTLS when configured, AUTH when a username is set; no mail sent."""
    assert smtp.host is not None
    steps: list[str] = []
    client: smtplib.SMTP | None = None
    try:
        steps.append("connect")
        factory = implicit if smtp.ssl else plain
        client = factory(smtp.host, smtp.port, timeout=timeout)
        steps.append("EHLO")
        code, _ = client.ehlo()
        if code != 250:
            return SmtpProbe(tuple(steps), f"EHLO refused ({code})")
        if smtp.starttls:
            steps.append("STARTTLS")
            if not client.has_extn("starttls"):
                return SmtpProbe(tuple(steps), "the server does not offer STARTTLS")
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if smtp.username is not None and smtp.password is not None:
            steps.append("AUTH")
            client.login(smtp.username, smtp.password.reveal())
        return SmtpProbe(tuple(steps))
    except smtplib.SMTPAuthenticationError as error:
        return SmtpProbe(tuple(steps), f"login refused ({error.smtp_code})")
    except (OSError, smtplib.SMTPException) as error:
        return SmtpProbe(tuple(steps), f"{type(error).__name__}: {_first_line(error)}")
    finally:
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:120] if lines else "no detail"
