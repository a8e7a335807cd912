"""Durations and sizes: one grammar for the pipeline file and the command line."""

from __future__ import annotations

import pytest

from lakeflow.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1.5h", 5400),
        ("1h30m", 5400),
        ("7d", 604_800),
        ("2w", 1_209_600),
    ],
)
def test_a_duration_is_numbers_with_units(text, seconds):
    assert parse_duration(text) == seconds


def test_a_bare_number_in_a_string_is_seconds_and_zero_is_allowed():
    assert parse_duration("3600") == 3600
    assert parse_duration("0") == 0


def test_a_number_is_left_to_the_model_to_validate():
    assert parse_duration(60) == 60


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 30", "-5m", "soon"])
def test_a_malformed_duration_says_what_a_duration_is(text):
    with pytest.raises(ValueError, match=r"is not a duration: use seconds \(3600\)"):
        parse_duration(text)


def test_sizes_in_kb_are_powers_of_1000_and_in_kib_of_1024():
    assert parse_size("100MB") == 100_000_000
    assert parse_size("128MiB") == 128 << 20
    assert parse_size("1.5GiB") == 3 << 29


def test_a_printed_size_reads_back_as_the_same_number():
    printed = format_size(128 << 20)
    assert printed == "128.0 MiB"
    assert parse_size(printed.replace(" ", "")) == 128 << 20


def test_a_duration_is_printed_with_its_largest_exact_unit():
    assert [format_duration(s) for s in (3600, 604_800, 5400, 0.5)] == ["1h", "1w", "90m", "0.5s"]
