import { Anchor, Badge, Button, Group, NumberInput, Paper, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useParams } from "react-router-dom";
import { ifMatch, unwrap } from "../api/client";
import { useApi } from "../api/context";
import type { components } from "../api/schema";
import { useAuth } from "../auth/AuthProvider";
import { ProblemNotice, SeverityBadge, StatusBadge, when } from "../components/common";

type Alert = components["schemas"]["AlertWithEvents"];

export default function AlertDetail() {
  const { alertId = "" } = useParams();
  const api = useApi();
  const alert = useQuery({
    queryKey: ["alert", alertId],
    queryFn: () => unwrap(api.GET("/api/v1/alerts/{alert_id}", { params: { path: { alert_id: alertId } } })),
  });
  const deliveries = useQuery({
    queryKey: ["deliveries", alertId],
    queryFn: () => unwrap(api.GET("/api/v1/deliveries", { params: { query: { alert_id: alertId, limit: 100 } } })),
  });
  const integrations = useQuery({
    queryKey: ["integrations"],
    queryFn: () => unwrap(api.GET("/api/v1/integrations", { params: { query: { limit: 500 } } })),
  });
  const integrationName = (id: string) => integrations.data?.items.find((i) => i.integration_id === id)?.name ?? id;
  if (alert.error) {
    return (
      <Stack>
        <Title order={1} size="h2">
          Alert {alertId}
        </Title>
        <ProblemNotice error={alert.error} />
      </Stack>
    );
  }
  if (!alert.data) return <Text>Loading…</Text>;
  const a = alert.data;
  return (
    <Stack>
      <Group justify="space-between">
        <Group>
          <Title order={1} size="h2">
            Alert {a.alert_id}
          </Title>
          <SeverityBadge value={a.severity} />
          <StatusBadge value={a.status} />
        </Group>
        <AlertActions alert={a} />
      </Group>
      <Paper withBorder p="md">
        <SimpleGrid cols={{ base: 1, sm: 3 }}>
          <Field label="Device">
            <Anchor component={Link} to={`/devices/${encodeURIComponent(a.device_id)}`}>
              {a.device_id}
            </Anchor>
          </Field>
          <Field label="Rule">{a.rule_id}</Field>
          <Field label="Opened">{when(a.opened_at)}</Field>
          <Field label="Acknowledged">{when(a.acknowledged_at)}</Field>
          <Field label="Silenced until">{when(a.silenced_until)}</Field>
          <Field label="Resolved">{when(a.resolved_at)}</Field>
        </SimpleGrid>
      </Paper>
      <Paper withBorder p="md">
        <Title order={2} size="h4" mb="xs">
          Event history
        </Title>
        <Table striped>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Event</Table.Th>
              <Table.Th>When</Table.Th>
              <Table.Th>By</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {a.events.map((e) => (
              <Table.Tr key={e.event_id} data-testid="alert-event">
                <Table.Td>{e.type}</Table.Td>
                <Table.Td>{when(e.recorded_at)}</Table.Td>
                <Table.Td>{e.actor ?? "—"}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Paper>
      <Paper withBorder p="md">
        <Title order={2} size="h4" mb="xs">
          Deliveries
        </Title>
        <ProblemNotice error={deliveries.error} />
        {(deliveries.data?.items ?? []).map((d) => (
          <Stack key={d.delivery_id} gap={4} mb="sm" data-testid="delivery">
            <Group gap="xs">
              <Text fw={600} size="sm">
                {integrationName(d.integration_id)}
              </Text>
              <Badge color={d.status === "succeeded" ? "green" : d.status === "abandoned" ? "red" : "gray"} variant="light">
                {d.status}
              </Badge>
              <Text size="sm" c="dimmed">
                {d.attempt_count} attempt(s)
              </Text>
            </Group>
            <Table withTableBorder>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>#</Table.Th>
                  <Table.Th>At</Table.Th>
                  <Table.Th>Status</Table.Th>
                  <Table.Th>Latency</Table.Th>
                  <Table.Th>Error</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {d.attempts.map((t) => (
                  <Table.Tr key={t.attempt}>
                    <Table.Td>{t.attempt}</Table.Td>
                    <Table.Td>{when(t.attempted_at)}</Table.Td>
                    <Table.Td>{t.status_code ?? "—"}</Table.Td>
                    <Table.Td>{t.latency_ms != null ? `${Math.round(t.latency_ms)} ms` : "—"}</Table.Td>
                    <Table.Td>{t.error ?? ""}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Stack>
        ))}
        {deliveries.data && deliveries.data.items.length === 0 && <Text c="dimmed">No deliveries (yet).</Text>}
      </Paper>
    </Stack>
  );
}

function Field({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <Stack gap={0}>
      <Text size="xs" c="dimmed">
        {label}
      </Text>
      <Text size="sm" component="div">
        {children}
      </Text>
    </Stack>
  );
}

function AlertActions({ alert }: { alert: Alert }) {
  const { may } = useAuth();
  const api = useApi();
  const queryClient = useQueryClient();
  const [minutes, setMinutes] = useState<number | string>(60);
  const path = { alert_id: alert.alert_id };
  const header = ifMatch(alert.version);
  const done = () => {
    void queryClient.invalidateQueries({ queryKey: ["alert", alert.alert_id] });
    void queryClient.invalidateQueries({ queryKey: ["alerts"] });
  };
  const act = useMutation({
    mutationFn: (action: "ack" | "silence" | "close") => {
      if (action === "ack") return unwrap(api.POST("/api/v1/alerts/{alert_id}/ack", { params: { path, header } }));
      if (action === "close") return unwrap(api.POST("/api/v1/alerts/{alert_id}/close", { params: { path, header } }));
      return unwrap(api.POST("/api/v1/alerts/{alert_id}/silence", { params: { path, header }, body: { duration_s: Number(minutes) * 60 } }));
    },
    onSuccess: done,
  });
  if (!may("operator") || alert.status === "closed") return null;
  return (
    <Stack gap="xs" align="flex-end">
      <Group align="end">
        {alert.status === "open" && (
          <Button onClick={() => act.mutate("ack")} loading={act.isPending && act.variables === "ack"}>
            Acknowledge
          </Button>
        )}
        <NumberInput label="Silence (minutes)" min={1} max={43200} value={minutes} onChange={setMinutes} w={150} />
        <Button variant="default" onClick={() => act.mutate("silence")} loading={act.isPending && act.variables === "silence"}>
          Silence
        </Button>
        <Button variant="default" onClick={() => act.mutate("close")} loading={act.isPending && act.variables === "close"}>
          Close
        </Button>
      </Group>
      <ProblemNotice error={act.error} />
    </Stack>
  );
}
