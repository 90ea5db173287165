/** Sign-in with OIDC authorization code + PKCE (oidc-client-ts), token refresh, sign-out. */
import { User, UserManager, WebStorageStateStore } from "oidc-client-ts";
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import type { ConsoleConfig } from "../config";
import { accessOf, may, type Access, type Role } from "./claims";

export const CALLBACK_PATH = "/callback";

export interface AuthState {
  user: User | null;
  access: Access | null;
  /** The current access token (read at request time, so refreshed tokens are used at once). */
  token: () => string | null;
  may: (role: Role) => boolean;
  signIn: () => Promise<void>;
  signOut: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function useAuth(): AuthState {
  const value = useContext(AuthContext);
  if (value === null) throw new Error("useAuth outside <AuthProvider>");
  return value;
}

export function createUserManager(config: ConsoleConfig): UserManager {
  const origin = window.location.origin;
  return new UserManager({
    authority: config.issuer,
    client_id: config.clientId,
    redirect_uri: origin + CALLBACK_PATH,
    post_logout_redirect_uri: origin + "/",
    response_type: "code",
    scope: "openid profile",
    automaticSilentRenew: true, // with a refresh token: the refresh_token grant, no iframe
    userStore: new WebStorageStateStore({ store: window.sessionStorage }),
    loadUserInfo: false,
  });
}

type Phase = { kind: "loading" } | { kind: "ready" } | { kind: "failed"; message: string };

export function AuthProvider({ config, children, fallback }: {
  config: ConsoleConfig;
  children: ReactNode;
  fallback: (phase: Phase, signIn: () => Promise<void>) => ReactNode;
}) {
  const manager = useMemo(() => createUserManager(config), [config]);
  const [user, setUser] = useState<User | null>(null);
  const [phase, setPhase] = useState<Phase>({ kind: "loading" });
  const latest = useRef<User | null>(null);
  latest.current = user;

  useEffect(() => {
    const loaded = (next: User) => setUser(next);
    const unloaded = () => setUser(null);
    manager.events.addUserLoaded(loaded);
    manager.events.addUserUnloaded(unloaded);
    manager.events.addSilentRenewError(() => void manager.removeUser());
    void restore(manager)
      .then((restored) => {
        setUser(restored);
        setPhase({ kind: "ready" });
      })
      .catch((error: unknown) => setPhase({ kind: "failed", message: String(error) }));
    return () => {
      manager.events.removeUserLoaded(loaded);
      manager.events.removeUserUnloaded(unloaded);
    };
  }, [manager]);

  const signIn = useCallback(
    () => manager.signinRedirect({ state: window.location.pathname + window.location.search }),
    [manager],
  );
  const signOut = useCallback(async () => {
    const current = latest.current;
    await manager.removeUser();
    await manager.signoutRedirect({ id_token_hint: current?.id_token });
  }, [manager]);

  const token = useCallback(() => latest.current?.access_token ?? null, []);
  const state = useMemo<AuthState>(() => {
    const access = user ? accessOf(user.access_token) : null;
    const roles = access && "claims" in access ? access.claims.roles : [];
    return {
      user,
      access,
      token,
      may: (role) => may(roles, role),
      signIn,
      signOut,
    };
  }, [user, token, signIn, signOut]);

  if (phase.kind !== "ready" || user === null) return <>{fallback(phase, signIn)}</>;
  return <AuthContext.Provider value={state}>{children}</AuthContext.Provider>;
}

/** Finish a redirect back from the issuer, or pick up the stored session. */
async function restore(manager: UserManager): Promise<User | null> {
  if (window.location.pathname === CALLBACK_PATH) {
    const user = await manager.signinRedirectCallback();
    const back = typeof user.state === "string" && user.state.startsWith("/") ? user.state : "/";
    window.history.replaceState(null, "", back === CALLBACK_PATH ? "/" : back);
    return user;
  }
  const user = await manager.getUser();
  if (user === null || !user.expired) return user;
  try {
    return await manager.signinSilent(); // refresh token grant
  } catch {
    await manager.removeUser();
    return null;
  }
}
