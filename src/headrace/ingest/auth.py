"""MQTT logins (protocols.md A.2): channel credentials and the EnOS signed login."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from ..model.types import Channel
from ..state.common import verify_password
from ..state.registry import Registry

SIGN_METHODS = {
    "sha256": "sha256",
    "hmacsha256": "sha256",
    "sha1": "sha1",
    "hmacsha1": "sha1",
    "md5": "md5",
    "hmacmd5": "md5",
}


@dataclass(frozen=True, slots=True)
class Login:
    channel: Channel
    products: frozenset[str]
    method: str  # "channel" or "signed"


# the username of an EnOS signed login: this prefix, then the product key
SIGNED_USERNAME_PREFIX = "%channel%&"


class LoginRefused(Exception):
    pass


def enos_signature(
    cid: str, product_key: str, timestamp: str, product_secret: str, method: str = "sha256"
) -> str:
    """The EnOS integration password: a plain hex digest (not an HMAC, despite the names)."""
    content = f"clientId{cid}deviceKey%channel%productKey{product_key}timestamp{timestamp}{product_secret}"
    return hashlib.new(SIGN_METHODS[method], content.encode()).hexdigest()


def parse_signed_client_id(client_id: str) -> tuple[str, dict[str, str]]:
    """``(cid, params)`` from ``{pk}[extra]|securemode=4,signmethod=..,timestamp=..|``."""
    cid, sep, rest = client_id.partition("|")
    if not sep:
        raise LoginRefused("client id carries no |securemode=...| block")
    params: dict[str, str] = {}
    for part in rest.rstrip("|").split(","):
        key, eq, value = part.partition("=")
        if eq:
            params[key.strip()] = value.strip()
    return cid, params


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
        cid, params = parse_signed_client_id(client_id)
        method = params.get("signmethod", "").lower()
        if method not in SIGN_METHODS:
            raise LoginRefused(f"unsupported signmethod {method!r}")
        expected = enos_signature(
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
