"""Helpers the state services (and the push fan-out) share: clock, keys, names, password
hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time

from ..errors import ValidationFailed

_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
ALNUM = string.ascii_letters + string.digits


def now_ms() -> int:
    return int(time.time() * 1000)


def random_key(n: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def check_key(value: str, field: str) -> str:
    if not _KEY_RE.match(value):
        raise ValidationFailed(
            f"{field} must be 1-128 characters of letters, digits, '_', '-' or '.'", field=field
        )
    return value


def check_name(name: str) -> str:
    """A display name: 1-256 characters once trimmed."""
    name = name.strip()
    if not name or len(name) > 256:
        raise ValidationFailed("name must be 1-256 characters", field="name")
    return name


def hash_password(password: str) -> str:
    # Channel passwords are generated (24 random characters, ~143 bits), so a salted
    # SHA-256 resists guessing as well as a slow KDF would, at no cost per CONNECT.
    salt = secrets.token_bytes(16)
    return salt.hex() + "$" + hashlib.sha256(salt + password.encode()).hexdigest()


def verify_password(password: str, stored: str) -> bool:
    salt_hex, _, digest = stored.partition("$")
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    return hmac.compare_digest(hashlib.sha256(salt + password.encode()).hexdigest(), digest)
