"""The decoders' shared pieces: the error reasons, and the halving that isolates bad records."""

from __future__ import annotations

from pathlib import Path

from connectors.base import DecodeReason
from connectors.halves import split_until_isolated

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_decode_reason_is_its_metric_label_and_documented():
    documented = next(
        line for line in README.read_text().splitlines() if "`decode_errors_total{" in line
    )
    for reason in DecodeReason:
        assert str(reason) == f"{reason}" == reason.value
        assert f"`{reason.value}`" in documented, f"{reason.value} is not in the README"


def test_halving_isolates_each_failing_record_in_order_and_keeps_the_rest():
    bad = {3, 4, 11}
    attempts: list[tuple[int, int]] = []
    kept: list[int] = []
    isolated: list[int] = []

    def attempt(start: int, stop: int) -> None:
        attempts.append((start, stop))
        if bad & set(range(start, stop)):
            raise ValueError("bad record")
        kept.extend(range(start, stop))

    split_until_isolated(0, 16, attempt, lambda i, _exc: isolated.append(i), (ValueError,))
    assert isolated == [3, 4, 11]
    assert kept == [i for i in range(16) if i not in bad]
    assert attempts[0] == (0, 16)
    split_until_isolated(0, 16, lambda a, b: None, isolated.append)
    assert isolated == [3, 4, 11], "a clean range costs one attempt and isolates nothing"
