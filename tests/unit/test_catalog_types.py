"""Type inference and widening, the rules the crawler merges schemas with."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etl_framework.catalog import types as ty

SCALARS = st.sampled_from(["boolean", "tinyint", "smallint", "int", "bigint", "float", "double", "date",
                           "timestamp", "string", "decimal(10,2)", None])
TYPES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.tuples(st.just("array"), inner),
    st.tuples(st.just("struct"), st.lists(st.tuples(st.sampled_from("abc"), inner), max_size=3,
                                          unique_by=lambda f: f[0]).map(tuple)),
), max_leaves=5)


def canon(t):
    """Struct field order does not matter for equality of merged schemas."""
    if isinstance(t, tuple) and t[0] == "struct":
        return ("struct", tuple(sorted((n, canon(x)) for n, x in t[1])))
    if isinstance(t, tuple):
        return (t[0], *(canon(x) for x in t[1:]))
    return t


@given(TYPES, TYPES)
def test_widen_is_commutative_and_absorbing(a, b):
    w = ty.widen(a, b)
    assert canon(w) == canon(ty.widen(b, a))
    assert canon(ty.widen(w, a)) == canon(w)  # the wider type already holds a's values
    assert canon(ty.widen(w, b)) == canon(w)


@given(st.lists(TYPES, min_size=1, max_size=5))
def test_widen_over_files_does_not_depend_on_file_order(types):
    fwd = rev = None
    for t in types:
        fwd = ty.widen(fwd, t)
    for t in reversed(types):
        rev = ty.widen(rev, t)
    assert canon(fwd) == canon(rev)


def test_infer_text():
    cases = {"42": "bigint", "-3.5e2": "double", "true": "boolean", "2024-01-31": "date",
             "2024-01-31 10:00:00": "timestamp", "2024-01-31T10:00:00.123Z": "timestamp", "abc": "string",
             "": None, "99999999999999999999": "double", "NaN": "string"}
    assert {k: ty.infer_text(k) for k in cases} == cases
    assert ty.render(ty.infer_json({"a": [1, 2.5], "b": {"c": None}})) == "struct<a:array<double>,b:struct<c:string>>"
