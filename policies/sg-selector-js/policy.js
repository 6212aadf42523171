// sg-selector in JavaScript: the same rules, settings and decisions as the
// Rust default policy `policies/sg-selector` (its fixtures are checked
// against this component too).
//
// The first rule whose selectors all match the pod decides; a pod no rule
// matches gets the node's security groups. Settings:
//
//   {"rules": [{"namespaces": ["payments"], "match-labels": {"app": "api"},
//               "service-accounts": ["payments/api", "deployer"],
//               "security-groups": ["sg-0123456789abcdef0"]}]}

// Most security groups EC2 allows on one ENI by default.
const MAX_GROUPS = 5;
// `sg-` followed by 8 or 17 lowercase hex digits, as EC2 issues them.
const SG_ID = /^sg-(?:[0-9a-f]{8}|[0-9a-f]{17})$/;
const RULE_FIELDS = ["namespaces", "match-labels", "service-accounts", "security-groups"];

// The validated rules; the host calls `configure` on every fresh instance.
let rules = [];

function parseRule(i, rule) {
  const fail = (message) => {
    throw `invalid settings: rules[${i}].${message}`;
  };
  if (rule === null || typeof rule !== "object" || Array.isArray(rule)) {
    fail("must be a table");
  }
  for (const key of Object.keys(rule)) {
    if (!RULE_FIELDS.includes(key)) {
      fail(`${key}: unknown field, expected one of ${RULE_FIELDS.join(", ")}`);
    }
  }
  if (!("security-groups" in rule)) fail("security-groups: missing field");
  const groups = rule["security-groups"];
  if (!Array.isArray(groups) || groups.length < 1 || groups.length > MAX_GROUPS) {
    const count = Array.isArray(groups) ? groups.length : 0;
    fail(`security-groups: ${count} given, 1 to ${MAX_GROUPS} allowed`);
  }
  for (const group of groups) {
    if (typeof group !== "string" || !SG_ID.test(group)) {
      fail(
        `security-groups: ${JSON.stringify(group)} is not a security group id ` +
          "(`sg-` and 8 or 17 lowercase hex digits)",
      );
    }
  }
  groups.forEach((group, j) => {
    if (groups.indexOf(group) < j) {
      fail(`security-groups: ${JSON.stringify(group)} is listed twice (entry ${j})`);
    }
  });
  return {
    namespaces: rule.namespaces ?? [],
    matchLabels: Object.entries(rule["match-labels"] ?? {}),
    serviceAccounts: rule["service-accounts"] ?? [],
    securityGroups: groups,
  };
}

function matches(rule, pod) {
  if (rule.namespaces.length > 0 && !rule.namespaces.includes(pod.namespace)) return false;
  const labelled = rule.matchLabels.every(([key, value]) =>
    pod.labels.some((label) => label.key === key && label.value === value),
  );
  if (!labelled) return false;
  if (rule.serviceAccounts.length === 0) return true;
  return rule.serviceAccounts.some((wanted) => {
    const slash = wanted.indexOf("/");
    if (slash < 0) return wanted === pod.serviceAccount;
    return (
      wanted.slice(0, slash) === pod.namespace && wanted.slice(slash + 1) === pod.serviceAccount
    );
  });
}

export function configure(settings) {
  let given;
  try {
    given = settings.trim() === "" ? {} : JSON.parse(settings);
  } catch (e) {
    throw `invalid settings: ${e.message}`;
  }
  if (given === null || typeof given !== "object" || Array.isArray(given)) {
    throw "invalid settings: expected a JSON object";
  }
  for (const key of Object.keys(given)) {
    if (key !== "rules") throw `invalid settings: unknown field \`${key}\`, expected \`rules\``;
  }
  rules = (given.rules ?? []).map((rule, i) => parseRule(i, rule));
}

export function selectSecurityGroups(request) {
  const pod = request.pod;
  const rule = rules.find((r) => matches(r, pod));
  if (rule !== undefined) return rule.securityGroups;
  if (request.nodeSecurityGroups.length === 0) {
    throw (
      `no rule matches pod ${pod.namespace}/${pod.name} and the node has ` +
      "no security groups to default to"
    );
  }
  return request.nodeSecurityGroups;
}
