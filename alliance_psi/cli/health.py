"""``alliance-psi health``: ask a server's plain health port whether it is ready, for a
container's HEALTHCHECK (the image has no curl) or a script.

Exit 0 when the URL answers 200, 1 otherwise, with the server's reasons (``/readyz`` answers
503 with one line per reason) or why it could not be asked. Only ``http://`` URLs: the port
is plain HTTP (``services.monitoring``), and no other scheme (``file:``, ``ftp:``) is opened.
"""

from __future__ import annotations

import click

__all__ = ["health"]

_MAX_BODY = 64 * 1024


@click.command("health")
@click.option(
    "--url",
    required=True,
    metavar="URL",
    help="What to ask, e.g. http://127.0.0.1:9464/readyz (readiness) or /healthz (liveness), on the "
    "address given to --metrics-listen.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
def health(url: str, timeout: float) -> None:
    """Exit 0 if URL answers 200 (the server is live or ready), else 1 saying why.

    For a Docker HEALTHCHECK: CMD ["alliance-psi", "health", "--url", "http://127.0.0.1:9464/readyz"].
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise click.BadParameter(
            f"{url!r}: give an http:// URL of a server's --metrics-listen address, e.g. http://127.0.0.1:9464/readyz",
            param_hint="'--url'",
        )
    # No proxy: the health port is this machine's or its pod's, never reached through a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as answer:
            body = answer.read(_MAX_BODY).decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as exc:
        reasons = exc.read(_MAX_BODY).decode("utf-8", "replace").strip()
        raise click.ClickException(f"{url} answered {exc.code}: {reasons or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise click.ClickException(f"cannot reach {url}: {reason}") from None
    click.echo(body or "ok")
