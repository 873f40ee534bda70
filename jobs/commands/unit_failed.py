"""`python -m jobs.commands.unit_failed UNIT`: what systemd runs when a pass-reconciler unit fails
for good.

Started by `pass-reconciler-failure@.service` (the units' `OnFailure=`), with the same env file:
it pings the heartbeat's `/fail` URL, posts one line to the chat webhook and e-mails the report
recipients, each when configured, so a daemon that systemd gave up on is heard of even with no
monitor watching the heartbeat. Exit 0 when every configured channel took it, 1 otherwise,
2 when the settings are bad. The URLs are secrets: never on a command line, never logged.
"""

from __future__ import annotations

import html
import os
import socket
import sys
from collections.abc import Sequence

from jobs.adapters.logs import configure_logging
from jobs.config.settings import Settings, load_settings
from jobs.core.errors import ReconcilerError
from jobs.run.compose import failure_channels


def tell(settings: Settings, unit: str, host: str) -> list[str]:
    """Send the word on every configured channel; the channels that did not take it."""
    line = (f"pass-reconciler: systemd unit {unit} failed on {host}; systemd has given up "
            f"restarting it. See `journalctl -u {unit}`, then `reconcile doctor`.")
    missed: list[str] = []
    channels = failure_channels(settings)
    heartbeat, mailer = channels.heartbeat, channels.mailer
    if heartbeat.enabled and not heartbeat.fail():
        missed.append("heartbeat")
    if channels.chat is not None and channels.chat.send({"text": line}) is not None:
        missed.append("chat")
    if mailer is not None:
        message = mailer.compose(f"pass-reconciler: {unit} failed on {host}", line + "\n",
                                 f"<p>{html.escape(line)}</p>")
        if not mailer.send(message).sent:
            missed.append("e-mail")
    return missed


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    unit = args[0] if args else "pass-reconciler.service"
    configure_logging(json=True)
    try:
        settings = load_settings(os.environ)
        configure_logging(json=True, secrets=settings.secret_values())
        missed = tell(settings, unit, socket.gethostname())
    except ReconcilerError as error:
        print(f"reconcile: {error}", file=sys.stderr)
        return error.exit_code
    if missed:
        print(f"reconcile: the failure of {unit} could not be sent by {', '.join(missed)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
