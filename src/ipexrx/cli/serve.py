"""``ipexrx serve``: the web reference, JSON API and CDS Hooks services on one port.

Everything is embedded (knowledge base, templates, migrations); the only state is the SQLite
database for CDS feedback and JWT replay protection in the user data directory (or
``$IPEXRX_DATABASE_URL``). Settings come from the environment (see ``docs/api.md``).
"""

from __future__ import annotations

import os
import socket

import typer

from . import app

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_base_url(host: str, port: int, base_url: str | None, dev: bool) -> tuple[str | None, str | None]:
    """(the base URL the service must use for the CDS Hooks ``aud`` and card links, a notice to print).

    The expected ``aud`` comes from configuration, never from the request's Host header (a client
    chooses that header). So: ``IPEXRX_BASE_URL`` when set; on a loopback address, the address
    being bound (only local clients can reach it, and a proxy in front must set the variable to the
    public URL, else its clients' tokens are refused); in development mode (JWT verification off)
    nothing is needed. Anything else cannot start: raises ValueError saying what to set."""
    if base_url:
        return base_url.rstrip("/"), None
    if dev:
        return None, None
    if _is_loopback(host):
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"
        return url, (f"ipexrx: IPEXRX_BASE_URL is not set; serving on loopback only, so CDS Hooks tokens must "
                     f"name {url}/cds-services/... as their audience. Behind a proxy, or for any other "
                     "address, set IPEXRX_BASE_URL to the public URL.")
    raise ValueError(f"listening on {host} needs IPEXRX_BASE_URL, the public URL clients call (e.g. "
                     "https://cds.example.org): CDS Hooks tokens are checked against it. For development "
                     "without token checks, add --dev.")


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes (production: one or two per core)."),
    dev: bool = typer.Option(False, "--dev", help="Development mode: CDS Hooks JWT verification OFF (never with "
                             "real patients). Same as IPEXRX_DEV_MODE=1."),
    open_browser: bool = typer.Option(False, "--open", help="Open the web reference in a browser."),
    log_level: str = typer.Option("info", help="uvicorn log level (critical, error, warning, info, debug)."),
) -> None:
    """Serve the web reference, the JSON API (/api/v1, docs at /docs) and CDS Hooks (/cds-services)."""
    import uvicorn

    from ..service.balance import ENV_FILE, create_share_file
    from ..service.settings import Settings
    from ..storage import Database

    if log_level not in LOG_LEVELS:
        typer.echo(f"error: --log-level must be one of {', '.join(LOG_LEVELS)}, got '{log_level}'", err=True)
        raise typer.Exit(2)
    if dev:
        os.environ["IPEXRX_DEV_MODE"] = "1"
    try:
        settings = Settings.from_env()
    except (ValueError, OSError) as exc:
        typer.echo(f"error: the service settings are invalid: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        base_url, notice = public_base_url(host, port, settings.base_url, settings.dev_mode)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if base_url and not settings.base_url:
        os.environ["IPEXRX_BASE_URL"] = base_url  # for the workers, which read their settings again
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            typer.echo(f"error: cannot listen on {host}:{port} ({exc.strerror}); is another server running? "
                       "Choose another port with --port.", err=True)
            raise typer.Exit(1) from None
    db = Database(settings.database_url)
    db.migrate()  # once, here, so that several workers never race on the schema
    db.dispose()
    os.environ["IPEXRX_DB_MIGRATE"] = "0"

    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    typer.echo(f"ipexrx: web reference {url}/  ·  API docs {url}/docs  ·  CDS Hooks {url}/cds-services")
    typer.echo(f"ipexrx: database {db.url}")
    if notice:
        typer.echo(notice, err=True)
    if settings.dev_mode:
        typer.secho("ipexrx: DEVELOPMENT MODE: CDS Hooks JWT verification is OFF. Never use with real patients.",
                    fg="red", bold=True, err=True)
    elif not settings.issuers:
        typer.echo("ipexrx: no CDS client configured (IPEXRX_CDS_ISSUERS): CDS Hooks calls will get 401 "
                   "until one is; the web reference and JSON API work now.", err=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(f"{url}/")).start()
    # No access log above "info": it would be discarded anyway, after being formatted on every request.
    access_log = LOG_LEVELS.index(log_level) >= LOG_LEVELS.index("info")
    share = None
    if workers > 1 and settings.worker_balance:
        share = create_share_file(workers)  # the workers spread keep-alive connections evenly (service/balance.py)
        os.environ[ENV_FILE] = str(share)
    try:
        uvicorn.run("ipexrx.service.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=access_log, server_header=False, proxy_headers=False)
    finally:
        if share is not None:
            share.unlink(missing_ok=True)
            os.environ.pop(ENV_FILE, None)
