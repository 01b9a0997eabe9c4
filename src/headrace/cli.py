"""The ``headrace`` command: serve the hub, show settings, and manage the registry.

Registry commands talk to a running hub through its admin API (so the hub's caches stay
true); ``--url`` and ``--token`` default to the local settings and data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .client.errors import HeadraceClientError
from .client.importer import (
    ImportAborted,
    ImportOptions,
    ImportProgress,
    ImportResult,
    import_file,
    load_checkpoint,
)
from .client.readers import FORMATS, Columns, Format, SourceError, detect_format
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
user_app = typer.Typer(
    help="Operator accounts (console users) and their roles.", no_args_is_help=True
)
app.add_typer(user_app, name="user")

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
            on_ready = None
            if demo:
                from .demo import demo_summary, seed_demo

                channel, password = await seed_demo(hub.registry)
                hosts = {"http": settings["http.host"], "mqtt": settings["mqtt.host"]}

                def on_ready() -> None:
                    console.print(demo_summary(channel, password, hub.data_dir, hosts, hub.ports))

            await hub.serve(on_ready)

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


# -- history import over MQTT (the client SDK's importer) --------------------------------


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV, JSON Lines or Parquet file.", exists=True)],
    broker: Annotated[
        str, typer.Option("--broker", help="mqtt://host:1883 or mqtts://host:8883.")
    ] = "mqtt://127.0.0.1:1883",
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="Channel username.")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option("--password", "-p", help="Channel password.", envvar="HEADRACE_PASSWORD"),
    ] = None,
    product: Annotated[str, typer.Option("--product", help="productKey of the devices.")] = "",
    product_secret: Annotated[
        str | None,
        typer.Option(
            "--product-secret",
            help="Log in with the EnOS signed login of --product instead of a channel login.",
            envvar="HEADRACE_PRODUCT_SECRET",
        ),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="CA certificate to trust for mqtts://.")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="MQTT client id (channel login).")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Items per request.")] = 100,
    inflight: Annotated[
        int,
        typer.Option("--inflight", min=1, help="Requests outstanding at once (all connections)."),
    ] = 16,
    connections: Annotated[
        int,
        typer.Option(
            "--connections",
            min=1,
            max=64,
            help="MQTT connections to spread the requests over (the hub serves each "
            "connection's requests in order; several connections use it better).",
        ),
    ] = 1,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, jsonl or parquet (default: by suffix).")
    ] = None,
    layout: Annotated[
        str, typer.Option("--layout", help="wide: a column per point; long: point/value rows.")
    ] = "wide",
    device_column: Annotated[str, typer.Option("--device-column")] = "deviceKey",
    time_column: Annotated[str, typer.Option("--time-column", help="UTC ms or ISO 8601.")] = "time",
    point_column: Annotated[str, typer.Option("--point-column", help="long layout.")] = "point",
    value_column: Annotated[str, typer.Option("--value-column", help="long layout.")] = "value",
    quality_column: Annotated[
        str, typer.Option("--quality-column", help="long layout, used when present.")
    ] = "quality",
    string_point: Annotated[
        list[str] | None,
        typer.Option("--string-point", help="Keep this point's CSV text as a string (repeat)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="Checkpoint file (default FILE.checkpoint.json)."),
    ] = None,
    reject: Annotated[
        Path | None,
        typer.Option("--reject", help="Reject file, JSON Lines (default FILE.rejects.jsonl)."),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Ignore an existing checkpoint; start over.")
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
) -> None:
    """Import history from a file over MQTT; resumes from its checkpoint when run again."""
    stderr = Console(stderr=True, soft_wrap=True)
    if not product:
        stderr.print("[red]error:[/red] --product is required")
        raise typer.Exit(2)
    if (username is None) == (product_secret is None):
        stderr.print(
            "[red]error:[/red] give --username/--password (channel) or --product-secret (signed)"
        )
        raise typer.Exit(2)
    if username is not None and password is None:
        stderr.print("[red]error:[/red] --password is required with --username")
        raise typer.Exit(2)
    try:
        if fmt is not None and fmt not in FORMATS:
            raise SourceError(f"--format must be one of {', '.join(FORMATS)}")
        chosen: Format = detect_format(file) if fmt is None else fmt
        if layout not in ("wide", "long"):
            raise SourceError("--layout must be wide or long")
    except SourceError as e:
        stderr.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    opts = ImportOptions(
        file=file,
        product=product,
        fmt=chosen,
        layout=layout,  # type: ignore[arg-type]
        columns=Columns(
            device=device_column,
            time=time_column,
            point=point_column,
            value=value_column,
            quality=quality_column,
            string_points=frozenset(string_point or ()),
        ),
        batch=batch,
        inflight=inflight,
        connections=connections,
        checkpoint=checkpoint,
        reject=reject,
        restart=restart,
        progress=progress and stderr.is_terminal,
    )
    result = _run_import(
        opts,
        stderr,
        broker=broker,
        username=username,
        password=password,
        product_secret=product_secret,
        ca_file=str(ca_file) if ca_file else None,
        client_id=client_id,
    )
    if result.already_complete:
        console.print(
            f"already imported: {result.points:,} points from {result.rows:,} rows "
            f"(checkpoint {opts.checkpoint_path()}); pass --restart to import again"
        )
        return
    console.print(
        f"imported {result.points:,} points ({result.items:,} items from {result.rows:,} rows) "
        f"in {result.elapsed:.1f} s; this run {result.run_points:,} points in "
        f"{result.run_elapsed:.1f} s: {result.run_rate:,.0f} points/s"
        + (f" (resumed at row {result.resumed_from_row + 1:,})" if result.resumed_from_row else "")
    )
    if result.rejected:
        console.print(f"{result.rejected:,} rows rejected -> {opts.reject_path()}")


def _run_import(opts: ImportOptions, stderr: Console, **login: Any) -> ImportResult:
    """``import_file`` with the progress bar, SIGTERM as Ctrl-C, failures as exit codes."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[points]:>12,} points"),
        TextColumn("{task.fields[rate]:>9,.0f} points/s"),
        TextColumn("rejected {task.fields[rejected]:,}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )
    bar_task: TaskID | None = None

    def on_progress(p: ImportProgress) -> None:
        nonlocal bar_task
        if bar_task is None:
            bar.start()
            bar_task = bar.add_task("importing", total=p.total, points=0, rate=0.0, rejected=0)
        bar.update(
            bar_task,
            completed=p.done,
            points=p.points,
            rate=p.rate,
            rejected=p.rejected,
            description="importing" if p.connected else "[yellow]reconnecting",
        )

    async def main() -> ImportResult:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await import_file(opts, on_progress=on_progress, **login)
        finally:
            if bar_task is not None:
                bar.stop()

    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - non-Linux
        runner = asyncio.run
    try:
        result: ImportResult = runner(main())
        return result
    except (KeyboardInterrupt, asyncio.CancelledError):
        cp = load_checkpoint(opts.checkpoint_path())
        row = cp["position"]["row"] if cp else 0
        stderr.print(
            f"[yellow]interrupted[/yellow]: committed through row {row:,}; "
            "run the same command again to resume"
        )
        raise typer.Exit(130) from None
    except (ImportAborted, SourceError, HeadraceClientError, OSError) as e:
        stderr.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None


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


# -- operator accounts (through the admin API) -------------------------------------------

PasswordStdinOpt = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from stdin (else one is generated)."),
]


def _stdin_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        err.print("[red]error:[/red] no password on stdin")
        raise typer.Exit(2)
    return password


def _roles(admin: bool, roles: list[str] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "platform-admin", "orgId": None}] if admin else []
    for text in roles or []:
        role, sep, org = text.partition(":")
        if not sep or not org:
            err.print(f"[red]error:[/red] --role wants ROLE:ORG_ID (org-admin:o1), not {text!r}")
            raise typer.Exit(2)
        out.append({"role": role, "orgId": org})
    return out


@user_app.command("create")
def user_create(
    username: str,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user a platform-admin.")] = False,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role", help="ROLE:ORG_ID, e.g. org-admin:o1 or org-viewer:o2 (repeatable)."
        ),
    ] = None,
    password_stdin: PasswordStdinOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create an operator; prints it, with its password when one was generated."""
    body: dict[str, Any] = {"username": username, "roles": _roles(admin, role)}
    if password_stdin:
        body["password"] = _stdin_password()
    _out(Api(url, token).call("POST", "/users", body))


@user_app.command("list")
def user_list(url: UrlOpt = None, token: TokenOpt = None) -> None:
    _out(Api(url, token).call("GET", "/users?limit=1000"))


@user_app.command("passwd")
def user_passwd(
    username: str,
    password_stdin: PasswordStdinOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Set an operator's password (generated and printed unless --password-stdin); its
    sessions end."""
    body: dict[str, Any] = {"password": _stdin_password()} if password_stdin else {}
    _out(Api(url, token).call("POST", f"/users/{username}/password", body))


@user_app.command("delete")
def user_delete(username: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    Api(url, token).call("DELETE", f"/users/{username}")


def main() -> None:
    try:
        app()
    except HeadraceError as e:
        err.print(f"[red]error:[/red] {e.message}")
        sys.exit(1)
