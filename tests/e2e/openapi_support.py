"""The fuzzing half of ``test_openapi_fuzz.py``: schemathesis cases for a list of the
hub's operations, run in a worker process of their own.

Generating the cases (hypothesis drawing from schemathesis' strategies) takes most of the
test's time, in the test's process, while the hub idles: the operations are split
between two such processes, one per core, so that both cores generate.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.conftest import ADMIN_TOKEN

# per operation: about 1,900 requests in all
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# bounded: no shrinking (the failure names the request as a curl command), no database
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)

Context = dict[str, str]


def load(url: str) -> Any:
    """The hub's OpenAPI document as a schemathesis schema (no toml)."""
    return schemathesis.openapi.from_url(url, config=schemathesis.Config())


def operation_strategy(operation: Any, seeded: list[Context]) -> st.SearchStrategy[Any]:
    """Valid and invalid cases (half each); the path parameters come from one seeded
    context that has them all (if one does), each replaced by the generated value once in
    six."""
    names = [p.name for p in operation.path_parameters]
    contexts = [c for c in seeded if all(n in c for n in names)] or seeded

    @st.composite
    def cases(draw: st.DrawFn) -> Any:
        mode = draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
        context = draw(st.sampled_from(contexts))
        real = {n: context[n] for n in names if n in context and draw(st.integers(0, 5))}
        return draw(operation.as_strategy(generation_mode=mode, path_parameters=real or None))

    return cases()


def fuzz(
    url: str, labels: list[str], seeded: list[Context]
) -> tuple[dict[str, Counter[int]], list[str]]:
    """EXAMPLES cases for each operation of ``labels``, in that order: no answer may be a
    5xx, and every answer must match the schema and media type documented for its status.
    Returns the statuses answered per operation, and the failures."""
    operations = {op.label: op for op in (r.ok() for r in load(url).get_all_operations())}
    statuses: dict[str, Counter[int]] = {label: Counter() for label in labels}
    failures: list[str] = []
    with requests.Session() as session:

        def check(case: Any) -> None:
            response = case.call(session=session, headers=AUTH, timeout=30)
            statuses[case.operation.label][response.status_code] += 1
            assert response.status_code < 500, (
                f"{response.status_code} answered to:\n{case.as_curl_command(headers=AUTH)}\n"
                f"{response.text[:2000]}"
            )
            if response.status_code != 416:  # an empty Range answer, no body to check
                case.validate_response(
                    response, checks=[response_schema_conformance, content_type_conformance]
                )

        for label in labels:
            try:
                FUZZ(given(operation_strategy(operations[label], seeded))(check))()
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                failures.append(f"{label}: {exc}")
    return statuses, failures
