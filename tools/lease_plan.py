"""The lease's length, what it holds and costs, and which leases notebook 9 deletes.

Notebook 1 calls ``lease_hours`` and ``usage`` before it reserves anything; notebook 9 calls
``leases_named`` on the leases Blazar lists, so that it deletes an ended lease as well as an
active one (python-chi's ``get_lease`` finds nothing when two leases share the name).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

# One sitting: the lab with a margin. Two: the first sitting, a night, the second sitting.
HOURS_BY_SITTINGS = {1: 8, 2: 32}
# Chameleon caps leases of the H100 flavors at seven days.
MAX_HOURS = 7 * 24
CPU_FLAVOR, CPU_COUNT = "m1.medium", 3
GPU_FLAVOR, GPU_COUNT = "g1.h100.pci.1", 1


class NamedLease(Protocol):
    """What notebook 9 reads of a python-chi lease."""

    name: str
    id: str | None


def lease_hours(sittings: int) -> int:
    """The lease's length in hours for one or two sittings."""
    if sittings not in HOURS_BY_SITTINGS:
        raise ValueError(f"SITTINGS must be 1 or 2, not {sittings!r}")
    return HOURS_BY_SITTINGS[sittings]


def plan(use_gpu: bool) -> dict[str, int]:
    """The flavors to reserve and how many VMs of each."""
    flavors = {CPU_FLAVOR: CPU_COUNT}
    if use_gpu:
        flavors[GPU_FLAVOR] = GPU_COUNT
    return flavors


def usage(flavors: dict[str, int], hours: int) -> dict[str, int]:
    """VM-hours per flavor: the reserved capacity the allocation is charged for."""
    if not 1 <= hours <= MAX_HOURS:
        raise ValueError(f"a lease lasts 1 to {MAX_HOURS} hours, not {hours}")
    return {flavor: count * hours for flavor, count in flavors.items()}


def leases_named(leases: Iterable[NamedLease], name: str) -> list[NamedLease]:
    """Every listed lease with exactly this name, whatever its status."""
    return [item for item in leases if item.name == name and item.id]
