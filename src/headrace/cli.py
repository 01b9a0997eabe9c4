"""The ``headrace`` command: serve the hub, show settings, and manage the registry.

Registry commands talk to a running hub through its admin API (so the hub's caches stay
true); ``--url`` and ``--token`` default to the local settings and data dir.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .config import Settings, env_name
from .errors import ConfigError, HeadraceError

app = typer.Typer(
    help="headrace: device-data integration hub.", no_args_is_help=True, add_completion=False
)
org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
model_app = typer.Typer(help="Thing models.", no_args_is_help=True)
product_app = typer.Typer(help="Products.", no_args_is_help=True)
device_app = typer.Typer(help="Devices.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(model_app, name="model")
app.add_typer(product_app, name="product")
app.add_typer(device_app, name="device")
script_app = typer.Typer(help="Per-product JavaScript parsing scripts.", no_args_is_help=True)
app.add_typer(script_app, name="script")
sa_app = typer.Typer(
    help="Service accounts for EnOS real-time integration over HTTP.", no_args_is_help=True
)
app.add_typer(sa_app, name="service-account")
enterprise_app = typer.Typer(
    help="Enterprises: applications receiving device events over noti push.",
    no_args_is_help=True,
)
app.add_typer(enterprise_app, name="enterprise")

console = Console(soft_wrap=True)
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (setting data_dir).")
]


def load_settings(config: Path | None, sets: list[str] | None, data_dir: Path | None) -> Settings:
    overrides = list(sets or [])
    if data_dir is not None:
        overrides.append(f"data_dir={data_dir}")
    try:
        return Settings.load(config, overrides)
    except ConfigError as e:
        err.print(f"[red]error:[/red] {e.message}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Seed a demo organization, model, product and devices.")
    ] = False,
) -> None:
    """Run the hub: HTTP API, MQTT integration endpoint, noti push service."""
    from .app import Hub
    from .logsetup import setup_logging

    settings = load_settings(config, set_, data_dir)
    setup_logging(settings["log.level"], settings["log.format"])
    hub = Hub(settings)
    hub.open()
    try:
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:  # pragma: no cover - non-Linux
            runner = asyncio.run

        async def main() -> None:
            if demo:
                from .demo import seed_demo

                summary = await seed_demo(hub)
                console.print(summary)
            await hub.serve()

        runner(main())
    except OSError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    finally:
        hub.close()


@app.command("settings")
def show_settings(
    config: ConfigOpt = None, set_: SetOpt = None, data_dir: DataDirOpt = None
) -> None:
    """List every setting with its current value, where it came from, and help."""
    settings = load_settings(config, set_, data_dir)
    table = Table("setting", "value", "source", "environment", "help", show_lines=False)
    for s, value, source in settings.items():
        shown = "********" if s.name == "admin.token" and value else repr(value)
        table.add_row(s.name, shown, source, env_name(s.name), s.help)
    console.print(table)


# -- registry commands (through the admin API) -------------------------------------------

UrlOpt = Annotated[str | None, typer.Option("--url", help="Hub base URL; default from settings.")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="Admin token; default <data_dir>/admin-token.")
]
OrgOpt = Annotated[str, typer.Option("--org", help="Organization id.")]


class Api:
    def __init__(self, url: str | None, token: str | None, config: Path | None = None):
        settings = load_settings(config, None, None)
        self.url = (url or f"http://{settings['http.host']}:{settings['http.port']}").rstrip("/")
        tok = token or settings["admin.token"]
        if not tok:
            path = settings.data_dir / "admin-token"
            if not path.exists():
                err.print(
                    f"[red]error:[/red] no admin token: pass --token or start the hub once ({path})"
                )
                raise typer.Exit(2)
            tok = path.read_text().strip()
        self.token = tok

    def call(self, method: str, path: str, body: Any = None) -> Any:
        if isinstance(body, str):  # raw text (scripts)
            data: bytes | None = body.encode()
        else:
            data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/api/v1" + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read())["error"]
                msg = detail["message"] + (
                    f" (field {detail['field']})" if detail.get("field") else ""
                )
            except (ValueError, KeyError, TypeError):
                msg = str(e)
            err.print(f"[red]error {e.code}:[/red] {msg}")
            raise typer.Exit(1) from None
        except urllib.error.URLError as e:
            err.print(f"[red]error:[/red] cannot reach the hub at {self.url}: {e.reason}")
            raise typer.Exit(1) from None
        return json.loads(raw) if raw else None


def _out(value: Any) -> None:
    console.print_json(json.dumps(value))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        err.print(f"[red]error:[/red] cannot read JSON from {path}: {e}")
        raise typer.Exit(2) from None


@org_app.command("create")
def org_create(
    name: str,
    org_id: Annotated[str | None, typer.Option("--id")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    body: dict[str, Any] = {"name": name}
    if org_id:
        body["orgId"] = org_id
    _out(Api(url, token).call("POST", "/orgs", body))


@org_app.command("list")
def org_list(url: UrlOpt = None, token: TokenOpt = None) -> None:
    _out(Api(url, token).call("GET", "/orgs"))


@org_app.command("delete")
def org_delete(org_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    Api(url, token).call("DELETE", f"/orgs/{org_id}")


@model_app.command("import")
def model_import(file: Path, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Create a thing model from a JSON file (or several: a JSON array)."""
    doc = _read_json(file)
    api = Api(url, token)
    for m in doc if isinstance(doc, list) else [doc]:
        _out(api.call("POST", f"/orgs/{org}/models", m))


@model_app.command("list")
def model_list(org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    _out(Api(url, token).call("GET", f"/orgs/{org}/models"))


@model_app.command("get")
def model_get(model_id: str, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    _out(Api(url, token).call("GET", f"/orgs/{org}/models/{model_id}"))


@model_app.command("delete")
def model_delete(model_id: str, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    Api(url, token).call("DELETE", f"/orgs/{org}/models/{model_id}")


@product_app.command("create")
def product_create(
    name: str,
    org: OrgOpt,
    model: Annotated[str, typer.Option("--model", help="Thing model id.")],
    data_format: Annotated[str, typer.Option("--format", help="json or custom.")] = "json",
    product_key: Annotated[
        str | None, typer.Option("--key", help="Keep an existing productKey.")
    ] = None,
    product_secret: Annotated[
        str | None, typer.Option("--secret", help="Keep an existing productSecret.")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    body: dict[str, Any] = {"name": name, "modelId": model, "dataFormat": data_format}
    if product_key:
        body["productKey"] = product_key
    if product_secret:
        body["productSecret"] = product_secret
    _out(Api(url, token).call("POST", f"/orgs/{org}/products", body))


@product_app.command("list")
def product_list(org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    _out(Api(url, token).call("GET", f"/orgs/{org}/products"))


@product_app.command("delete")
def product_delete(
    product_key: str, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    Api(url, token).call("DELETE", f"/orgs/{org}/products/{product_key}")


@device_app.command("create")
def device_create(
    org: OrgOpt,
    product: Annotated[str, typer.Option("--product", help="productKey.")],
    device_keys: Annotated[list[str] | None, typer.Argument(help="deviceKeys to create.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="JSON array of devices to create at once.")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create devices by key, or in bulk from a JSON file (all or nothing)."""
    bodies: list[Any] = [{"deviceKey": k} for k in device_keys or []]
    if file is not None:
        doc = _read_json(file)
        bodies += doc if isinstance(doc, list) else [doc]
    if not bodies:
        err.print("[red]error:[/red] give deviceKeys or --file")
        raise typer.Exit(2)
    _out(Api(url, token).call("POST", f"/orgs/{org}/products/{product}/devices", bodies))


@device_app.command("list")
def device_list(
    org: OrgOpt,
    product: Annotated[str, typer.Option("--product")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    _out(Api(url, token).call("GET", f"/orgs/{org}/products/{product}/devices"))


@device_app.command("delete")
def device_delete(
    device_key: str,
    org: OrgOpt,
    product: Annotated[str, typer.Option("--product")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    Api(url, token).call("DELETE", f"/orgs/{org}/products/{product}/devices/{device_key}")


@sa_app.command("create")
def sa_create(
    name: str,
    org: OrgOpt,
    rate_limit: Annotated[
        float, typer.Option("--rate-limit", help="Requests/s (0: ingest.rate_limit).")
    ] = 0.0,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a service account; prints its appKey and appSecret (shown this once)."""
    body = {"name": name, "rateLimit": rate_limit}
    _out(Api(url, token).call("POST", f"/orgs/{org}/service-accounts", body))


@sa_app.command("list")
def sa_list(org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    _out(Api(url, token).call("GET", f"/orgs/{org}/service-accounts"))


@sa_app.command("disable")
def sa_disable(app_key: str, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Disable a service account (its access token stops working at once)."""
    _out(Api(url, token).call("POST", f"/orgs/{org}/service-accounts/{app_key}/disable"))


@sa_app.command("enable")
def sa_enable(app_key: str, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    _out(Api(url, token).call("POST", f"/orgs/{org}/service-accounts/{app_key}/enable"))


@sa_app.command("rotate-secret")
def sa_rotate(app_key: str, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """A new appSecret (shown this once); the old secret and token stop working."""
    _out(Api(url, token).call("POST", f"/orgs/{org}/service-accounts/{app_key}/rotate-secret"))


@sa_app.command("delete")
def sa_delete(app_key: str, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    Api(url, token).call("DELETE", f"/orgs/{org}/service-accounts/{app_key}")


ProductOpt = Annotated[str, typer.Option("--product", help="productKey.")]


@script_app.command("put")
def script_put(
    file: Path, org: OrgOpt, product: ProductOpt, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Upload a script file; it is compiled first and becomes the current version."""
    try:
        source = file.read_text()
    except OSError as e:
        err.print(f"[red]error:[/red] cannot read {file}: {e.strerror}")
        raise typer.Exit(2) from None
    _out(Api(url, token).call("PUT", f"/orgs/{org}/products/{product}/script", source))


@script_app.command("get")
def script_get(
    org: OrgOpt, product: ProductOpt, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    _out(Api(url, token).call("GET", f"/orgs/{org}/products/{product}/script"))


@script_app.command("delete")
def script_delete(
    org: OrgOpt, product: ProductOpt, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    Api(url, token).call("DELETE", f"/orgs/{org}/products/{product}/script")


@script_app.command("rollback")
def script_rollback(
    version: int, org: OrgOpt, product: ProductOpt, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    _out(
        Api(url, token).call(
            "POST", f"/orgs/{org}/products/{product}/script/rollback", {"version": version}
        )
    )


@script_app.command("debug")
def script_debug(
    hex_sample: str, org: OrgOpt, product: ProductOpt, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Run the current script on sample bytes given as hex."""
    _out(
        Api(url, token).call(
            "POST", f"/orgs/{org}/products/{product}/script/debug", {"hex": hex_sample}
        )
    )


# history import over MQTT (the client SDK's importer)
from .client.importer import import_command  # noqa: E402

app.command("import")(import_command)


# -- enterprises (noti push) ---------------------------------------------------------------


@enterprise_app.command("create")
def enterprise_create(
    name: str,
    org: OrgOpt,
    product: Annotated[
        list[str], typer.Option("--product", help="productKey subscribed to (repeatable).")
    ],
    event_type: Annotated[
        list[str] | None,
        typer.Option("--event-type", help="Event type wanted (repeatable); default all."),
    ] = None,
    enterprise_id: Annotated[
        str | None, typer.Option("--id", help="Keep an existing enterprise_id.")
    ] = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="Keep an existing enterprise_secret.")
    ] = None,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option("--allow-ip", help="Address or CIDR allowed to log in (repeatable)."),
    ] = None,
    history_events: Annotated[
        bool, typer.Option("--history-events", help="History (offline data) produces events.")
    ] = False,
    retention: Annotated[
        int, typer.Option("--retention", help="Queue retention in seconds (0: setting).")
    ] = 0,
    max_queue: Annotated[
        int, typer.Option("--max-queue", help="Most queued events (0: setting).")
    ] = 0,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create an enterprise; prints its enterpriseId and enterpriseSecret (shown this once)."""
    from .push.enterprises import EVENT_TYPES

    body: dict[str, Any] = {
        "name": name,
        "products": product,
        "eventTypes": event_type or list(EVENT_TYPES),
        "ipAllowList": allow_ip or [],
        "historyEvents": history_events,
        "retentionSeconds": retention,
        "maxQueue": max_queue,
    }
    if enterprise_id:
        body["enterpriseId"] = enterprise_id
    if secret:
        body["enterpriseSecret"] = secret
    _out(Api(url, token).call("POST", f"/orgs/{org}/enterprises", body))


@enterprise_app.command("list")
def enterprise_list(org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None) -> None:
    _out(Api(url, token).call("GET", f"/orgs/{org}/enterprises"))


@enterprise_app.command("stats")
def enterprise_stats(
    enterprise_id: str, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Queue depth, unacked, connected clients and delivery counters."""
    _out(Api(url, token).call("GET", f"/orgs/{org}/enterprises/{enterprise_id}/stats"))


@enterprise_app.command("delete")
def enterprise_delete(
    enterprise_id: str, org: OrgOpt, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Delete an enterprise, its queue, and drop its connections."""
    Api(url, token).call("DELETE", f"/orgs/{org}/enterprises/{enterprise_id}")


def main() -> None:
    try:
        app()
    except HeadraceError as e:
        err.print(f"[red]error:[/red] {e.message}")
        sys.exit(1)
