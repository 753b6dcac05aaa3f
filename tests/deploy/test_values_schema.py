"""values.schema.json describes every value of values.yaml (and nothing that is not there), closes every object so
a misspelt key is an error, and accepts the shipped defaults and every case of the test matrix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.chart import CASE_NAMES, case
from tests.deploy.tools import CHART

SCHEMA: dict[str, Any] = yaml.safe_load((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
# Free-form values: their content is Kubernetes' or the operator's (an affinity, a policy profile, labels).
FREE_FORM_ALLOWED = {"global"}


def _value_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Key paths of values.yaml down to the objects the schema leaves free-form."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in sub:
            yield from _value_paths(value, sub, f"{path}.")


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        yield path
        if "properties" in sub:
            yield from _schema_paths(sub, f"{path}.")


def _objects(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if "properties" in schema:
        yield path or "(root)", schema
        for key, sub in schema["properties"].items():
            yield from _objects(sub, f"{path}.{key}" if path else key)


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_every_value_is_described_and_nothing_else() -> None:
    values = set(_value_paths(VALUES, SCHEMA))
    described = set(_schema_paths(SCHEMA)) - FREE_FORM_ALLOWED
    assert values - described == set(), "values without a schema entry"
    # Only the optional fields of an object that is empty by default (tls.certManager.issuerRef) may be absent.
    absent = {path for path in described - values if _lookup(VALUES, path.rpartition(".")[0]) != {}}
    assert absent == set(), "schema entries with no value in values.yaml"


def _lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def test_every_object_is_closed() -> None:
    for path, schema in _objects(SCHEMA):
        assert schema.get("additionalProperties") is False, path


def test_defaults_validate() -> None:
    jsonschema.validate(VALUES, SCHEMA)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_matrix_values_validate(name: str) -> None:
    merged = _merge(VALUES, case(name).values)
    jsonschema.validate(merged, SCHEMA)


def test_a_misspelt_key_is_refused() -> None:
    with pytest.raises(jsonschema.ValidationError, match="timeoutSecond"):
        jsonschema.validate(_merge(VALUES, {"webhook": {"timeoutSecond": 5}}), SCHEMA)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and value:
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
