"""Settings, defined once: name, type, default, help.

Sources, later ones winning: defaults, the TOML file (``--config``), the environment
(``HEADRACE_HTTP_PORT`` for ``http.port``), then ``--set key=value``. Unknown keys are
errors wherever they come from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        str,
        "./headrace-data",
        "Directory for the database, files, TLS keys and the admin token.",
    ),
    Setting("http.host", str, "127.0.0.1", "Address the HTTP API listens on."),
    Setting(
        "http.port",
        int,
        8080,
        "Port of the HTTP API (admin, query, EnOS real-time integration); 0 picks a free port.",
    ),
    Setting("http.max_body", int, 1 * MiB, "Largest admin API request body in bytes (413 above)."),
    Setting(
        "http.header_timeout",
        float,
        10.0,
        "Seconds an HTTP connection has to send a request's complete headers, from connecting and from the end of the previous response; then it is closed.",
    ),
    Setting(
        "http.body_timeout",
        float,
        30.0,
        "Seconds an HTTP request body may go without a byte arriving; then the connection is closed.",
    ),
    Setting(
        "http.max_connections",
        int,
        4096,
        "Concurrent HTTP connections; a new one beyond it closes the oldest that has not sent a request yet, or is closed at once (0 = no cap).",
    ),
    Setting(
        "http.max_pending",
        int,
        512,
        "HTTP connections that have not sent the headers of a first request; a new one beyond it closes the oldest of them (0 = no cap).",
    ),
    Setting(
        "http.public_url",
        str,
        "",
        "Base URL clients use to reach the HTTP API (signed download URLs); default http://{http.host}:{http.port}.",
    ),
    Setting(
        "http.max_file_size",
        int,
        100 * MiB,
        "Largest file (enos-file part) of one real-time integration upload (reply 1008 above).",
    ),
    Setting(
        "http.max_files", int, 32, "Most enos-file parts in one real-time integration request."
    ),
    Setting(
        "http.tls_enabled",
        bool,
        False,
        "Serve the HTTP API over TLS (HTTPS) with tls.cert_file, or the self-signed pair in the data dir.",
    ),
    Setting(
        "session.idle_timeout",
        float,
        3600.0,
        "Seconds an operator's login session lasts without a request.",
    ),
    Setting(
        "session.max_age",
        float,
        43200.0,
        "Seconds an operator's login session lasts at most from the login (also the cookie's Max-Age).",
    ),
    Setting(
        "session.cookie_secure",
        bool,
        False,
        "Mark the session cookie Secure even over plain HTTP (behind a TLS-terminating proxy); it is Secure anyway when the request came over TLS.",
    ),
    Setting(
        "session.login_failures",
        int,
        10,
        "Failed operator logins from one address (IPv6: its /64) within session.login_window after which its logins are answered 429 without checking the password (0 = no limit).",
    ),
    Setting(
        "session.login_user_failures",
        int,
        5,
        "Failed logins of one username within session.login_window after which its logins are answered 429 without checking the password (0 = no limit).",
    ),
    Setting(
        "session.login_window",
        float,
        300.0,
        "Seconds over which failed operator logins are counted, and for which an address or username that reached its limit is refused.",
    ),
    Setting("token.ttl", int, 7200, "Lifetime of an EnOS access token in seconds."),
    Setting(
        "token.skew",
        int,
        300,
        "Largest difference in seconds between a token request's timestamp and the hub's clock.",
    ),
    Setting("files.url_ttl", int, 3600, "Seconds a signed file download URL stays valid."),
    Setting(
        "online.checkpoint_interval",
        float,
        60.0,
        "Seconds between saves of online devices' last-seen times (used after a restart).",
    ),
    Setting("mqtt.host", str, "127.0.0.1", "Address the MQTT integration endpoint listens on."),
    Setting("mqtt.enabled", bool, True, "Serve MQTT over plain TCP (on mqtt.port)."),
    Setting("mqtt.port", int, 1883, "Plain TCP MQTT port; 0 picks a free port."),
    Setting("mqtt.tls_enabled", bool, True, "Serve MQTT over TLS (on mqtt.tls_port)."),
    Setting("mqtt.tls_port", int, 8883, "MQTT over TLS port; 0 picks a free port."),
    Setting(
        "mqtt.max_packet_size",
        int,
        2 * MiB,
        "Largest MQTT packet accepted; larger ones close the connection.",
    ),
    Setting(
        "mqtt.max_inflight",
        int,
        64,
        "Unanswered QoS 1/2 requests per connection before the server stops reading it.",
    ),
    Setting("mqtt.max_connections", int, 10000, "Concurrent MQTT connections; more are refused."),
    Setting(
        "mqtt.session_expiry",
        int,
        86400,
        "Seconds a persistent MQTT session is kept after its client disconnects.",
    ),
    Setting(
        "mqtt.connect_timeout", float, 10.0, "Seconds a new MQTT connection has to send CONNECT."
    ),
    Setting(
        "mqtt.max_pending",
        int,
        1000,
        "MQTT connections that have not logged in yet (besides mqtt.max_connections); a new one beyond it closes the oldest of them (0 = no cap).",
    ),
    Setting(
        "mqtt.tls_handshake_timeout",
        float,
        10.0,
        "Seconds a new MQTT/TLS connection has to complete its TLS handshake.",
    ),
    Setting(
        "mqtt.login_failures",
        int,
        10,
        "Failed MQTT logins from one address (IPv6: its /64) within mqtt.login_window after which its CONNECTs are refused (not authorized) without checking credentials (0 = no limit).",
    ),
    Setting(
        "mqtt.login_window",
        float,
        60.0,
        "Seconds over which mqtt.login_failures are counted, and for which an address that reached it is refused.",
    ),
    Setting(
        "mqtt.public_host", str, "", "Host name put in channel broker URLs; default mqtt.host."
    ),
    Setting("noti.host", str, "127.0.0.1", "Address the noti push service listens on."),
    Setting("noti.enabled", bool, True, "Serve the noti enterprise push service (on noti.port)."),
    Setting(
        "noti.port", int, 2015, "TLS port of the noti enterprise push service; 0 picks a free port."
    ),
    Setting(
        "noti.idle_timeout",
        float,
        360.0,
        "Seconds of client silence after which a noti connection is closed.",
    ),
    Setting("noti.max_line", int, 64 * 1024, "Longest inbound noti line in bytes."),
    Setting(
        "noti.login_timeout",
        float,
        10.0,
        "Seconds a new noti connection has to log in; then it is closed.",
    ),
    Setting(
        "noti.handshake_timeout",
        float,
        10.0,
        "Seconds a new noti connection has to complete its TLS handshake.",
    ),
    Setting(
        "noti.max_connections",
        int,
        1000,
        "Concurrent noti connections; a new one beyond it closes the oldest that has not logged in yet, or is closed at once (0 = no cap).",
    ),
    Setting(
        "noti.max_pending",
        int,
        100,
        "noti connections that have not logged in yet; a new one beyond it closes the oldest of them (0 = no cap).",
    ),
    Setting(
        "noti.login_failures",
        int,
        10,
        "Failed noti logins from one address (IPv6: its /64) within noti.login_window after which its logins are refused without checking credentials (0 = no limit).",
    ),
    Setting(
        "noti.login_window",
        float,
        60.0,
        "Seconds over which noti.login_failures are counted, and for which an address that reached it is refused.",
    ),
    Setting(
        "stream.replay_seconds",
        float,
        0.0,
        "Seconds of the outbound stream kept after every consumer is done with them, so that a rule can replay them (0: pruned as soon as every consumer is done).",
    ),
    Setting(
        "stream.memory_bytes",
        int,
        64 * MiB,
        "Bytes of the most recently committed outbound stream records also kept in memory, so that consumers that keep up (rules, subscriptions, noti) read them without a store round trip (0: every read goes to the store).",
    ),
    Setting(
        "rules.retention_seconds",
        float,
        86400.0,
        "Seconds a rule may fall behind (sink down, rule paused) before the oldest stream records it has not delivered are dropped for it (counted and logged).",
    ),
    Setting(
        "rules.retention_bytes",
        int,
        1024 * MiB,
        "Bytes of outbound stream records kept for a rule that has fallen behind; beyond it the oldest are dropped for it (counted and logged).",
    ),
    Setting(
        "rules.batch_size",
        int,
        2000,
        "Stream records a rule reads and hands to its sink at once.",
    ),
    Setting(
        "rules.max_dead_letters",
        int,
        10_000,
        "Dead letters kept per rule; the oldest are deleted beyond it.",
    ),
    Setting(
        "subscription.host", str, "127.0.0.1", "Address the data subscription service listens on."
    ),
    Setting(
        "subscription.enabled",
        bool,
        True,
        "Serve the EnOS data subscription service over plain WebSocket (on subscription.port).",
    ),
    Setting(
        "subscription.port",
        int,
        9001,
        "WebSocket port of the data subscription service (EnOS SDKs' default); 0 picks a free port.",
    ),
    Setting(
        "subscription.tls_enabled",
        bool,
        True,
        "Serve the data subscription service over WebSocket on TLS (on subscription.tls_port).",
    ),
    Setting(
        "subscription.tls_port",
        int,
        9002,
        "WebSocket-over-TLS port of the data subscription service; 0 picks a free port.",
    ),
    Setting(
        "subscription.retention_days",
        float,
        3.0,
        "Default days a subscription job keeps messages its consumer groups have not committed (per job: retentionDays).",
    ),
    Setting(
        "subscription.partitions",
        int,
        8,
        "Default partitions of a new subscription job (per job: partitions): the most connections one consumer group can share it among.",
    ),
    Setting(
        "subscription.pull_wait",
        float,
        1.0,
        "Seconds a pull with no message waiting is held before it is answered empty (a long poll).",
    ),
    Setting("subscription.pull_batch", int, 500, "Most messages in one pull reply."),
    Setting(
        "subscription.buffer",
        int,
        20000,
        "Messages each consumer group reads ahead of its connections' pulls.",
    ),
    Setting(
        "subscription.max_message",
        int,
        64 * 1024,
        "Largest WebSocket message a subscription client may send (larger ones close the connection, 1009).",
    ),
    Setting(
        "subscription.idle_timeout",
        float,
        30.0,
        "Seconds of client silence after which a subscription connection is closed (the SDKs ping every 10 s).",
    ),
    Setting(
        "subscription.login_timeout",
        float,
        10.0,
        "Seconds a new subscription connection has to complete its WebSocket handshake and auth; then it is closed.",
    ),
    Setting(
        "subscription.handshake_timeout",
        float,
        10.0,
        "Seconds a new subscription connection on TLS has to complete its TLS handshake.",
    ),
    Setting(
        "subscription.max_connections",
        int,
        1000,
        "Concurrent subscription connections; a new one beyond it closes the oldest not authenticated yet, or is closed at once (0 = no cap).",
    ),
    Setting(
        "subscription.max_pending",
        int,
        100,
        "Subscription connections not authenticated yet; a new one beyond it closes the oldest of them (0 = no cap).",
    ),
    Setting(
        "subscription.login_failures",
        int,
        10,
        "Failed subscription auths (unknown job or wrong sign) from one address (IPv6: its /64) within subscription.login_window after which its auths are refused unchecked (0 = no limit).",
    ),
    Setting(
        "subscription.login_window",
        float,
        60.0,
        "Seconds over which subscription.login_failures are counted, and for which an address that reached it is refused.",
    ),
    Setting(
        "push.retention_seconds",
        int,
        86400,
        "Default seconds an event waits in an enterprise queue before it expires (per enterprise: retentionSeconds).",
    ),
    Setting(
        "push.max_queue",
        int,
        1_000_000,
        "Default most events in an enterprise queue; the oldest expire beyond it (per enterprise: maxQueue).",
    ),
    Setting(
        "push.memory_events",
        int,
        20_000,
        "Events of each enterprise queue's head kept in memory; the rest is read from the store as needed.",
    ),
    Setting(
        "push.memory_bytes",
        int,
        16 * MiB,
        "Bytes of events of each enterprise queue's head kept in memory.",
    ),
    Setting(
        "push.write_delay_ms",
        int,
        20,
        "How long the noti fan-out waits before writing pushed events to the queues' rows, so that events acked meanwhile are never written nor deleted (0: at once).",
    ),
    Setting(
        "tls.cert_file",
        str,
        "",
        "PEM certificate (chain) for MQTT/TLS and noti; self-signed when empty.",
    ),
    Setting("tls.key_file", str, "", "PEM private key for tls.cert_file."),
    Setting(
        "admin.token",
        str,
        "",
        "Bearer token of the admin API; generated into <data_dir>/admin-token when empty.",
    ),
    Setting(
        "ingest.max_message_size",
        int,
        512 * 1024,
        "Largest integration request payload (reply 1008 above).",
    ),
    Setting(
        "ingest.rate_limit",
        float,
        0.0,
        "Requests per second allowed per channel (0 = unlimited; reply 1274 above).",
    ),
    Setting("script.time_limit_ms", int, 100, "Time limit of one parsing script call."),
    Setting("script.memory_limit", int, 32 * MiB, "Memory limit of a parsing script context."),
    Setting(
        "script.workers",
        int,
        2,
        "Worker processes that run parsing scripts (a product always uses the same one).",
    ),
    Setting(
        "script.isolation",
        str,
        "process",
        "process: scripts run in worker processes (a crashing script cannot take the hub down); none: in the hub (trusted scripts only).",
    ),
    Setting(
        "store.synchronous",
        str,
        "full",
        "SQLite synchronous mode: full (survives power loss) or normal (survives process crash).",
    ),
    Setting("store.max_batch", int, 512, "Most write operations committed in one group commit."),
    Setting("store.readers", int, 4, "Reader connections (threads) for queries."),
    Setting(
        "store.retention_days",
        float,
        0.0,
        "Days measurepoint samples are kept, for products whose retentionDays is 0; 0 keeps them forever.",
    ),
    Setting(
        "store.retention_interval",
        float,
        600.0,
        "Seconds between two background passes that drop samples older than their retention.",
    ),
    Setting("log.level", str, "info", "Log level: debug, info, warning, error."),
    Setting("log.format", str, "text", "Log format: text or json (one JSON object per line)."),
    Setting("log.retention_days", float, 7.0, "Days channel message-log records are kept."),
    Setting(
        "log.tail_buffer",
        int,
        1000,
        "Message-log records queued for one live-tail reader (SSE) that does not keep up; beyond it records are dropped and the reader gets a gap event.",
    ),
    Setting(
        "log.tail_heartbeat",
        float,
        15.0,
        "Seconds between heartbeats (SSE comments) on an idle live tail of a message log.",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
ENV_PREFIX = "HEADRACE_"
# Environment variables with our prefix that are not settings.
_ENV_RESERVED = {"HEADRACE_CONFIG"}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper().replace(".", "_")


_BY_ENV = {env_name(s.name): s for s in SETTINGS}


def _coerce(setting: Setting, raw: Any, source: str) -> Any:
    t = setting.type
    try:
        if t is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in (
                "1",
                "true",
                "yes",
                "on",
                "0",
                "false",
                "no",
                "off",
            ):
                return raw.lower() in ("1", "true", "yes", "on")
            raise ValueError(raw)
        if t is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if t is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if t is str:
            if not isinstance(raw, (str, int, float)):
                raise ValueError(raw)
            return str(raw)
    except (TypeError, ValueError):
        pass
    raise ConfigError(
        f"{source}: setting {setting.name!r} expects {t.__name__}, got {raw!r}", field=setting.name
    )


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


class Settings:
    """Resolved settings; read with ``settings["http.port"]``."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]):
        self._values = values
        self.sources = sources

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    @property
    def data_dir(self) -> Path:
        return Path(self._values["data_dir"])

    def items(self) -> list[tuple[Setting, Any, str]]:
        return [(s, self._values[s.name], self.sources[s.name]) for s in SETTINGS]

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        overrides: list[str] | dict[str, Any] | None = None,
        environ: dict[str, str] | None = None,
    ) -> Settings:
        values = {s.name: s.default for s in SETTINGS}
        sources = {s.name: "default" for s in SETTINGS}
        env = os.environ if environ is None else environ
        if config_file is None and env.get("HEADRACE_CONFIG"):
            config_file = env["HEADRACE_CONFIG"]
        if config_file is not None:
            try:
                with open(config_file, "rb") as f:
                    table = tomllib.load(f)
            except OSError as e:
                raise ConfigError(f"cannot read config file {config_file}: {e.strerror}") from e
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"config file {config_file}: {e}") from e
            for name, raw in _flatten(table).items():
                setting = BY_NAME.get(name)
                if setting is None:
                    raise ConfigError(f"{config_file}: unknown setting {name!r}", field=name)
                values[name] = _coerce(setting, raw, str(config_file))
                sources[name] = str(config_file)
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX) or key in _ENV_RESERVED:
                continue
            setting = _BY_ENV.get(key)
            if setting is None:
                raise ConfigError(f"environment: unknown setting variable {key}", field=key)
            values[setting.name] = _coerce(setting, raw, f"environment {key}")
            sources[setting.name] = "environment"
        items = (
            overrides.items() if isinstance(overrides, dict) else _split_overrides(overrides or [])
        )
        for name, raw in items:
            setting = BY_NAME.get(name)
            if setting is None:
                raise ConfigError(f"--set: unknown setting {name!r}", field=name)
            values[name] = _coerce(setting, raw, "--set")
            sources[name] = "--set"
        _check(values)
        return cls(values, sources)


def _split_overrides(pairs: list[str]) -> list[tuple[str, str]]:
    out = []
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out.append((name.strip(), raw))
    return out


def _check(values: dict[str, Any]) -> None:
    for name in (
        "http.port",
        "mqtt.port",
        "mqtt.tls_port",
        "noti.port",
        "subscription.port",
        "subscription.tls_port",
    ):
        if not 0 <= values[name] <= 65535:
            raise ConfigError(f"setting {name!r} must be a port number 0..65535", field=name)
    for name in (
        "push.retention_seconds",
        "push.max_queue",
        "push.memory_events",
        "push.memory_bytes",
    ):
        if values[name] < 1:
            raise ConfigError(f"setting {name!r} must be positive", field=name)
    if values["push.write_delay_ms"] < 0:
        raise ConfigError(
            "setting 'push.write_delay_ms' must not be negative", field="push.write_delay_ms"
        )
    for name in ("subscription.partitions", "subscription.pull_batch", "subscription.buffer"):
        if values[name] < 1:
            raise ConfigError(f"setting {name!r} must be positive", field=name)
    if not 1 <= values["subscription.partitions"] <= 64:
        raise ConfigError(
            "setting 'subscription.partitions' must be 1..64", field="subscription.partitions"
        )
    for name in ("subscription.retention_days", "subscription.idle_timeout"):
        if values[name] <= 0:
            raise ConfigError(f"setting {name!r} must be positive", field=name)
    if values["noti.idle_timeout"] <= 0:
        raise ConfigError("setting 'noti.idle_timeout' must be positive", field="noti.idle_timeout")
    if values["store.retention_days"] < 0:
        raise ConfigError(
            "setting 'store.retention_days' must be 0 (forever) or positive",
            field="store.retention_days",
        )
    if values["store.retention_interval"] <= 0:
        raise ConfigError(
            "setting 'store.retention_interval' must be positive",
            field="store.retention_interval",
        )
    choices = {
        "store.synchronous": ("full", "normal"),
        "script.isolation": ("process", "none"),
        "log.level": ("debug", "info", "warning", "error"),
        "log.format": ("text", "json"),
    }
    for name, allowed in choices.items():
        if values[name] not in allowed:
            raise ConfigError(f"setting {name!r} must be one of {', '.join(allowed)}", field=name)
    if bool(values["tls.cert_file"]) != bool(values["tls.key_file"]):
        raise ConfigError(
            "tls.cert_file and tls.key_file must be given together", field="tls.cert_file"
        )
