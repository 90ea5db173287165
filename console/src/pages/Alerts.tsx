import { Anchor, Button, Group, SegmentedControl, Stack, Table, Text, Title } from "@mantine/core";
import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router-dom";
import { unwrap } from "../api/client";
import { useApi } from "../api/context";
import { ProblemNotice, SeverityBadge, StatusBadge, when } from "../components/common";

const STATUSES = ["open", "acknowledged", "resolved", "closed", "all"] as const;
type Status = (typeof STATUSES)[number];

export default function Alerts() {
  const api = useApi();
  const [status, setStatus] = useState<Status>("open");
  const alerts = useInfiniteQuery({
    queryKey: ["alerts", status],
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET("/api/v1/alerts", {
          params: { query: { status: status === "all" ? undefined : status, limit: 100, cursor: pageParam ?? undefined } },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const rows = alerts.data?.pages.flatMap((p) => p.items) ?? [];
  const rules = useQuery({ queryKey: ["rules"], queryFn: () => unwrap(api.GET("/api/v1/rules", { params: { query: { limit: 500 } } })) });
  const ruleName = (id: string) => rules.data?.items.find((r) => r.rule_id === id)?.name ?? id;
  return (
    <Stack>
      <Title order={1} size="h2">
        Alerts
      </Title>
      <SegmentedControl aria-label="Alert status" data={[...STATUSES]} value={status} onChange={(v) => setStatus(v as Status)} w="fit-content" />
      <ProblemNotice error={alerts.error} title="Alerts could not be loaded" />
      <Table striped highlightOnHover data-testid="alerts-table">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Severity</Table.Th>
            <Table.Th>Alert</Table.Th>
            <Table.Th>Device</Table.Th>
            <Table.Th>Rule</Table.Th>
            <Table.Th>Status</Table.Th>
            <Table.Th>Opened</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {rows.map((a) => (
            <Table.Tr key={a.alert_id} data-testid="alert-row">
              <Table.Td>
                <SeverityBadge value={a.severity} />
              </Table.Td>
              <Table.Td>
                <Anchor component={Link} to={`/alerts/${a.alert_id}`} size="sm">
                  {a.alert_id}
                </Anchor>
              </Table.Td>
              <Table.Td>
                <Anchor component={Link} to={`/devices/${encodeURIComponent(a.device_id)}`} size="sm">
                  {a.device_id}
                </Anchor>
              </Table.Td>
              <Table.Td>{ruleName(a.rule_id)}</Table.Td>
              <Table.Td>
                <StatusBadge value={a.status} />
              </Table.Td>
              <Table.Td>{when(a.opened_at)}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      {!alerts.isLoading && rows.length === 0 && <Text c="dimmed">No {status === "all" ? "" : status} alerts.</Text>}
      {alerts.hasNextPage && (
        <Group>
          <Button variant="default" onClick={() => void alerts.fetchNextPage()} loading={alerts.isFetchingNextPage}>
            Load more
          </Button>
        </Group>
      )}
    </Stack>
  );
}
