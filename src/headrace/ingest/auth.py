"""MQTT logins (docs/protocols.md A.2): channel credentials and the EnOS signed login."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ..errors import LoginRefused
from ..model.types import Channel
from ..proto.enos import SIGN_METHODS, SIGNED_USERNAME_PREFIX, parse_signed_client_id, signature
from ..state.common import verify_password
from ..state.registry import Registry


@dataclass(frozen=True, slots=True)
class Login:
    channel: Channel
    products: frozenset[str]
    method: str  # "channel" or "signed"


def authenticate(
    registry: Registry, client_id: str, username: str, password: bytes | None
) -> Login:
    """Check a CONNECT's credentials; raise ``LoginRefused`` with the reason."""
    if password is None:
        raise LoginRefused("no password")
    try:
        secret = password.decode()
    except UnicodeDecodeError:
        raise LoginRefused("password is not UTF-8") from None
    if username.startswith(SIGNED_USERNAME_PREFIX):
        product_key = username[len(SIGNED_USERNAME_PREFIX) :]
        product = registry.products.get(product_key)
        if product is None:
            raise LoginRefused(f"unknown product {product_key!r}")
        channel = registry.channel_for_product(product_key)
        if channel is None:
            raise LoginRefused(f"product {product_key!r} has no enabled integration channel")
        parsed = parse_signed_client_id(client_id)
        if parsed is None:
            raise LoginRefused("client id carries no |securemode=...| block")
        cid, params = parsed
        method = params.get("signmethod", "").lower()
        if method not in SIGN_METHODS:
            raise LoginRefused(f"unsupported signmethod {method!r}")
        expected = signature(
            cid, product_key, params.get("timestamp", ""), product.productSecret, method
        )
        if not hmac.compare_digest(expected, secret.lower()):
            raise LoginRefused("bad signature")
        return Login(channel, frozenset([product_key]), "signed")
    channel = registry.channels_by_user.get(username)
    if channel is None or not verify_password(secret, channel.passwordHash):
        raise LoginRefused("bad username or password")
    if not channel.enabled:
        raise LoginRefused("channel is disabled")
    if channel.clientId and client_id != channel.clientId:
        raise LoginRefused("client id not allowed for this channel")
    return Login(channel, frozenset(channel.products), "channel")
