import { Badge, Button, Group, Modal, Paper, SegmentedControl, Select, SimpleGrid, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useMemo, useState } from "react";
import { useNavigate, useParams } from "react-router-dom";
import { ifMatch, unwrap } from "../api/client";
import { useApi } from "../api/context";
import type { components } from "../api/schema";
import { useAuth } from "../auth/AuthProvider";
import { Chart, type Series } from "../components/Chart";
import { ago, Confirm, ConnectivityBadge, ProblemNotice, SecretOnce, when } from "../components/common";
import { formatTags, parseTags } from "../tags";

type Device = components["schemas"]["Device"];
/** Range -> bucket width: about 60-170 points whatever the range. */
const RANGES: Record<string, { seconds: number; bucket: string }> = {
  "1h": { seconds: 3600, bucket: "1m" },
  "6h": { seconds: 6 * 3600, bucket: "5m" },
  "24h": { seconds: 86400, bucket: "15m" },
  "7d": { seconds: 7 * 86400, bucket: "1h" },
};

export default function DevicePage() {
  const { deviceId = "" } = useParams();
  const api = useApi();
  const device = useQuery({
    queryKey: ["device", deviceId],
    queryFn: () => unwrap(api.GET("/api/v1/devices/{device_id}", { params: { path: { device_id: deviceId } } })),
  });
  if (device.error) {
    return (
      <Stack>
        <Title order={1} size="h2">
          Device {deviceId}
        </Title>
        <ProblemNotice error={device.error} />
      </Stack>
    );
  }
  if (!device.data) return <Text>Loading…</Text>;
  return <DeviceView device={device.data} />;
}

function DeviceView({ device }: { device: Device }) {
  const { may } = useAuth();
  const admin = may("tenant-admin") && device.status === "active";
  return (
    <Stack>
      <Group justify="space-between">
        <Stack gap={2}>
          <Title order={1} size="h2">
            {device.name ?? device.device_id}
          </Title>
          <Group gap="xs">
            <Text c="dimmed" size="sm">
              {device.device_id}
            </Text>
            {device.status === "decommissioned" ? <Badge color="gray">decommissioned</Badge> : <ConnectivityBadge value={device.connectivity ?? "offline"} />}
            <Text size="sm">last seen {ago(device.last_seen)}</Text>
          </Group>
        </Stack>
        {admin && <DeviceActions device={device} />}
      </Group>
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Paper withBorder p="md">
          <Title order={2} size="h4" mb="xs">
            Latest values
          </Title>
          <Table>
            <Table.Tbody>
              {Object.entries(device.last_values ?? {}).map(([metric, value]) => (
                <Table.Tr key={metric}>
                  <Table.Th scope="row">{metric}</Table.Th>
                  <Table.Td>{String(value)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
          {Object.keys(device.last_values ?? {}).length === 0 && <Text c="dimmed">No telemetry yet.</Text>}
        </Paper>
        <Paper withBorder p="md">
          <Title order={2} size="h4" mb="xs">
            Details
          </Title>
          <Table>
            <Table.Tbody>
              <Table.Tr>
                <Table.Th scope="row">Tags</Table.Th>
                <Table.Td data-testid="device-tags">{formatTags(device.tags) || "—"}</Table.Td>
              </Table.Tr>
              <Table.Tr>
                <Table.Th scope="row">Registered</Table.Th>
                <Table.Td>{when(device.registered_at)}</Table.Td>
              </Table.Tr>
              <Table.Tr>
                <Table.Th scope="row">Credentials version</Table.Th>
                <Table.Td>{device.credentials_version}</Table.Td>
              </Table.Tr>
            </Table.Tbody>
          </Table>
        </Paper>
      </SimpleGrid>
      <Telemetry device={device} />
      <History deviceId={device.device_id} />
    </Stack>
  );
}

function Telemetry({ device }: { device: Device }) {
  const api = useApi();
  const metrics = Object.keys(device.last_values ?? {}).filter((m) => typeof device.last_values?.[m] === "number" || typeof device.last_values?.[m] === "boolean");
  const [metric, setMetric] = useState<string | null>(metrics[0] ?? null);
  const [range, setRange] = useState("24h");
  const telemetry = useQuery({
    queryKey: ["device", device.device_id, "telemetry", metric, range],
    enabled: metric !== null,
    queryFn: () => {
      const to = new Date();
      const from = new Date(to.getTime() - RANGES[range].seconds * 1000);
      return unwrap(
        api.GET("/api/v1/devices/{device_id}/telemetry", {
          params: {
            path: { device_id: device.device_id },
            query: { metric: metric!, bucket: RANGES[range].bucket, from: from.toISOString(), to: to.toISOString() },
          },
        }),
      );
    },
  });
  const series = useMemo<Series | null>(() => {
    const buckets = telemetry.data?.buckets;
    if (!buckets) return null;
    return {
      from: new Date(telemetry.data!.from).getTime() / 1000,
      to: new Date(telemetry.data!.to).getTime() / 1000,
      times: buckets.map((b) => new Date(b.bucket).getTime() / 1000),
      avg: buckets.map((b) => b.avg ?? null),
      min: buckets.map((b) => b.min ?? null),
      max: buckets.map((b) => b.max ?? null),
    };
  }, [telemetry.data]);
  return (
    <Paper withBorder p="md">
      <Group justify="space-between" mb="sm">
        <Title order={2} size="h4">
          Telemetry
        </Title>
        <Group>
          <Select aria-label="Metric" data={metrics} value={metric} onChange={setMetric} placeholder="Metric" w={180} />
          <SegmentedControl aria-label="Range" data={Object.keys(RANGES)} value={range} onChange={setRange} />
        </Group>
      </Group>
      <ProblemNotice error={telemetry.error} />
      {metric === null && <Text c="dimmed">No metrics reported yet.</Text>}
      {series && series.times.length > 0 && <Chart series={series} label={metric ?? ""} />}
      {series && series.times.length === 0 && <Text c="dimmed">No readings in this range.</Text>}
      {telemetry.data && (
        <Text size="xs" c="dimmed">
          {telemetry.data.buckets?.length ?? 0} buckets of {telemetry.data.bucket}, aggregated by the API
        </Text>
      )}
    </Paper>
  );
}

function History({ deviceId }: { deviceId: string }) {
  const api = useApi();
  const events = useQuery({
    queryKey: ["device", deviceId, "events"],
    queryFn: () => unwrap(api.GET("/api/v1/devices/{device_id}/events", { params: { path: { device_id: deviceId }, query: { limit: 200 } } })),
  });
  return (
    <Paper withBorder p="md">
      <Title order={2} size="h4" mb="xs">
        Event history
      </Title>
      <ProblemNotice error={events.error} />
      <Table striped>
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Event</Table.Th>
            <Table.Th>When</Table.Th>
            <Table.Th>By</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {(events.data?.items ?? []).map((e) => (
            <Table.Tr key={e.event_id}>
              <Table.Td>{e.type}</Table.Td>
              <Table.Td>{when(e.recorded_at)}</Table.Td>
              <Table.Td>{e.actor ?? "—"}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Paper>
  );
}

function DeviceActions({ device }: { device: Device }) {
  const api = useApi();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [editing, setEditing] = useState(false);
  const [confirm, setConfirm] = useState<"rotate" | "decommission" | null>(null);
  const [secret, setSecret] = useState<string | null>(null);
  const path = { device_id: device.device_id };
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["device", device.device_id] });
  const rotate = useMutation({
    mutationFn: () => unwrap(api.POST("/api/v1/devices/{device_id}/rotate-credentials", { params: { path, header: ifMatch(device.version) } })),
    onSuccess: (result) => {
      setConfirm(null);
      setSecret(`${result.mqtt.username}\n${result.mqtt.password ?? ""}`);
      void refresh();
    },
  });
  const decommission = useMutation({
    mutationFn: () => unwrap(api.DELETE("/api/v1/devices/{device_id}", { params: { path, header: ifMatch(device.version) } })),
    onSuccess: () => {
      setConfirm(null);
      void queryClient.invalidateQueries({ queryKey: ["devices"] });
      void refresh();
      navigate("/fleet");
    },
  });
  return (
    <Group>
      <Button variant="default" onClick={() => setEditing(true)}>
        Edit
      </Button>
      <Button variant="default" onClick={() => setConfirm("rotate")}>
        Rotate credentials
      </Button>
      <Button color="red" variant="light" onClick={() => setConfirm("decommission")}>
        Decommission
      </Button>
      <EditDevice device={device} opened={editing} onClose={() => setEditing(false)} />
      <Confirm opened={confirm === "rotate"} title="Rotate credentials" action="Rotate" busy={rotate.isPending} onConfirm={() => rotate.mutate()} onCancel={() => setConfirm(null)}>
        <Text>The current password stops working at once; the device needs the new one.</Text>
        <ProblemNotice error={rotate.error} />
      </Confirm>
      <Confirm opened={confirm === "decommission"} title="Decommission device" action="Decommission" busy={decommission.isPending} onConfirm={() => decommission.mutate()} onCancel={() => setConfirm(null)}>
        <Text>Its credentials stop working and its telemetry is refused. This cannot be undone.</Text>
        <ProblemNotice error={decommission.error} />
      </Confirm>
      <SecretOnce label="New MQTT user name and password" value={secret} onDone={() => setSecret(null)} caption="First line: MQTT user name (also the client id). Second line: password." />
    </Group>
  );
}

function EditDevice({ device, opened, onClose }: { device: Device; opened: boolean; onClose: () => void }) {
  const api = useApi();
  const queryClient = useQueryClient();
  const [name, setName] = useState(device.name ?? "");
  const [tags, setTags] = useState(formatTags(device.tags));
  const [tagError, setTagError] = useState<string | null>(null);
  const save = useMutation({
    mutationFn: (body: { name: string | null; tags: Record<string, string> }) =>
      unwrap(api.PATCH("/api/v1/devices/{device_id}", { params: { path: { device_id: device.device_id }, header: ifMatch(device.version) }, body })),
    onSuccess: (updated) => {
      queryClient.setQueryData(["device", device.device_id], updated);
      void queryClient.invalidateQueries({ queryKey: ["devices"] });
      onClose();
    },
  });
  const submit = () => {
    try {
      const parsed = parseTags(tags);
      setTagError(null);
      save.mutate({ name: name.trim() || null, tags: parsed });
    } catch (error) {
      setTagError((error as Error).message);
    }
  };
  return (
    <Modal opened={opened} onClose={onClose} title={`Edit ${device.device_id}`}>
      <Stack>
        <TextInput label="Name" value={name} onChange={(e) => setName(e.currentTarget.value)} />
        <TextInput label="Tags" value={tags} onChange={(e) => setTags(e.currentTarget.value)} error={tagError} description="key=value, comma-separated; replaces every tag" />
        <ProblemNotice error={save.error} />
        <Group justify="flex-end">
          <Button onClick={submit} loading={save.isPending}>
            Save
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}
