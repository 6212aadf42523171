// {{name}}: a pool-sizing policy for Weft ({{contract}}).
//
// Keeps `spare` free pod addresses in the group: when fewer are free, it asks
// for the difference on the group's ENI with the most room.

import { log } from "weft:policy/log@0.1.0";

// The host calls `configure` on every fresh instance before a decision.
let settings = { spare: 2 };

export function configure(text) {
  let given;
  try {
    given = JSON.parse(text || "{}");
  } catch (e) {
    throw `invalid settings: ${e.message}`;
  }
  const unknown = Object.keys(given).filter((key) => key !== "spare");
  if (unknown.length > 0) throw `invalid settings: unknown field '${unknown[0]}'`;
  const spare = given.spare ?? 2;
  if (!Number.isInteger(spare) || spare < 0) {
    throw "invalid settings: spare must be a non-negative integer";
  }
  settings = { spare };
}

const addresses = (eni) => eni.ips + 16 * eni.prefixes;

export function sizePool(state) {
  const nothing = { changes: [], create: [], release: [], reason: "" };
  const free = state.enis.reduce(
    (sum, eni) => sum + Math.max(addresses(eni) - eni.assigned - eni.cooling, 0),
    0,
  );
  const wanted = settings.spare;
  if (free >= wanted) return nothing;
  // An ENI holds `ipv4-per-eni - 1` pod addresses.
  const slots = Math.max(state.limits.ipv4PerEni - 1, 0);
  let best = null;
  for (const eni of state.enis) {
    const room = Math.max(slots - addresses(eni), 0);
    if (room > 0 && (best === null || room > best.room)) best = { eni, room };
  }
  if (best === null) {
    log("warn", "no ENI of the group has room for more addresses");
    return nothing;
  }
  return {
    changes: [
      {
        eniId: best.eni.id,
        addIps: Math.min(wanted - free, best.room),
        addPrefixes: 0,
        releaseIps: 0,
        releasePrefixes: 0,
      },
    ],
    create: [],
    release: [],
    reason: `${free} free, want ${wanted}`,
  };
}
