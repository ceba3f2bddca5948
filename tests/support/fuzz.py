"""Hypothesis strategies for property-based tests: arbitrary JSON, values loosely shaped by a JSON Schema (each
property either fits its schema more or less or is anything at all, plus keys nobody asked for), form fields, and
a snapshot of the database to prove that a refused request wrote nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select

from idp_mcp.store.db import Database
from idp_mcp.store.tables import metadata

#: Modest, so the suite stays quick on two cores; the app and its fixtures persist across examples on purpose.
FUZZ_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree; failures print the example to reproduce
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Strings that mean something somewhere: ids, URLs, colours, scopes, grant types. Mixed with arbitrary text, so
# examples reach past the first validation into the core.
MEANINGFUL = [
    "",
    " ",
    "admin",
    "default",
    "ES256",
    "RS256",
    "none",
    "null",
    "traditional",
    "spa",
    "native",
    "m2m",
    "email",
    "username",
    "phone",
    "password",
    "on",
    "off",
    "auto",
    "#5d34f2",
    "#fff",
    "red",
    "someone@example.com",
    "Someone@Example.COM",
    "not-an-email",
    "a long passphrase 42",
    "https://app.example.com/callback",
    "http://127.0.0.1:3000/callback",
    "http://localhost/cb",
    "https://app.example.com",
    "javascript:alert(1)",
    "cursor://callback",
    "../../etc/passwd",
    "%00",
    "\x00",
    "x" * 300,
    "idp:read idp:write",
    "openid profile email offline_access",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(MEANINGFUL)
)

#: Any JSON value, nested a little.
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=10,
)


def strings(hints: list[str] | None = None) -> st.SearchStrategy[str]:
    """Arbitrary text, meaningful strings, and meaningful strings spoilt by a NUL (PostgreSQL refuses NUL in
    text even as a query parameter, so each one must be refused before it reaches the database)."""
    meaningful = st.sampled_from(MEANINGFUL + (hints or []))
    return st.text(max_size=60) | meaningful | meaningful.map(lambda value: value + "\x00")


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = defs.get(ref.split("/")[-1], {})
        return resolved
    return schema


def from_schema(
    schema: dict[str, Any], defs: dict[str, Any], hints: list[str], depth: int = 0
) -> st.SearchStrategy[Any]:
    """A value that more or less fits ``schema`` (limits ignored, so out-of-range values come too)."""
    schema = _resolve(schema, defs)
    if depth > 3:
        return json_values
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return st.one_of([from_schema(branch, defs, hints, depth + 1) for branch in branches])
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"])) | strings(hints)
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        return strings(hints)
    if kind == "integer":
        return st.integers(min_value=-(2**70), max_value=2**70) | st.integers(min_value=-5, max_value=200)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), defs, hints, depth + 1), max_size=5)
    if kind == "object" or "properties" in schema:
        return objects(schema, defs, hints, depth + 1)
    return json_values


def objects(schema: dict[str, Any], defs: dict[str, Any], hints: list[str], depth: int = 0) -> st.SearchStrategy[Any]:
    """An object with any subset of the schema's properties (each loosely typed or anything at all), and now and
    then a key the schema does not know."""
    properties = schema.get("properties", {})
    optional = {
        name: from_schema(prop, defs, hints, depth) | json_values
        if depth == 0
        else from_schema(prop, defs, hints, depth)
        for name, prop in properties.items()
    }
    known = st.fixed_dictionaries({}, optional=optional)
    extra = st.dictionaries(st.text(min_size=1, max_size=12), json_values, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, known, st.one_of(st.just({}), st.just({}), extra))


def tool_arguments(input_schema: dict[str, Any], hints: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for a tool with this ``inputSchema``: always a JSON object, otherwise anything goes."""
    return objects(input_schema, input_schema.get("$defs", {}), hints)


def form_fields(known: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """Form fields: any subset of ``known`` with its values, plus a random field now and then."""
    extra = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=40), max_size=2)
    return st.builds(lambda a, b: {**b, **a}, st.fixed_dictionaries({}, optional=known), st.one_of(st.just({}), extra))


_TABLES: dict[int, frozenset[str]] = {}


def _tables_of(db: Database) -> frozenset[str]:
    if id(db) not in _TABLES:
        _TABLES[id(db)] = frozenset(inspect(db.engine).get_table_names())
    return _TABLES[id(db)]


def snapshot(db: Database, tables: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables`` (those that exist), as sorted tuples of reprs: comparable before and after."""
    present = _tables_of(db)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with db.transaction() as conn:
        for name in tables:
            if name in present and name in metadata.tables:
                result = conn.execute(select(metadata.tables[name]))
                rows[name] = sorted(tuple(repr(value) for value in row) for row in result)
    return rows
