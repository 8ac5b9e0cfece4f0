from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ebbtide.spec.quantity import (
    QuantityError,
    canonical,
    format_cpu,
    format_memory,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("1", Decimal(1)),
        ("1.5", Decimal("1.5")),
        ("1Gi", Decimal(2**30)),
        ("700Mi", Decimal(700 * 2**20)),
        ("1e3", Decimal(1000)),
        ("2k", Decimal(2000)),
        ("100n", Decimal("1e-7")),
        ("0.1", Decimal("0.1")),
        (".5", Decimal("0.5")),
        ("3E-2", Decimal("0.03")),
        (2, Decimal(2)),
        (0.25, Decimal("0.25")),
    ],
)
def test_parses_kubernetes_quantities(text: str | int | float, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "5 m", "1GB", "--1", "m", "1ii"])
def test_rejects_what_is_not_a_quantity(text: str) -> None:
    with pytest.raises(QuantityError, match="is not a quantity"):
        parse_quantity(text)


def test_rejects_booleans_which_yaml_may_produce() -> None:
    with pytest.raises(QuantityError):
        parse_quantity(True)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.5"), "500m"),
        (Decimal(1), "1"),
        (Decimal(2**30), "1Gi"),
        (Decimal(1536 * 2**20), "1536Mi"),
        (Decimal(2000), "2k"),
        (Decimal("0.0001"), "100u"),
        (Decimal(0), "0"),
    ],
)
def test_canonical_spelling(value: Decimal, text: str) -> None:
    assert canonical(value) == text


def test_top_pods_formats() -> None:
    assert format_cpu(Decimal("0.3")) == "300m"
    assert format_cpu(0.0004) == "0m"
    assert format_memory(700 * 2**20) == "700Mi"
    assert format_memory(1.6 * 2**20) == "2Mi"


@given(
    st.integers(min_value=0, max_value=10**15), st.sampled_from(["", "m", "k", "Mi", "Gi", "Ki"])
)
def test_canonical_round_trips(number: int, suffix: str) -> None:
    value = parse_quantity(f"{number}{suffix}")
    assert parse_quantity(canonical(value)) == value
