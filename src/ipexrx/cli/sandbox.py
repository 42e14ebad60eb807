"""``ipexrx sandbox``: a small offline EHR and an ipexrx service that trusts it, both on loopback.

The sandbox (src/ipexrx/service/sandbox) serves a FHIR R4 server with synthetic patients, a SMART
authorization server and a chart that calls the CDS service. This command makes a fresh signing key,
starts ``ipexrx serve`` in a child process with that key's issuer in ``IPEXRX_CDS_ISSUERS``, the
sandbox's FHIR base in ``IPEXRX_SMART_ISSUERS`` and the sandbox's client id in
``IPEXRX_SMART_CLIENT_ID``, waits until it answers, then serves the sandbox. Ctrl-C stops both.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import typer

from . import app

READY_SECONDS = 60


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def service_env(base: str, app_url: str, key: object, database_url: str) -> dict[str, str]:
    """The environment of the ``ipexrx serve`` child: trusts the sandbox and nothing else."""
    import json

    from ..service.sandbox import CLIENT_ID, KID
    from ..service.sandbox.client import issuer_config

    env = {k: v for k, v in os.environ.items() if not k.startswith("IPEXRX_")}
    env.update({
        "IPEXRX_CDS_ISSUERS": json.dumps(issuer_config(base, key, KID, f"{base}/fhir")),  # type: ignore[arg-type]
        "IPEXRX_BASE_URL": app_url,
        "IPEXRX_SMART_ISSUERS": json.dumps([f"{base}/fhir"]),
        "IPEXRX_SMART_CLIENT_ID": CLIENT_ID,
        "IPEXRX_DATABASE_URL": database_url,
    })
    return env


@app.command("sandbox")
def sandbox(
    port: int = typer.Option(8700, min=1, max=65535, help="Port of the sandbox EHR (FHIR, sign-in, chart)."),
    app_port: int = typer.Option(8701, "--app-port", min=1, max=65535,
                                 help="Port of the ipexrx service (CDS Hooks and the SMART app)."),
    database: str | None = typer.Option(None, "--database", help="Database URL of the service (CDS feedback); "
                                        "default: sandbox.sqlite3 in the user data directory."),
    log_level: str = typer.Option("warning", help="uvicorn log level of both servers."),
) -> None:
    """Start a demonstration EHR (synthetic patients) and an ipexrx service that trusts it, on 127.0.0.1."""
    import httpx
    import uvicorn

    from ..service.sandbox import create_sandbox_app
    from ..service.sandbox.client import new_key
    from ..storage import user_data_dir
    from .serve import LOG_LEVELS

    if log_level not in LOG_LEVELS:
        typer.echo(f"error: --log-level must be one of {', '.join(LOG_LEVELS)}, got '{log_level}'", err=True)
        raise typer.Exit(2)
    if port == app_port:
        typer.echo(f"error: --port and --app-port must differ (both are {port})", err=True)
        raise typer.Exit(2)
    for p, what in ((port, "--port"), (app_port, "--app-port")):
        if not _port_free(p):
            typer.echo(f"error: cannot listen on 127.0.0.1:{p} ({what}); is another server running? Choose another "
                       f"port with {what}.", err=True)
            raise typer.Exit(1)
    database_url = database or f"sqlite:///{user_data_dir() / 'sandbox.sqlite3'}"
    base, app_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{app_port}"
    key = new_key()
    child = subprocess.Popen([sys.executable, "-m", "ipexrx", "serve", "--host", "127.0.0.1", "--port",
                              str(app_port), "--log-level", log_level], env=service_env(base, app_url, key,
                                                                                           database_url))
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if child.poll() is not None:
                typer.echo(f"error: the ipexrx service exited ({child.returncode}) before it was ready", err=True)
                raise typer.Exit(1)
            try:
                if httpx.get(f"{app_url}/cds-services", timeout=1).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                typer.echo(f"error: the ipexrx service did not answer within {READY_SECONDS} s", err=True)
                raise typer.Exit(1)
            time.sleep(0.2)
        typer.echo(f"ipexrx sandbox: EHR chart      {base}/")
        typer.echo(f"ipexrx sandbox: FHIR server    {base}/fhir (SMART sign-in: {base}/fhir/.well-known/"
                   "smart-configuration)")
        typer.echo(f"ipexrx sandbox: ipexrx service {app_url}/ (CDS Hooks {app_url}/cds-services, SMART app "
                   f"{app_url}/smart/launch)")
        typer.echo(f"ipexrx sandbox: feedback in {database_url} (ipexrx cds feedback --report --database "
                   f"{database_url})")
        typer.echo("ipexrx sandbox: synthetic patients only. Ctrl-C stops both servers.")
        web = create_sandbox_app(base, app_url, key)
        uvicorn.run(web, host="127.0.0.1", port=port, log_level=log_level, server_header=False)
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
