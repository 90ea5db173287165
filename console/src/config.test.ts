import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "./config";

describe("parseConfig", () => {
  it("accepts the deploy-time config and trims trailing slashes", () => {
    expect(parseConfig({ issuer: "https://auth.example.com/realms/fleetpulse/", apiUrl: "https://api.example.com" })).toEqual({
      issuer: "https://auth.example.com/realms/fleetpulse",
      apiUrl: "https://api.example.com",
      clientId: "fleetpulse-console",
    });
  });
  it("names the wrong field", () => {
    expect(() => parseConfig({ issuer: "ftp://x", apiUrl: "https://a" })).toThrow(/issuer/);
    expect(() => parseConfig({ issuer: "https://x" })).toThrow(ConfigError);
    expect(() => parseConfig(null)).toThrow(/not an object/);
  });
});
