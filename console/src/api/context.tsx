import { createContext, useContext, useMemo, type ReactNode } from "react";
import { createApi, type Api, type TokenSource } from "./client";

const ApiContext = createContext<Api | null>(null);

export function ApiProvider({ apiUrl, token, children }: { apiUrl: string; token: TokenSource; children: ReactNode }) {
  const api = useMemo(() => createApi(apiUrl, token), [apiUrl, token]);
  return <ApiContext.Provider value={api}>{children}</ApiContext.Provider>;
}

export function useApi(): Api {
  const api = useContext(ApiContext);
  if (api === null) throw new Error("useApi outside <ApiProvider>");
  return api;
}
