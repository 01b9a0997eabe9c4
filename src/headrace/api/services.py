"""What the HTTP routes use: the services ``app.py`` hands them, and nothing else.

The routes never see the hub. ``app.py`` builds one ``Services`` with exactly the
components the API calls and puts it in the Litestar state; a route reads it with
``services(request)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from prometheus_client import CollectorRegistry

from ..config import Settings
from ..ingest.pipeline import Pipeline
from ..push.directory import EnterpriseDirectory
from ..push.queue import EnterpriseQueue
from ..push.subscriptions import Subscriptions
from ..rules.engine import RuleEngine
from ..scripts.manager import ScriptManager
from ..server.guard import LoginGuard
from ..state.accounts import Accounts
from ..state.files import Files
from ..state.latest_marks import LatestMarks
from ..state.logfeed import LogFeed
from ..state.online import OnlineTracker
from ..state.policies import Policies
from ..state.registry import Registry
from ..state.subscriptions import SubscriptionJobs
from ..state.users import Users
from ..store.base import Store
from ..store.blobs import BlobStore


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    admin_token: str
    store: Store  # time-series queries, message logs
    registry: Registry
    pipeline: Pipeline  # the real-time integration endpoint's requests
    accounts: Accounts
    files: Files
    blobs: BlobStore
    online: OnlineTracker
    scripts: ScriptManager
    enterprises: EnterpriseDirectory
    queues: Mapping[str, EnterpriseQueue]  # by enterprise id (their stats)
    rules: RuleEngine
    metrics: CollectorRegistry
    # the listeners' bound ports by name ("http", "mqtt", "mqtt_tls", "noti"), filled
    # as they start (the settings may say 0: pick a free port)
    ports: Mapping[str, int]
    ready: Callable[[], bool]  # every listener is up
    policies: Policies  # storage policies (the TSDB API's series, retention)
    latest_marks: LatestMarks  # latest values deleted through the TSDB API
    users: Users  # operator accounts, sessions, the audit log
    login_limits: tuple[LoginGuard, LoginGuard]  # failed logins by address, by username
    logfeed: LogFeed  # the live tail of the channel logs
    subscription_jobs: SubscriptionJobs  # data subscription jobs (docs/subscription.md)
    subscriptions: Subscriptions  # their consumer groups (offsets, members)


def services(connection: ASGIConnection[Any, Any, Any, Any]) -> Services:
    return connection.app.state.services  # type: ignore[no-any-return]
