"""What every HTTP route shares: the error shape, admin auth (``auth.admin_guard``), paging."""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute

from ..errors import HeadraceError, ValidationFailed, status_names
from .auth import admin_guard as admin_guard  # every admin route's guard
from .services import Services

log = logging.getLogger("headrace.api")

# the error shape's ``code`` for statuses the framework raises itself (405, 415, ...)
_STATUS_CODES = status_names()


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response[Any]:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if field is not None:
        body["field"] = field
    return Response({"error": body}, status_code=status)


def on_headrace_error(request: Request[Any, Any, Any], exc: HeadraceError) -> Response[Any]:
    if exc.status >= 500:
        log.exception("internal error on %s %s", request.method, request.url.path)
    response = error_response(exc.status, exc.code, exc.message, exc.field)
    line = getattr(exc, "line", None)  # script syntax errors say where
    if isinstance(line, int):
        response.content["error"].update(line=line, column=getattr(exc, "column", None))
    return response


def on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        return _validation_response(exc)
    status = exc.status_code
    return error_response(status, _STATUS_CODES.get(status, "error"), str(exc.detail))


def _validation_response(exc: ValidationException) -> Response[Any]:
    """msgspec decode errors: bad JSON is 400; a wrong field is 422 naming the field path."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    message = (
        str(extra[0].get("message", exc.detail))
        if extra and isinstance(extra[0], dict)
        else str(exc.detail)
    )
    key = extra[0].get("key") if extra and isinstance(extra[0], dict) else None
    if any(
        w in message.lower()
        for w in ("malformed", "truncated", "invalid json", "unexpected character")
    ):
        return error_response(400, "bad_request", f"request body is not valid JSON: {message}")
    field = field_from_message(message) or (str(key) if key and key != "body" else None)
    return error_response(422, "validation_failed", message, field)


def field_from_message(message: str) -> str | None:
    # msgspec: "Expected `int`, got `str` - at `$.measurepoints[0].id`"; unknown field: "Object contains unknown field `x` - at `$`"
    at = message.rfind("- at `$")
    path = message[at + 7 : message.rfind("`")] if at >= 0 else ""
    path = path.lstrip(".")
    if "unknown field `" in message:
        name = message.split("unknown field `", 1)[1].split("`", 1)[0]
        return f"{path}.{name}" if path else name
    if "missing required field `" in message:
        name = message.split("missing required field `", 1)[1].split("`", 1)[0]
        return f"{path}.{name}" if path else name
    return path or None


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; see the server log")


def on_too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """msgspec decodes nesting up to the interpreter's recursion limit: deeper JSON is the
    client's error, not ours."""
    log.info("request body nested too deeply", extra={"path": request.url.path})
    return error_response(400, "bad_request", "request body is not valid JSON: nested too deeply")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HeadraceError: on_headrace_error,
    RecursionError: on_too_deep,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    status: int
    code: str  # a stable machine name: not_found, validation_failed, ...
    message: str
    field: str | None = None  # the request field at fault (422), as a path: a.b[0]
    line: int | None = None  # a script's syntax error: where
    column: int | None = None


class ErrorAnswer(msgspec.Struct):
    """Every error answer of the admin API: ``{"error": {status, code, message, field}}``."""

    error: ErrorDetail


_ERRORS_ALWAYS = {
    400: "the request is malformed (a body that is not JSON, a parameter that does not parse)",
    401: "no credentials, or a token or session the hub does not know",
    403: "the credentials' role may not do this (an org viewer changing, another org)",
    404: "what the path names does not exist (or belongs to another org)",
    422: "a parameter or field is wrong: `field` names it",
}
_ERRORS_WITH_BODY = {
    409: "it conflicts with what exists (a key in use, a state that refuses the change)",
    413: "the body is larger than the hub takes",
}


def document_errors(app: Litestar, prefix: str = "/api/v1") -> None:
    """Give every route under ``prefix`` the error answers it has in the OpenAPI document
    (the hub's error shape, ``ErrorAnswer``, instead of the framework's 400 body); a route's
    own ``responses`` win."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith(prefix):
            continue
        for handler in route.route_handlers:
            assert isinstance(handler, HTTPRouteHandler)
            statuses = dict(_ERRORS_ALWAYS)
            if handler.http_methods & {"POST", "PUT", "PATCH"}:
                statuses.update(_ERRORS_WITH_BODY)
            documented: dict[int, ResponseSpec] = {
                status: ResponseSpec(ErrorAnswer, generate_examples=False, description=what)
                for status, what in sorted(statuses.items())
            }
            handler.responses = {**documented, **(handler.responses or {})}


def page_limit(limit: int) -> int:
    if not 1 <= limit <= 1000:
        raise ValidationFailed("limit must be 1..1000", field="limit")
    return limit


# rows a page of a log filtered by device or code reads at the most: a page may then
# hold fewer items than its limit and still have a nextCursor (read on from there)
LOG_SCAN = 10_000
_dec = msgspec.json.Decoder()


def log_matcher(kinds: set[str], device: str | None, code: int | None) -> Any:
    """A message-log record filter ``match(kind, doc) -> bool``: its kind among ``kinds``
    (all if empty); ``device``: its ``deviceKey``, a ``devices`` entry or an item error's
    ``deviceKey`` is that device; ``code``: its ``code`` or an item error's ``code`` is
    that code. The live tail and ``GET .../logs`` filter with it alike."""

    def match(kind: str, doc: bytes) -> bool:
        if kinds and kind not in kinds:
            return False
        if device is None and code is None:
            return True
        d = _dec.decode(doc)
        if not isinstance(d, dict):
            return False
        errors = d.get("errors")
        errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        if (
            code is not None
            and d.get("code") != code
            and all(e.get("code") != code for e in errors)
        ):
            return False
        if device is not None:
            devices = d.get("devices")
            devices = devices if isinstance(devices, list) else []
            if not (
                d.get("deviceKey") == device
                or device in devices
                or any(e.get("deviceKey") == device for e in errors)
            ):
                return False
        return True

    return match


async def read_log(
    svc: Services,
    log_id: str,
    kinds_text: str,
    allowed: tuple[str, ...],
    start: int,
    end: int | None,
    limit: int,
    cursor: int | None,
    *,
    device: str | None = None,
    code: int | None = None,
) -> dict[str, Any]:
    """One page of a message log (a channel's or a service account's), newest first,
    filtered by kinds and time in the store and by ``device`` and ``code`` here (reading
    at most ``LOG_SCAN`` rows for one page)."""
    kinds = [k for k in kinds_text.split(",") if k]
    for k in kinds:
        if k not in allowed:
            raise ValidationFailed(f"kind must be among {', '.join(allowed)}", field="kind")
    device = device or None
    end = end if end is not None else int(time.time() * 1000) + 1
    if device is None and code is None:
        rows = await svc.store.query_log(log_id, kinds, start, end, limit, cursor)
        nxt = rows[-1][0] if len(rows) == limit else None
    else:
        match = log_matcher(set(), device, code)
        rows, scanned, nxt = [], 0, cursor
        while len(rows) < limit:
            if scanned >= LOG_SCAN:
                break  # nxt: the last row read
            n = min(1000, LOG_SCAN - scanned)
            got = await svc.store.query_log(log_id, kinds, start, end, n, nxt)
            for r in got:
                scanned += 1
                nxt = r[0]
                if match(r[2], r[3]):
                    rows.append(r)
                    if len(rows) == limit:
                        break
            if len(got) < n and len(rows) < limit:
                nxt = None  # the log has no older rows
                break
    items = [{"id": r[0], "time": r[1], "kind": r[2], **_dec.decode(r[3])} for r in rows]
    return {"items": items, "nextCursor": nxt}


def page(items: list[Any], limit: int, key: str) -> dict[str, Any]:
    """One page of a list: ``nextCursor`` is the last key when the page is full."""
    nxt = getattr(items[-1], key) if len(items) == limit and items else None
    return {"items": items, "nextCursor": nxt}
