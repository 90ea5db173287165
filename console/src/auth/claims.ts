/** What the console reads from an access token: tenant and realm roles (Keycloak's layout). */
export const ROLES = ["viewer", "operator", "tenant-admin", "platform-admin"] as const;
export type Role = (typeof ROLES)[number];

/** The roles a role implies (the API's ROLE_GRANTS): tenant-admin > operator > viewer. */
const GRANTS: Record<Role, Role[]> = {
  viewer: ["viewer"],
  operator: ["operator", "viewer"],
  "tenant-admin": ["tenant-admin", "operator", "viewer"],
  "platform-admin": ["platform-admin"],
};

export interface Claims {
  subject: string;
  username: string;
  tenant: string | null;
  roles: Role[];
}

export type Access =
  | { kind: "ok"; claims: Claims }
  | { kind: "no-tenant"; claims: Claims }
  | { kind: "no-role"; claims: Claims }
  | { kind: "invalid"; reason: string };

function base64UrlDecode(part: string): string {
  const padded = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** The claims of a JWT's payload (not verified: the API verifies; this only decides the UI). */
export function claimsOf(token: string): Claims {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("not a JWT");
  const payload = JSON.parse(base64UrlDecode(parts[1])) as Record<string, unknown>;
  const realm = payload.realm_access as { roles?: unknown } | undefined;
  const roles = Array.isArray(realm?.roles)
    ? realm.roles.filter((r): r is Role => (ROLES as readonly string[]).includes(r as string))
    : [];
  const tenant = typeof payload.tenant_id === "string" && payload.tenant_id ? payload.tenant_id : null;
  const subject = typeof payload.sub === "string" ? payload.sub : "";
  const username = typeof payload.preferred_username === "string" ? payload.preferred_username : subject;
  return { subject, username, tenant, roles };
}

/** Whether the console can be used with this token, and if not, why. */
export function accessOf(token: string): Access {
  let claims: Claims;
  try {
    claims = claimsOf(token);
  } catch (error) {
    return { kind: "invalid", reason: String(error) };
  }
  if (claims.tenant === null) return { kind: "no-tenant", claims };
  if (!claims.roles.some((r) => r !== "platform-admin")) return { kind: "no-role", claims };
  return { kind: "ok", claims };
}

/** Whether ``roles`` include ``required`` or a role that implies it. */
export function may(roles: readonly Role[], required: Role): boolean {
  return roles.some((role) => GRANTS[role].includes(required));
}
