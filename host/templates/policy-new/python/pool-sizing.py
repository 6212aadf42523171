"""{{name}}: a pool-sizing policy for Weft ({{contract}}).

Keeps `spare` free pod addresses in the group: when fewer are free, it asks
for the difference on the group's ENI with the most room.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import log
from wit_world.imports.pool import EniChange, PoolDecision, PoolState

# The host calls `configure` on every fresh instance before a decision.
SETTINGS = {"spare": 2}


class WitWorld(wit_world.WitWorld):
    def configure(self, settings: str) -> None:
        global SETTINGS
        try:
            given = json.loads(settings or "{}")
        except ValueError as e:
            raise Err(f"invalid settings: {e}")
        unknown = set(given) - {"spare"}
        if unknown:
            raise Err(f"invalid settings: unknown field {sorted(unknown)[0]!r}")
        spare = given.get("spare", 2)
        if not isinstance(spare, int) or spare < 0:
            raise Err("invalid settings: spare must be a non-negative integer")
        SETTINGS = {"spare": spare}

    def size_pool(self, state: PoolState) -> PoolDecision:
        def addresses(eni):
            return eni.ips + 16 * eni.prefixes

        free = sum(max(addresses(e) - e.assigned - e.cooling, 0) for e in state.enis)
        wanted = SETTINGS["spare"]
        if free >= wanted:
            return PoolDecision(changes=[], create=[], release=[], reason="")
        # An ENI holds `ipv4-per-eni - 1` pod addresses.
        slots = max(state.limits.ipv4_per_eni - 1, 0)
        best = None
        for eni in state.enis:
            room = max(slots - addresses(eni), 0)
            if room > 0 and (best is None or room > best[1]):
                best = (eni, room)
        if best is None:
            log.log(log.Level.WARN, "no ENI of the group has room for more addresses")
            return PoolDecision(changes=[], create=[], release=[], reason="")
        eni, room = best
        change = EniChange(
            eni_id=eni.id,
            add_ips=min(wanted - free, room),
            add_prefixes=0,
            release_ips=0,
            release_prefixes=0,
        )
        return PoolDecision(
            changes=[change], create=[], release=[], reason=f"{free} free, want {wanted}"
        )
