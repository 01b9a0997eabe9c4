"""Wiring: one Hub owns the settings, store, registry and every server, in one event loop."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import secrets
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from . import __version__
from .api.accounts import accounts_router
from .api.admin import registry_router
from .api.auth import audit_middleware
from .api.channels import channel_router
from .api.common import EXCEPTION_HANDLERS, document_errors
from .api.console import console_router
from .api.enterprises import enterprise_router
from .api.files import files_admin_router, files_router
from .api.integration import integration_first, integration_router
from .api.logtail import logtail_router
from .api.metrics import HubCollector, StreamCollector, metrics_registry
from .api.metrics import metrics as metrics_route
from .api.online import online_router
from .api.policies import policies_router
from .api.query import query_router
from .api.rules import rule_router
from .api.scripts import script_router
from .api.services import Services, services
from .api.subscriptions import subscriptions_router
from .api.token import token_router
from .api.tsdb import tsdb_policy_router, tsdb_router
from .api.users import users_router
from .config import Settings
from .ingest.pipeline import Pipeline
from .ingest.ratelimit import RateLimiter
from .push.directory import EnterpriseDirectory
from .push.fanout import Fanout
from .push.subscriptions import Subscriptions
from .rules.engine import RuleEngine
from .scripts.manager import ScriptManager
from .server.guard import LoginGuard, raise_fd_limit
from .server.http import HTTPEdge
from .server.mqtt import MQTTServer
from .server.noti import NotiServer
from .server.subscription import SubscriptionServer
from .server.tls import ensure_self_signed, server_context
from .state.accounts import Accounts
from .state.files import Files
from .state.latest_marks import LatestMarks
from .state.logfeed import LogFeed
from .state.online import OnlineTracker
from .state.policies import Policies
from .state.registry import DeviceEntry, Registry
from .state.subscriptions import SubscriptionJobs
from .state.users import Users
from .store.blobs import BlobStore
from .store.retention import Retention as SamplePruner
from .store.sqlite.store import SQLiteStore
from .stream import Retention, Stream
from .tasks import cancel, every, tune_gc

log = logging.getLogger("headrace")


class Service(Protocol):
    """A component with background work: started after the HTTP API, stopped in reverse."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Hub:
    """Every component of the hub and every connection between them, in one place.

    Components take what they use in their constructor; hooks and listeners are connected
    below and nowhere else, so this constructor is the whole wiring diagram.
    """

    def __init__(self, settings: Settings):
        s = settings
        self.settings = s
        self.data_dir: Path = s.data_dir
        # -- state: the store and the caches written through to it ----------------------
        self.store = SQLiteStore(
            self.data_dir / "headrace.db",
            synchronous=s["store.synchronous"],
            max_batch=s["store.max_batch"],
            readers=s["store.readers"],
        )
        self.blobs = BlobStore(self.data_dir / "files")
        self.registry = Registry(self.store)
        self.accounts = Accounts(
            self.store, self.registry, ttl=s["token.ttl"], skew=s["token.skew"]
        )
        self.files = Files(self.store, self.blobs)
        # storage policies: the TSDB API's series and the retention the store prunes by
        self.policies = Policies(self.store, self.registry)
        self.latest_marks = LatestMarks(self.store)
        self.users = Users(
            self.store,
            self.registry,
            idle_timeout=s["session.idle_timeout"],
            max_age=s["session.max_age"],
        )
        self.logfeed = LogFeed(capacity=s["log.tail_buffer"])
        self.online = OnlineTracker(
            self.registry, self.store, checkpoint_interval=s["online.checkpoint_interval"]
        )
        self.scripts = ScriptManager(
            self.registry,
            self.store,
            time_limit_ms=s["script.time_limit_ms"],
            memory_limit=s["script.memory_limit"],
            workers=s["script.workers"],
            isolation=s["script.isolation"],
        )
        # the outbound stream: what was committed, in commit order, for every way out
        self.stream = Stream(
            self.store,
            self.registry,
            replay_seconds=s["stream.replay_seconds"],
            memory_bytes=s["stream.memory_bytes"],
        )
        # -- the one way in: every edge hands its requests to the pipeline --------------
        self.pipeline = Pipeline(
            self.registry,
            self.store,
            codec=self.scripts,  # raw data through the products' parsing scripts
            limiter=RateLimiter(s["ingest.rate_limit"]),
            max_message_size=s["ingest.max_message_size"],
        )
        # -- ways out ---------------------------------------------------------------------
        self.enterprises = EnterpriseDirectory(store=self.store, registry=self.registry)
        self.fanout = Fanout(
            s,
            directory=self.enterprises,
            store=self.store,
            registry=self.registry,
            online=self.online,
            stream=self.stream,  # the fan-out is the stream's consumer "noti"
        )
        # rules: each a consumer of the stream with a sink (Kafka, webhook); transforms run
        # in the parsing scripts' sandbox
        self.rules = RuleEngine(
            store=self.store,
            registry=self.registry,
            stream=self.stream,
            scripts=self.scripts.engine,
            script_settings={
                "time_limit_ms": s["script.time_limit_ms"],
                "memory_limit": s["script.memory_limit"],
                "workers": s["script.workers"],
                "isolation": "none" if s["script.isolation"] == "none" else "process",
            },
            retention=Retention(
                seconds=s["rules.retention_seconds"], bytes=s["rules.retention_bytes"]
            ),
            batch=s["rules.batch_size"],
            max_dead_letters=s["rules.max_dead_letters"],
        )
        # data subscription jobs: consumers of the stream that EnOS applications pull
        self.subscription_jobs = SubscriptionJobs(
            self.store,
            self.registry,
            accounts=self.accounts,
            head=lambda: self.stream.head,
            default_partitions=s["subscription.partitions"],
            default_retention_days=s["subscription.retention_days"],
        )
        self.subscriptions = Subscriptions(
            s, jobs=self.subscription_jobs, accounts=self.accounts, stream=self.stream
        )
        # -- edges (the HTTP API is built in http_app) -----------------------------------
        self.mqtt = MQTTServer(
            s,
            registry=self.registry,
            pipeline=self.pipeline,
            store=self.store,
            tls_context=self.tls_context,
        )
        self.noti = NotiServer(
            s, directory=self.enterprises, queues=self.fanout.queues, tls_context=self.tls_context
        )
        # samples older than their product's retention are dropped in the background
        self._retention_entries: dict[int, DeviceEntry] = {}
        self.retention = SamplePruner(
            self.store,
            self._retention_devices,
            self._retention_of,
            interval=s["store.retention_interval"],
        )
        self.subscription = SubscriptionServer(
            s, subscriptions=self.subscriptions, tls_context=self.tls_context
        )
        # -- connections --------------------------------------------------------------------
        # a request's stream records go into its write (same transaction as the data),
        # as do those of online changes and of files stored or deleted
        self.pipeline.before_write.append(self.stream.on_batch)
        self.online.outbound.append(self.stream.online_rows)
        self.files.outbound.append(self.stream.file_rows)
        self.fanout.outbound.append(self.stream.fault_rows)  # with the fault states
        # the fan-out takes committed records from the stream (Stream.tails); before a
        # write it notes macs and the ip for device_online; after it, requests wait only
        # while its queue writes are far behind
        self.pipeline.before_write.append(self.fanout.before_write)
        self.pipeline.on_stored.append(self.fanout.on_stored)
        # real-time data marks its devices online (after the fan-out, which announces
        # device_online ahead of the data of a device that was offline)
        self.pipeline.on_stored.append(self.online.on_stored)
        # organizations and products an enterprise refers to cannot be deleted
        self.registry.referrers.append(self.enterprises.referring)
        self.registry.referrers.append(self.rules.referring)
        # a disabled channel's MQTT connections are closed, a changed one's logins refreshed
        self.registry.channel_listeners.append(self.mqtt.channel_changed)
        # an enterprise's queue opens, follows its limits and closes with it (before the
        # noti connections on a deleted one's queue are closed)
        self.enterprises.listeners.append(self.fanout.enterprise_changed)
        # noti connections an enterprise change no longer allows are closed
        self.enterprises.listeners.append(self.noti.enterprise_changed)
        # every committed message-log record goes to the live tails following its channel
        self.store.log_listeners.append(self.logfeed.publish)
        # a subscription job's stream cursors follow it; its connections close on a
        # change (the SDK reconnects under the new terms)
        self.subscription_jobs.listeners.append(self.subscriptions.job_changed)
        self.subscription_jobs.listeners.append(self.subscription.job_changed)
        # started in this order after the HTTP API, stopped in reverse: the noti server
        # stops before the push fan-out, which then finishes acks; the fan-out stops before
        # MQTT, whose last requests still have their events written (its writer runs on)
        self.services: list[Service] = [
            self.stream,
            self.rules,
            self.logfeed,  # stopped last: ends the live tails' streams
            self.mqtt,
            self.accounts,
            self.users,
            self.online,
            self.fanout,
            self.noti,
            self.retention,
            self.subscriptions,  # stops after its listener: saves the groups' offsets
            self.subscription,
        ]
        self.admin_token = ""
        self.ports: dict[str, int] = {}  # what each listener bound
        self._ready = False
        self._http: uvicorn.Server | None = None
        self._stop = asyncio.Event()
        self._tls: ssl.SSLContext | None = None

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Create the data dir, open the store, load the registry (no sockets yet)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store.start()
        self.stream.load()
        self.registry.load()
        self.scripts.load()
        self.files.load()
        self.accounts.load()
        self.policies.load()
        self.latest_marks.load()
        self.users.load()
        self.online.load()
        self.enterprises.load()
        self.fanout.load()  # the queues of the enterprises loaded
        self.rules.load()  # the rules' stream consumers, before anything is stored
        self.subscription_jobs.load()
        self.subscriptions.load()  # the jobs' and groups' stream cursors opened
        self.admin_token = self._admin_token()

    async def first_admin(self) -> None:
        """With no user at all, create ``admin`` with a random password, written to
        <data_dir>/admin-password (like the admin token) and logged once."""
        path = self.data_dir / "admin-password"
        password = await self.users.ensure_admin(path)
        if password is not None:
            log.warning(
                "created the first operator: user admin (platform-admin); its password is in the file (and here, once)",
                extra={"path": str(path), "username": "admin", "password": password},
            )

    def close(self) -> None:
        self.scripts.close()
        self.blobs.close()
        self.store.close()

    def _retention_devices(self) -> list[int]:
        """Every device id (for a retention pass), noting each one's entry."""
        self._retention_entries = {e.id: e for e in self.registry.devices.values()}
        return list(self._retention_entries)

    def _retention_of(self, device: int) -> list[tuple[list[str] | None, int]]:
        """How long a device's samples are kept, per group of points: the storage
        policies that list its points (state/policies.py), and for the others its
        product's retentionDays, else the store.retention_days setting (0: forever)."""
        entry = self._retention_entries.get(device)
        if entry is None:
            return []
        product = self.registry.products.get(entry.device.productKey)
        days = (product.retentionDays if product is not None else 0) or self.settings[
            "store.retention_days"
        ]
        return self.policies.retention_of(entry, int(days * 86_400_000) if days > 0 else None)

    def _admin_token(self) -> str:
        configured = self.settings["admin.token"]
        if configured:
            return str(configured)
        path = self.data_dir / "admin-token"
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(32)
        with open(path, "w", opener=lambda p, f: os.open(p, f, 0o600)) as f:
            f.write(token + "\n")
        log.warning("generated the admin token", extra={"path": str(path)})
        return token

    def tls_context(self) -> ssl.SSLContext:
        """The TLS listeners' context (made once): the configured pair, or a self-signed
        pair created in the data dir on first use."""
        if self._tls is None:
            cert, key = self.tls_files()
            self._tls = server_context(cert, key)
        return self._tls

    def tls_files(self) -> tuple[Path, Path]:
        """The TLS certificate and key files: configured, or the self-signed pair."""
        cert, key = self.settings["tls.cert_file"], self.settings["tls.key_file"]
        if not cert:
            cert, key = ensure_self_signed(self.data_dir / "tls")
        return Path(cert), Path(key)

    def http_app(self) -> Litestar:
        s = self.settings
        api = Services(
            settings=self.settings,
            admin_token=self.admin_token,
            store=self.store,
            registry=self.registry,
            pipeline=self.pipeline,
            accounts=self.accounts,
            files=self.files,
            blobs=self.blobs,
            online=self.online,
            scripts=self.scripts,
            enterprises=self.enterprises,
            queues=self.fanout.queues,
            rules=self.rules,
            metrics=metrics_registry(
                HubCollector(self.fanout, self.noti, self.pipeline),
                StreamCollector(self.stream, self.rules),
            ),
            ports=self.ports,
            ready=lambda: self._ready,
            policies=self.policies,
            latest_marks=self.latest_marks,
            users=self.users,
            login_limits=(
                LoginGuard("HTTP", log, s["session.login_failures"], s["session.login_window"]),
                LoginGuard(
                    "HTTP user", log, s["session.login_user_failures"], s["session.login_window"]
                ),
            ),
            logfeed=self.logfeed,
            subscription_jobs=self.subscription_jobs,
            subscriptions=self.subscriptions,
        )
        app = Litestar(
            route_handlers=[
                users_router,
                registry_router,
                channel_router,
                logtail_router,
                query_router,
                script_router,
                accounts_router,
                files_admin_router,
                online_router,
                token_router,
                integration_router,
                files_router,
                tsdb_router,
                tsdb_policy_router,
                policies_router,
                enterprise_router,
                rule_router,
                subscriptions_router,
                metrics_route,
                console_router,  # the web console's static files (docs/console.md)
                health,
            ],
            exception_handlers=EXCEPTION_HANDLERS,
            middleware=[audit_middleware],  # every change through the admin API
            state=State({"services": api}),
            request_max_body_size=self.settings["http.max_body"],
            openapi_config=OpenAPIConfig(
                title="headrace",
                version=__version__,
                path="/api/docs",
                render_plugins=[SwaggerRenderPlugin()],
            ),
            logging_config=None,
        )
        document_errors(app)  # the admin API's error shape in its OpenAPI document
        return app

    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run every server until SIGINT/SIGTERM (or ``request_stop``), then stop cleanly.

        Every listener binds its configured port (0: one the system picks); once all are
        up, the ports bound are logged and written to ``<data_dir>/ports.json``, and only
        then does ``/healthz`` answer 200.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):
                pass
        raise_fd_limit()  # every connection is a descriptor: the soft limit up to the hard one
        ports_file = self.data_dir / "ports.json"
        ports_file.unlink(missing_ok=True)  # a stale one would point to another process
        await self.first_admin()
        host = self.settings["http.host"]
        https: dict[str, Any] = {}
        if self.settings["http.tls_enabled"]:
            cert, key = self.tls_files()
            https = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        config = uvicorn.Config(
            integration_first(self.http_app()),
            host=host,
            port=self.settings["http.port"],
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            # httptools with header/body timeouts and connection caps (server/http.py)
            http=HTTPEdge.from_settings(self.settings).protocol(),
            ws="none",  # no WebSocket routes (an upgraded connection would leave our caps)
            timeout_graceful_shutdown=10,
            **https,
        )
        config.load()
        self._http = uvicorn.Server(config)
        self._http.lifespan = config.lifespan_class(config)
        try:
            await self._http.startup()
        except SystemExit:  # uvicorn exits when it cannot bind
            raise OSError(f"cannot listen on {host}:{self.settings['http.port']}") from None
        self.ports["http"] = int(self._http.servers[0].sockets[0].getsockname()[1])
        started: list[Service] = []
        try:
            for svc in self.services:
                await svc.start()
                started.append(svc)
            self.ports.update(self.mqtt.ports)
            self.ports.update(self.noti.ports)
            self.ports.update(self.subscription.ports)
            _write_atomically(ports_file, json.dumps(self.ports).encode())
            log.info(
                "headrace is serving",
                extra={"host": host, **self.ports, "data_dir": str(self.data_dir)},
            )
            # what start-up built lives as long as the process: keep the cyclic GC from
            # walking it on every full collection (pauses of tens of ms under load)
            gc.collect()
            gc.freeze()
            tune_gc()  # the same in the rules' delivery process
            self._ready = True
            if on_ready is not None:
                on_ready()
            pruner = every(600, self._prune_log, "message log pruning", log, now=True)
            await self._stop.wait()
            await cancel(pruner)
        finally:
            log.info("stopping")
            self._ready = False
            ports_file.unlink(missing_ok=True)
            for svc in reversed(started):
                await svc.stop()
            self._http.should_exit = True
            await self._http.shutdown()

    async def _prune_log(self) -> None:
        """Drop message-log records older than the retention (every 10 minutes)."""
        cutoff = int((time.time() - self.settings["log.retention_days"] * 86400) * 1000)
        removed = await self.store.prune_log(cutoff)
        if removed:
            log.info("pruned the message log", extra={"records": removed})

    def request_stop(self) -> None:
        self._stop.set()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def health(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """200 once every listener is up (and the ports are in ports.json), 503 before that
    and while stopping."""
    api = services(request)
    if api.ready():
        return Response({"status": "ok", "ports": dict(api.ports)}, status_code=200)
    return Response({"status": "starting"}, status_code=503)
