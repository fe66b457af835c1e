"""The lease plan of notebooks 1 and 9 (tools/lease_plan.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tools import lease_plan

REPO = Path(__file__).resolve().parent.parent


@dataclass
class FakeLease:
    """The two attributes of a python-chi Lease that notebook 9 reads."""

    name: str
    id: str | None
    status: str = "ACTIVE"


def test_two_sittings_span_a_night_and_one_sitting_does_not() -> None:
    assert lease_plan.lease_hours(1) == 8
    assert lease_plan.lease_hours(2) >= 24 + lease_plan.lease_hours(1)
    for bad in (0, 3, "2"):
        with pytest.raises(ValueError, match="SITTINGS must be 1 or 2"):
            lease_plan.lease_hours(bad)  # type: ignore[arg-type]


def test_usage_counts_every_reserved_vm_for_every_hour() -> None:
    cpu_only = lease_plan.usage(lease_plan.plan(use_gpu=False), 8)
    assert cpu_only == {"m1.medium": 24}
    with_gpu = lease_plan.usage(lease_plan.plan(use_gpu=True), 32)
    assert with_gpu == {"m1.medium": 96, "g1.h100.pci.1": 32}


def test_usage_refuses_a_lease_chameleon_would_refuse() -> None:
    with pytest.raises(ValueError, match="1 to 168 hours"):
        lease_plan.usage(lease_plan.plan(use_gpu=True), 169)
    with pytest.raises(ValueError):
        lease_plan.usage(lease_plan.plan(use_gpu=False), 0)


def test_notebook_9_finds_ended_and_repeated_leases_of_its_name_only() -> None:
    listed = [
        FakeLease("mlops-pipeline-ada", "1", "TERMINATED"),
        FakeLease("mlops-pipeline-ada", "2", "ACTIVE"),
        FakeLease("mlops-pipeline-ada-old", "3"),
        FakeLease("mlops-pipeline-bob", "4"),
        FakeLease("mlops-pipeline-ada", None, "DELETED"),
    ]
    found = lease_plan.leases_named(listed, "mlops-pipeline-ada")
    assert [item.id for item in found] == ["1", "2"]
    assert lease_plan.leases_named(listed, "mlops-pipeline-eve") == []


def test_the_lab_text_states_the_lease_lengths_the_tool_reserves() -> None:
    one, two = lease_plan.lease_hours(1), lease_plan.lease_hours(2)
    texts = {
        "snippets/0_intro.md": f"{one} hours for one sitting or\n  {two} for two",
        "snippets/1_reserve.md": f"`1` reserves {one} hours",
        "book/intro.md": f"lease of {one} hours",
        "book/instructors.md": f"{one} hours for one sitting, {two} for two",
        "README.md": f"{one}-hour lease, or two on a {two}-hour one",
    }
    for path, phrase in texts.items():
        assert phrase in (REPO / path).read_text(), f"{path} does not say {phrase!r}"
    assert f"{two}\nhours that chapter 1 reserves" in (REPO / "book/intro.md").read_text()
