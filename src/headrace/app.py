"""Wiring: one Hub owns the settings, store, registry and every server, in one event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from . import __version__
from .api.accounts import accounts_router
from .api.admin import registry_router
from .api.channels import channel_router
from .api.common import EXCEPTION_HANDLERS
from .api.enterprises import enterprise_router
from .api.files import files_admin_router, files_router
from .api.integration import integration_router
from .api.metrics import metrics as metrics_route
from .api.online import online_router
from .api.query import query_router
from .api.scripts import script_router
from .api.token import token_router
from .config import Settings
from .ingest.pipeline import Pipeline
from .push.service import PushService
from .scripts.manager import ScriptManager
from .server.mqtt import MQTTServer
from .server.noti import NotiServer
from .server.tls import ensure_self_signed, server_context
from .state.accounts import Accounts
from .state.files import Files
from .state.online import OnlineTracker
from .state.registry import Registry
from .store.blobs import BlobStore
from .store.sqlite.store import SQLiteStore

log = logging.getLogger("headrace")


class Service(Protocol):
    """A network server the hub runs beside the HTTP API (MQTT, noti)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Hub:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir: Path = settings.data_dir
        self.store = SQLiteStore(
            self.data_dir / "headrace.db",
            synchronous=settings["store.synchronous"],
            max_batch=settings["store.max_batch"],
            readers=settings["store.readers"],
        )
        self.registry = Registry(self.store)
        self.pipeline = Pipeline(
            self.registry,
            self.store,
            max_message_size=settings["ingest.max_message_size"],
        )
        self.admin_token = ""
        self.scripts = ScriptManager(
            self.registry,
            self.store,
            time_limit_ms=settings["script.time_limit_ms"],
            memory_limit=settings["script.memory_limit"],
            workers=settings["script.workers"],
            isolation=settings["script.isolation"],
        )
        self.mqtt = MQTTServer(self)
        self.mqtt.raw_decoder = self.scripts.decode
        self.mqtt.raw_encoder = self.scripts.encode
        self.services: list[Service] = [self.mqtt]
        # real-time integration over HTTP: files, service accounts, online state
        self.blobs = BlobStore(self.data_dir / "files")
        self.files = Files(self.store, self.blobs)
        self.accounts = Accounts(
            self.store, self.registry, ttl=settings["token.ttl"], skew=settings["token.skew"]
        )
        self.online = OnlineTracker(
            self.registry, self.store, checkpoint_interval=settings["online.checkpoint_interval"]
        )
        self.services += [self.accounts, self.online]
        # enterprise push (noti): stopped before the push service, which then finishes acks
        self.push = PushService(self)
        self.noti = NotiServer(self)
        self.services += [self.push, self.noti]
        self._http: uvicorn.Server | None = None
        self._stop = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Create the data dir, open the store, load the registry (no sockets yet)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store.start()
        self.registry.load()
        self.scripts.load()
        self.files.load()
        self.accounts.load()
        self.online.load()
        self.push.load()
        self.admin_token = self._admin_token()

    def close(self) -> None:
        self.scripts.close()
        self.blobs.close()
        self.store.close()

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

    def tls_context(self) -> Any:
        cert, key = self.settings["tls.cert_file"], self.settings["tls.key_file"]
        if cert:
            return server_context(Path(cert), Path(key))
        cert_path, key_path = ensure_self_signed(self.data_dir / "tls")
        return server_context(cert_path, key_path)

    def http_app(self) -> Litestar:
        return Litestar(
            route_handlers=[
                registry_router,
                channel_router,
                query_router,
                script_router,
                accounts_router,
                files_admin_router,
                online_router,
                token_router,
                integration_router,
                files_router,
                enterprise_router,
                metrics_route,
                health,
            ],
            exception_handlers=EXCEPTION_HANDLERS,
            state=State({"hub": self}),
            request_max_body_size=self.settings["http.max_body"],
            openapi_config=OpenAPIConfig(
                title="headrace",
                version=__version__,
                path="/api/docs",
                render_plugins=[SwaggerRenderPlugin()],
            ),
            logging_config=None,
        )

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        """Run every server until SIGINT/SIGTERM (or ``request_stop``), then stop cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):
                pass
        config = uvicorn.Config(
            self.http_app(),
            host=self.settings["http.host"],
            port=self.settings["http.port"],
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            http="httptools",
            timeout_graceful_shutdown=10,
        )
        config.load()
        self._http = uvicorn.Server(config)
        self._http.lifespan = config.lifespan_class(config)
        try:
            await self._http.startup()
        except SystemExit:  # uvicorn exits when it cannot bind
            raise OSError(
                f"cannot listen on {self.settings['http.host']}:{self.settings['http.port']}"
            ) from None
        started: list[Service] = []
        try:
            for svc in self.services:
                await svc.start()
                started.append(svc)
            log.info(
                "headrace is serving",
                extra={
                    "http": f"http://{self.settings['http.host']}:{self.settings['http.port']}",
                    "data_dir": str(self.data_dir),
                },
            )
            # what start-up built lives as long as the process: keep the cyclic GC from
            # walking it on every full collection (pauses of tens of ms under load)
            gc.collect()
            gc.freeze()
            if ready is not None:
                ready.set()
            pruner = asyncio.create_task(self._prune_log())
            await self._stop.wait()
            pruner.cancel()
        finally:
            log.info("stopping")
            for svc in reversed(started):
                await svc.stop()
            self._http.should_exit = True
            await self._http.shutdown()

    async def _prune_log(self) -> None:
        """Drop message-log records older than the retention, every 10 minutes."""
        while True:
            cutoff = int((time.time() - self.settings["log.retention_days"] * 86400) * 1000)
            try:
                removed = await self.store.prune_log(cutoff)
                if removed:
                    log.info("pruned the message log", extra={"records": removed})
            except Exception:
                log.exception("message log pruning failed")
            await asyncio.sleep(600)

    def request_stop(self) -> None:
        self._stop.set()


@get("/healthz", include_in_schema=False)
async def health() -> dict[str, str]:
    return {"status": "ok"}
