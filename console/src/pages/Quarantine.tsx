import { Badge, Button, Code, Group, Paper, Select, SimpleGrid, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { useMemo, useState } from "react";
import { unwrap } from "../api/client";
import { useApi } from "../api/context";
import { ProblemNotice, when } from "../components/common";

const REASONS = [
  "BAD_TOPIC",
  "PAYLOAD_TOO_LARGE",
  "BAD_JSON",
  "SCHEMA_INVALID",
  "UNKNOWN_DEVICE",
  "DEVICE_DECOMMISSIONED",
  "RATE_LIMITED",
  "TIMESTAMP_OUT_OF_RANGE",
] as const;
type Reason = (typeof REASONS)[number];

function preview(base64: string): string {
  try {
    const text = new TextDecoder("utf-8", { fatal: false }).decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    return text.length > 160 ? text.slice(0, 160) + "…" : text;
  } catch {
    return "(binary)";
  }
}

export default function Quarantine() {
  const api = useApi();
  const [device, setDevice] = useState("");
  const [reason, setReason] = useState<Reason | null>(null);
  const [debouncedDevice] = useDebouncedValue(device.trim(), 300);
  const deviceFilter = /^[A-Za-z0-9_-]{1,64}$/.test(debouncedDevice) ? debouncedDevice : undefined;
  const rows = useInfiniteQuery({
    queryKey: ["quarantine", deviceFilter, reason],
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET("/api/v1/quarantine", {
          params: { query: { device_id: deviceFilter, reason: reason ?? undefined, limit: 100, cursor: pageParam ?? undefined } },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const counts = useQuery({
    queryKey: ["quarantine-counts"],
    queryFn: () => unwrap(api.GET("/api/v1/quarantine/counts", { params: { query: {} } })),
  });
  const totals = useMemo(() => {
    const sums = new Map<string, number>();
    for (const c of counts.data?.items ?? []) sums.set(c.reason, (sums.get(c.reason) ?? 0) + c.stored + c.suppressed);
    return [...sums.entries()].sort((a, b) => b[1] - a[1]);
  }, [counts.data]);
  const items = rows.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <Stack>
      <Title order={1} size="h2">
        Quarantine
      </Title>
      <Text size="sm" c="dimmed">
        Messages that were not stored as telemetry, with the reason. Counts cover the last 24 hours, including messages only counted (beyond the per-minute row cap).
      </Text>
      <ProblemNotice error={counts.error} />
      <SimpleGrid cols={{ base: 2, sm: 4 }} data-testid="quarantine-counts">
        {totals.map(([r, n]) => (
          <Paper withBorder p="sm" key={r}>
            <Text size="xs" c="dimmed">
              {r}
            </Text>
            <Text fw={700} size="lg">
              {n}
            </Text>
          </Paper>
        ))}
      </SimpleGrid>
      {counts.data && totals.length === 0 && <Text c="dimmed">Nothing quarantined in the last 24 hours.</Text>}
      <Group align="end">
        <TextInput label="Device" placeholder="truck-042" value={device} onChange={(e) => setDevice(e.currentTarget.value)} />
        <Select label="Reason" placeholder="Any reason" clearable data={[...REASONS]} value={reason} onChange={(v) => setReason(v as Reason | null)} />
      </Group>
      <ProblemNotice error={rows.error} title="Quarantine could not be loaded" />
      <Table striped>
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Received</Table.Th>
            <Table.Th>Reason</Table.Th>
            <Table.Th>Device</Table.Th>
            <Table.Th>Detail</Table.Th>
            <Table.Th>Payload</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {items.map((q) => (
            <Table.Tr key={q.id} data-testid="quarantine-row">
              <Table.Td>{when(q.received_at)}</Table.Td>
              <Table.Td>
                <Badge variant="light" color="orange">
                  {q.reason}
                </Badge>
              </Table.Td>
              <Table.Td>{q.device_id ?? "—"}</Table.Td>
              <Table.Td>{q.detail}</Table.Td>
              <Table.Td>
                <Code>{preview(q.payload_base64)}</Code>
                <Text size="xs" c="dimmed">
                  {q.payload_size} bytes
                </Text>
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      {rows.data && items.length === 0 && <Text c="dimmed">No quarantined messages match.</Text>}
      {rows.hasNextPage && (
        <Button variant="default" w="fit-content" onClick={() => void rows.fetchNextPage()} loading={rows.isFetchingNextPage}>
          Load more
        </Button>
      )}
    </Stack>
  );
}
