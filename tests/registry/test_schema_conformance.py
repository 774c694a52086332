"""Schemathesis against the app: every answer's status, content type and body are declared.

Each operation of the OpenAPI document gets generated requests that fit its schema and requests
that do not, with an admin token; every answer must be a declared status with the declared schema
and content type, and never a 5xx.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.registry.conftest import auth

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_declared_in_the_openapi_document(
    app: Any, admin_token: str, mode: GenerationMode
) -> None:
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 14
    exercised = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=10,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_declared(case: Any) -> None:
            response = case.call(headers=auth(admin_token))
            case.validate_response(response, checks=CHECKS)

        try:
            answers_as_declared()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid request to generate.
            assert mode == GenerationMode.NEGATIVE, operation.label
            continue
        exercised += 1
    assert exercised >= (14 if mode == GenerationMode.POSITIVE else 8), exercised
