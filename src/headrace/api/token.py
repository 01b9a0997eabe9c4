"""EnOS token service (docs/protocols.md B.1): ``/apim-token-service/v2.0/token/get|refresh``.

Every reply is HTTP 200 with the outcome in ``status`` (as the EnOS gateway does), except
an internal failure (1005), which is HTTP 500.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response, Router, post
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec

from ..errors import TokenRefused
from ..proto.enos import TOKEN_BAD_PARAMETER, TOKEN_EMPTY_PARAMETER, TOKEN_INTERNAL, TOKEN_OK
from .services import services

log = logging.getLogger("headrace.api.token")

Req = Request[Any, Any, Any]
BUSINESS = "apim-token-service"
MAX_BODY = 16 * 1024
_enc = msgspec.json.Encoder()


class TokenData(msgspec.Struct):
    accessToken: str
    expire: int  # seconds the token is valid for


class TokenAnswer(msgspec.Struct):
    """Every answer of the token service (B.1): the outcome is ``status`` (0 success)."""

    status: int
    msg: str
    business: str
    data: TokenData | None


_DOCUMENTED = {
    200: ResponseSpec(TokenAnswer, False, "the outcome is `status` (0: success)"),
}


def _reply(status: int, msg: str, data: Any = None, http_status: int = 200) -> Response[bytes]:
    body = {"status": status, "msg": msg, "business": BUSINESS, "data": data}
    return Response(_enc.encode(body), status_code=http_status, media_type="application/json")


async def _body(request: Req) -> Any:
    try:
        raw = await request.body()
    except HTTPException:
        raise TokenRefused(
            TOKEN_BAD_PARAMETER, f"the request body exceeds {MAX_BODY} bytes"
        ) from None
    if not raw.strip():
        raise TokenRefused(TOKEN_EMPTY_PARAMETER, "the request body is empty")
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise TokenRefused(TOKEN_BAD_PARAMETER, "the request body is not valid JSON") from None


async def _handle(request: Req, refresh: bool) -> Response[bytes]:
    accounts = services(request).accounts
    try:
        body = await _body(request)
        if refresh:
            token, expire = await accounts.refresh_token(body)
        else:
            token, expire = await accounts.get_token(body)
    except TokenRefused as e:
        return _reply(e.token_status, e.message)
    except Exception:
        log.exception("token service failed")
        return _reply(TOKEN_INTERNAL, "internal error", http_status=500)
    return _reply(TOKEN_OK, "SUCCESS", {"accessToken": token, "expire": expire})


@post("/token/get", request_max_body_size=MAX_BODY, status_code=200, responses=_DOCUMENTED)
async def token_get(request: Req) -> Response[bytes]:
    """Get an access token: ``{appKey, encryption, timestamp}``."""
    return await _handle(request, refresh=False)


@post("/token/refresh", request_max_body_size=MAX_BODY, status_code=200, responses=_DOCUMENTED)
async def token_refresh(request: Req) -> Response[bytes]:
    """Replace a valid access token: ``{appKey, encryption, timestamp, accessToken}``."""
    return await _handle(request, refresh=True)


token_router = Router(
    path="/apim-token-service/v2.0", tags=["EnOS token"], route_handlers=[token_get, token_refresh]
)
