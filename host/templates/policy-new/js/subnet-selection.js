// {{name}}: a subnet-selection policy for Weft ({{contract}}).
//
// Creates ENIs in the subnet of the node's availability zone with the most
// free addresses, among those with room for the ENI's addresses.
// WIT u64 values (`free-ips`) arrive as BigInt.

// The host calls `configure` on every fresh instance before a decision.
let settings = { reserve: 0n };

export function configure(text) {
  let given;
  try {
    given = JSON.parse(text || "{}");
  } catch (e) {
    throw `invalid settings: ${e.message}`;
  }
  const unknown = Object.keys(given).filter((key) => key !== "reserve");
  if (unknown.length > 0) throw `invalid settings: unknown field '${unknown[0]}'`;
  const reserve = given.reserve ?? 0;
  if (!Number.isInteger(reserve) || reserve < 0) {
    throw "invalid settings: reserve must be a non-negative integer";
  }
  settings = { reserve: BigInt(reserve) };
}

export function selectSubnet(request, candidates) {
  // One address for the ENI itself, then its secondary IPs and prefixes.
  const needed = BigInt(1 + request.ips + 16 * request.prefixes);
  let best = null;
  for (const c of candidates) {
    if (c.availabilityZone !== request.availabilityZone) continue;
    if (c.freeIps < needed + settings.reserve) continue;
    // Most free addresses; the lowest id among equals.
    if (
      best === null ||
      c.freeIps > best.freeIps ||
      (c.freeIps === best.freeIps && c.id < best.id)
    ) {
      best = c;
    }
  }
  if (best === null) {
    return {
      tag: "refuse",
      val: `no subnet in ${request.availabilityZone} has ${needed} free addresses to spare`,
    };
  }
  return { tag: "use-subnet", val: best.id };
}
