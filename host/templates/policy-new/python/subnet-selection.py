"""{{name}}: a subnet-selection policy for Weft ({{contract}}).

Creates ENIs in the subnet of the node's availability zone with the most
free addresses, among those with room for the ENI's addresses.
"""

import json
from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports.subnet import (
    Candidate,
    Choice,
    Choice_Refuse,
    Choice_UseSubnet,
    EniRequest,
)

# The host calls `configure` on every fresh instance before a decision.
SETTINGS = {"reserve": 0}


class WitWorld(wit_world.WitWorld):
    def configure(self, settings: str) -> None:
        global SETTINGS
        try:
            given = json.loads(settings or "{}")
        except ValueError as e:
            raise Err(f"invalid settings: {e}")
        unknown = set(given) - {"reserve"}
        if unknown:
            raise Err(f"invalid settings: unknown field {sorted(unknown)[0]!r}")
        reserve = given.get("reserve", 0)
        if not isinstance(reserve, int) or reserve < 0:
            raise Err("invalid settings: reserve must be a non-negative integer")
        SETTINGS = {"reserve": reserve}

    def select_subnet(self, request: EniRequest, candidates: List[Candidate]) -> Choice:
        # One address for the ENI itself, then its secondary IPs and prefixes.
        needed = 1 + request.ips + 16 * request.prefixes
        fitting = [
            c
            for c in candidates
            if c.availability_zone == request.availability_zone
            and c.free_ips >= needed + SETTINGS["reserve"]
        ]
        if not fitting:
            return Choice_Refuse(
                f"no subnet in {request.availability_zone} has {needed} free addresses to spare"
            )
        # Most free addresses; the lowest id among equals.
        best = min(fitting, key=lambda c: (-c.free_ips, c.id))
        return Choice_UseSubnet(best.id)
