/** The tenant's live events: GET /api/v1/events/stream (server-sent events) read with fetch, so
 * the bearer token goes in a header like every call; reconnects resume with Last-Event-ID. */
import { createParser } from "eventsource-parser";

export interface StreamEvent {
  position: number;
  type: string;
  stream_id: string;
  version: number;
  recorded_at: string;
  data?: Record<string, unknown>;
}

export type LiveStatus = "connecting" | "live" | "reconnecting" | "refused";

export interface StreamOptions {
  apiUrl: string;
  token: () => string | null;
  onEvent: (event: StreamEvent) => void;
  onStatus: (status: LiveStatus, detail?: string) => void;
  signal: AbortSignal;
  fetcher?: typeof fetch;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });

/** Follow the stream until ``signal`` aborts; returns the last event id seen. */
export async function follow(options: StreamOptions): Promise<string | null> {
  const { apiUrl, token, onEvent, onStatus, signal } = options;
  const fetcher = options.fetcher ?? fetch;
  let lastId: string | null = null;
  let retryMs = 2000;
  while (!signal.aborted) {
    onStatus(lastId === null ? "connecting" : "reconnecting");
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      const bearer = token();
      if (bearer) headers.Authorization = `Bearer ${bearer}`;
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await fetcher(`${apiUrl}/api/v1/events/stream`, { headers, signal, cache: "no-store" });
      if (!response.ok || response.body === null) {
        onStatus("refused", `HTTP ${response.status}`);
      } else {
        onStatus("live");
        const parser = createParser({
          onEvent(message) {
            if (message.id) lastId = message.id;
            onEvent(JSON.parse(message.data) as StreamEvent);
          },
          onRetry(ms) {
            retryMs = ms;
          },
        });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parser.feed(value);
        }
      }
    } catch (error) {
      if (signal.aborted) break;
      onStatus("reconnecting", String(error));
    }
    await sleep(retryMs, signal);
  }
  return lastId;
}

/** The query keys an event makes stale (what the console refetches). */
export function staleKeys(event: StreamEvent): string[][] {
  const id = (key: string) => (typeof event.data?.[key] === "string" ? (event.data[key] as string) : null);
  if (event.type.startsWith("Alert")) {
    const alert = id("alert_id");
    return [["alerts"], ...(alert ? [["alert", alert]] : [])];
  }
  if (event.type.startsWith("Delivery")) return [["deliveries"]];
  if (event.type.startsWith("Device")) return [["devices"], ["device"]];
  if (event.type.startsWith("Rule")) return [["rules"]];
  if (event.type.startsWith("Integration")) return [["integrations"]];
  if (event.type.startsWith("Route")) return [["routes"]];
  return [];
}
