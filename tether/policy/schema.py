"""JSON Schema of policy files, for editor completion (`policies/schema.json`).

Regenerate with `tether policy schema > policies/schema.json` (or `make schema`); a unit test checks
that the committed file matches.
"""

from typing import Any

from pydantic import TypeAdapter

from tether.policy.models import Policy, PolicyList


def policy_json_schema() -> dict[str, Any]:
    schema = TypeAdapter(Policy | PolicyList).json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "tether policy file",
        "description": "One tether policy, or several under 'policies:'. Provider names and scopes "
        "are checked against the provider catalog by `tether policy check`.",
        **schema,
    }
