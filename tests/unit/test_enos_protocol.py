"""The client SDK and the hub speak the same EnOS protocol (headrace.proto.enos).

Pins the two sides together without a network: reply codes and the client's error
classes, the client's signed login against the hub's check, and the client's request
topics against the hub's topic parser.
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import pytest

from headrace.client import IntegrationClient
from headrace.client.connection import signed_login
from headrace.client.errors import REPLY_ERRORS, IntegrationReplyError, reply_error
from headrace.errors import LoginRefused
from headrace.ingest.auth import authenticate
from headrace.ingest.pipeline import Result
from headrace.proto import enos
from headrace.state.registry import ChannelCreate, Registry
from tests.unit import test_http_services
from tests.unit.test_http_services import World


def server_reply_codes() -> dict[str, int]:
    """Every ``REPLY_*`` code of the protocol but success, by name (read at call time)."""
    return {
        name: value
        for name, value in vars(enos).items()
        if name.startswith("REPLY_") and isinstance(value, int) and value != enos.REPLY_OK
    }


# -- reply codes -------------------------------------------------------------------------


def test_every_server_reply_code_has_a_client_error_class() -> None:
    missing = {n: c for n, c in server_reply_codes().items() if c not in REPLY_ERRORS}
    assert not missing, f"no client error class for {missing}"


def test_no_client_error_class_for_a_code_the_server_does_not_know() -> None:
    unknown = set(REPLY_ERRORS) - set(server_reply_codes().values())
    assert not unknown, f"client error classes for codes the server never sends: {unknown}"


def test_every_reply_code_has_an_http_status() -> None:
    codes = set(server_reply_codes().values()) | {enos.REPLY_OK}
    assert set(enos.REPLY_HTTP_STATUS) == codes


@pytest.mark.parametrize("name", sorted(server_reply_codes()))
def test_the_client_raises_the_class_of_each_code(name: str) -> None:
    code = server_reply_codes()[name]
    cls = REPLY_ERRORS[code]
    assert cls.code == code
    reply = {"id": "1", "code": code, "message": name, "data": {"errors": []}}
    error = reply_error(reply)
    assert type(error) is cls
    assert error.code == code
    assert error.message == name
    assert error.reply == reply
    assert error.retryable == (code == enos.REPLY_RATE_LIMITED)


def test_an_unknown_code_raises_the_base_class() -> None:
    error = reply_error({"code": 4242, "message": "?"})
    assert type(error) is IntegrationReplyError
    assert error.code == 4242


# -- the signed login --------------------------------------------------------------------


# a registry over a temporary SQLiteStore, with an org, a model and a product
world = test_http_services.world


@pytest.fixture
async def registry(world: World) -> tuple[Registry, str, str]:
    """The product covered by an enabled channel: (registry, productKey, productSecret)."""
    reg, pk = world.registry, world.product
    await reg.create_channel(world.org, ChannelCreate(name="c", products=[pk]))
    return reg, pk, reg.products[pk].productSecret


@pytest.mark.parametrize("method", sorted(enos.SIGN_METHODS))
def test_the_clients_signed_login_is_accepted(
    registry: tuple[Registry, str, str], method: str
) -> None:
    reg, pk, secret = registry
    client_id, username, password = signed_login(pk, secret, sign_method=method)
    login = authenticate(reg, client_id, username, password.encode())
    assert login.method == "signed"
    assert login.products == frozenset([pk])
    assert login.channel is reg.channel_for_product(pk)


@pytest.mark.parametrize("method", sorted(enos.SIGN_METHODS))
def test_the_clients_signed_login_with_a_wrong_secret_is_refused(
    registry: tuple[Registry, str, str], method: str
) -> None:
    reg, pk, secret = registry
    client_id, username, password = signed_login(pk, "not-" + secret, sign_method=method)
    with pytest.raises(LoginRefused, match="bad signature"):
        authenticate(reg, client_id, username, password.encode())


def test_the_client_offers_every_sign_method_the_server_accepts() -> None:
    for method in enos.SIGN_METHODS:
        signed_login("pk", "secret", sign_method=method, timestamp="1")
    with pytest.raises(ValueError):
        signed_login("pk", "secret", sign_method="crc32", timestamp="1")


# -- request topics ----------------------------------------------------------------------


class _Recorder(IntegrationClient):
    """A client that records what it would publish instead of publishing it."""

    def __init__(self) -> None:
        super().__init__(username="u", password="p")
        self.sent: list[tuple[str, bytes]] = []

    async def _request(
        self, product_key: str, topic: str, payload: bytes, key: str, *, raw: bool = False
    ) -> Any:
        self.sent.append((topic, payload))
        return {"code": enos.REPLY_OK}


POSTED = [kind for kind, method in enos.METHOD_OF.items() if method is not None]


@pytest.mark.parametrize("kind", POSTED)
async def test_posts_go_to_the_topic_and_method_the_server_expects(kind: enos.Kind) -> None:
    client = _Recorder()
    await client.post("PK1", kind, [{"deviceKey": "d"}])
    [(topic, payload)] = client.sent
    assert enos.parse_topic(topic) == ("PK1", kind)
    assert msgspec.json.decode(payload)["method"] == enos.METHOD_OF[kind]


async def test_the_post_helpers_use_their_kinds() -> None:
    client = _Recorder()
    await client.post_measurepoints("PK1", [{"deviceKey": "d"}])
    await client.post_attributes("PK1", [{"deviceKey": "d"}])
    await client.post_events("PK1", [{"deviceKey": "d"}])
    await client.post_raw("PK1", b"\x01")
    parsed = [enos.parse_topic(topic) for topic, _ in client.sent]
    assert parsed == [
        ("PK1", "measurepoint"),
        ("PK1", "attribute"),
        ("PK1", "event"),
        ("PK1", "raw"),
    ]


@pytest.mark.parametrize("kind", get_args(enos.Kind))
async def test_send_request_goes_to_the_topic_of_its_kind(kind: enos.Kind) -> None:
    client = _Recorder()
    await client.send_request("PK1", kind, b"{}")
    [(topic, _)] = client.sent
    assert enos.parse_topic(topic) == ("PK1", kind)


async def test_the_client_refuses_kinds_it_cannot_post() -> None:
    client = _Recorder()
    for kind in ("raw", "measurepoints", ""):
        with pytest.raises(ValueError):
            await client.post("PK1", kind, [{"deviceKey": "d"}])
    with pytest.raises(ValueError):
        await client.send_request("PK1", "nonsense", b"{}")
    assert client.sent == []


# -- the pipeline's reply bytes ------------------------------------------------------------


@pytest.mark.parametrize(
    "rid",
    ["1", "", 'quote " and \\ and \u00e9 and \u2028', 7, -1.5, None, True, [1, "a"], {"k": 1}],
)
def test_a_success_reply_is_the_encoding_of_its_document(rid: Any) -> None:
    ok = Result(rid, enos.REPLY_OK, "success")
    assert ok.reply_bytes() == msgspec.json.encode(ok.reply())
    assert msgspec.json.decode(ok.reply_bytes()) == {
        "id": rid,
        "code": 200,
        "message": "success",
        "data": {},
    }
    refused = Result(rid, enos.REPLY_MODEL_INVALID, "bad", errors=[{"index": 0}])
    assert refused.reply_bytes() == msgspec.json.encode(refused.reply())
