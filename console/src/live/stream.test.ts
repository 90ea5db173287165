import { describe, expect, it } from "vitest";
import { follow, staleKeys, type LiveStatus, type StreamEvent } from "./stream";

function sse(chunks: string[]): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
      controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
}

describe("follow", () => {
  it("parses frames split across chunks and resumes with Last-Event-ID", async () => {
    const controller = new AbortController();
    const requests: Record<string, string>[] = [];
    const events: StreamEvent[] = [];
    const statuses: LiveStatus[] = [];
    const frame = (position: number) =>
      `id: ${position}\ndata: {"position":${position},"type":"AlertOpened","stream_id":"alert-acme-a${position}","version":1,"recorded_at":"t"}\n\n`;
    const fetcher = (async (_url: string, init: RequestInit) => {
      requests.push({ ...(init.headers as Record<string, string>) });
      if (requests.length === 1) {
        const whole = "retry: 1\n\n" + frame(7) + frame(8);
        return sse([whole.slice(0, 20), whole.slice(20, 90), whole.slice(90)]);
      }
      controller.abort();
      return sse([]);
    }) as typeof fetch;
    await follow({
      apiUrl: "http://api",
      token: () => "tok",
      onEvent: (e) => events.push(e),
      onStatus: (s) => statuses.push(s),
      signal: controller.signal,
      fetcher,
    });
    expect(events.map((e) => e.position)).toEqual([7, 8]);
    expect(requests[0]).toMatchObject({ Authorization: "Bearer tok" });
    expect(requests[0]["Last-Event-ID"]).toBeUndefined();
    expect(requests[1]["Last-Event-ID"]).toBe("8");
    expect(statuses.slice(0, 3)).toEqual(["connecting", "live", "reconnecting"]);
  });
});

describe("staleKeys", () => {
  it("maps event types to the queries they change", () => {
    const base = { position: 1, stream_id: "x", version: 1, recorded_at: "t" };
    expect(staleKeys({ ...base, type: "AlertAcknowledged", data: { alert_id: "a1" } })).toEqual([["alerts"], ["alert", "a1"]]);
    expect(staleKeys({ ...base, type: "DeviceUpdated" })).toEqual([["devices"], ["device"]]);
    expect(staleKeys({ ...base, type: "TenantCreated" })).toEqual([]);
  });
});
