import { describe, expect, it } from "vitest";
import { accessOf, claimsOf, may } from "./claims";

function jwt(payload: object): string {
  const encode = (value: object) =>
    btoa(String.fromCharCode(...new TextEncoder().encode(JSON.stringify(value))))
      .replace(/\+/g, "-")
      .replace(/\//g, "_")
      .replace(/=+$/, "");
  return `${encode({ alg: "RS256" })}.${encode(payload)}.sig`;
}

describe("claims", () => {
  it("reads tenant, known roles and the user name", () => {
    const claims = claimsOf(
      jwt({ sub: "u1", preferred_username: "alice", tenant_id: "acme", realm_access: { roles: ["operator", "offline_access"] } }),
    );
    expect(claims).toEqual({ subject: "u1", username: "alice", tenant: "acme", roles: ["operator"] });
  });

  it("decodes UTF-8 and base64url payloads", () => {
    expect(claimsOf(jwt({ sub: "ü?>>", tenant_id: "t" })).subject).toBe("ü?>>");
  });

  it("explains a token without tenant or role", () => {
    expect(accessOf(jwt({ realm_access: { roles: ["platform-admin"] } })).kind).toBe("no-tenant");
    expect(accessOf(jwt({ tenant_id: "acme", realm_access: { roles: ["offline_access"] } })).kind).toBe("no-role");
    expect(accessOf(jwt({ tenant_id: "acme" })).kind).toBe("no-role");
    expect(accessOf("garbage").kind).toBe("invalid");
    expect(accessOf(jwt({ tenant_id: "acme", realm_access: { roles: ["viewer"] } })).kind).toBe("ok");
  });

  it("applies role implication like the API", () => {
    expect(may(["tenant-admin"], "operator")).toBe(true);
    expect(may(["operator"], "viewer")).toBe(true);
    expect(may(["viewer"], "operator")).toBe(false);
    expect(may(["operator"], "tenant-admin")).toBe(false);
    expect(may(["platform-admin"], "viewer")).toBe(false);
  });
});
