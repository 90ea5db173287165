/** Runtime configuration, written at deploy time to /config.json (never baked into the build). */
export interface ConsoleConfig {
  /** OIDC issuer, e.g. https://auth.example.com/realms/fleetpulse */
  issuer: string;
  /** API base URL without /api/v1, e.g. https://api.example.com */
  apiUrl: string;
  /** Public OIDC client with PKCE (Keycloak: fleetpulse-console) */
  clientId: string;
}

export class ConfigError extends Error {}

/** Check the parsed /config.json; throws ConfigError naming the field that is wrong. */
export function parseConfig(raw: unknown): ConsoleConfig {
  if (typeof raw !== "object" || raw === null) throw new ConfigError("config.json is not an object");
  const value = raw as Record<string, unknown>;
  const url = (name: string): string => {
    const field = value[name];
    if (typeof field !== "string" || !/^https?:\/\/[^\s]+$/.test(field)) {
      throw new ConfigError(`config.json: ${name} must be an http(s) URL`);
    }
    return field.replace(/\/+$/, "");
  };
  const clientId = value.clientId ?? "fleetpulse-console";
  if (typeof clientId !== "string" || clientId === "") {
    throw new ConfigError("config.json: clientId must be a non-empty string");
  }
  return { issuer: url("issuer"), apiUrl: url("apiUrl"), clientId };
}

export async function loadConfig(): Promise<ConsoleConfig> {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) throw new ConfigError(`/config.json answered ${response.status}`);
  return parseConfig(await response.json());
}
