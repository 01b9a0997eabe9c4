"""Enterprise settings checks: IP allow-lists, event types, credentials."""

from __future__ import annotations

import pytest

from headrace.errors import ValidationFailed
from headrace.push.enterprises import (
    AllowList,
    check_allow_list,
    check_credential,
    check_event_types,
    new_enterprise_id,
    new_secret,
)


def test_allow_list() -> None:
    allow = AllowList(check_allow_list(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]))
    assert allow.allows("10.2.3.4") and allow.allows("192.168.1.7")
    assert not allow.allows("192.168.1.8") and not allow.allows("11.0.0.1")
    assert allow.allows("2001:db8::1") and not allow.allows("2001:db9::1")
    assert allow.allows("::ffff:10.1.1.1")  # IPv4 seen through a dual-stack socket
    assert not allow.allows("") and not allow.allows("not-an-ip")
    assert AllowList([]).allows("8.8.8.8")  # empty: everyone


def test_allow_list_normalized_and_checked() -> None:
    assert check_allow_list([" 10.1.2.3/16", "::1"]) == ["10.1.0.0/16", "::1/128"]
    with pytest.raises(ValidationFailed) as e:
        check_allow_list(["10.0.0.1", "10.0.0.300"])
    assert e.value.field == "ipAllowList[1]"


def test_event_types() -> None:
    assert check_event_types(["device_status_kv", "device_online", "device_online"]) == [
        "device_online",
        "device_status_kv",
    ]
    for bad, field in ((["nope"], "eventTypes[0]"), ([], "eventTypes")):
        with pytest.raises(ValidationFailed) as e:
            check_event_types(bad)
        assert e.value.field == field


def test_credentials() -> None:
    assert check_credential("8fb23e6dbf06438b8200cf4588e", "enterpriseId")
    for bad in ("", "a b", "x" * 129, "é"):
        with pytest.raises(ValidationFailed):
            check_credential(bad, "enterpriseSecret")
    assert len(new_enterprise_id()) == 32 and new_enterprise_id() != new_enterprise_id()
    assert len(new_secret()) == 32
