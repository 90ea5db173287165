import { useQueryClient } from "@tanstack/react-query";
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { follow, staleKeys, type LiveStatus, type StreamEvent } from "./stream";

interface LiveState {
  status: LiveStatus;
  detail?: string;
  recent: StreamEvent[];
}

const LiveContext = createContext<LiveState>({ status: "connecting", recent: [] });
const KEEP = 200;

export function useLive(): LiveState {
  return useContext(LiveContext);
}

/** Follows the tenant's event stream while signed in; events refresh the queries they affect. */
export function LiveProvider({ apiUrl, token, children }: { apiUrl: string; token: () => string | null; children: ReactNode }) {
  const queryClient = useQueryClient();
  const [state, setState] = useState<LiveState>({ status: "connecting", recent: [] });
  useEffect(() => {
    const controller = new AbortController();
    void follow({
      apiUrl,
      token,
      signal: controller.signal,
      onStatus: (status, detail) => setState((s) => ({ ...s, status, detail })),
      onEvent: (event) => {
        for (const queryKey of staleKeys(event)) void queryClient.invalidateQueries({ queryKey });
        setState((s) => ({ ...s, recent: [event, ...s.recent].slice(0, KEEP) }));
      },
    });
    return () => controller.abort();
  }, [apiUrl, token, queryClient]);
  return <LiveContext.Provider value={state}>{children}</LiveContext.Provider>;
}
