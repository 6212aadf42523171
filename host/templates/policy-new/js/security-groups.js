// {{name}}: a security-groups policy for Weft ({{contract}}).
//
// Gives the pods of listed namespaces their own security groups, and every
// other pod the node's.

// The host calls `configure` on every fresh instance before a decision.
let namespaces = new Map();

export function configure(text) {
  let given;
  try {
    given = JSON.parse(text || "{}");
  } catch (e) {
    throw `invalid settings: ${e.message}`;
  }
  const unknown = Object.keys(given).filter((key) => key !== "namespaces");
  if (unknown.length > 0) throw `invalid settings: unknown field '${unknown[0]}'`;
  const parsed = new Map();
  for (const [namespace, groups] of Object.entries(given.namespaces ?? {})) {
    if (!Array.isArray(groups) || groups.length < 1 || groups.length > 5) {
      throw `invalid settings: namespaces.${namespace} needs 1 to 5 security groups`;
    }
    parsed.set(namespace, groups);
  }
  namespaces = parsed;
}

export function selectSecurityGroups(request) {
  const pod = request.pod;
  if (namespaces.has(pod.namespace)) return namespaces.get(pod.namespace);
  if (request.nodeSecurityGroups.length === 0) {
    throw `pod ${pod.namespace}/${pod.name}: the node has no security groups to default to`;
  }
  return request.nodeSecurityGroups;
}
