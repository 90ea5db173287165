import { Anchor, Badge, Box, Button, Group, Modal, Select, Stack, Text, TextInput, Title } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { useInfiniteQuery, useMutation, useQueryClient } from "@tanstack/react-query";
import { useVirtualizer } from "@tanstack/react-virtual";
import { memo, useEffect, useMemo, useRef, useState } from "react";
import { Link } from "react-router-dom";
import { unwrap } from "../api/client";
import { useApi } from "../api/context";
import type { components } from "../api/schema";
import { useAuth } from "../auth/AuthProvider";
import { ago, ConnectivityBadge, ProblemNotice, SecretOnce } from "../components/common";
import { formatTags, parseTags } from "../tags";

type Device = components["schemas"]["Device"];
type Connectivity = "online" | "stale" | "offline";
const PAGE = 100;
const ROW_HEIGHT = 52;
const COLUMNS = "minmax(140px,1.2fr) minmax(120px,1fr) 110px 110px minmax(160px,1.6fr) minmax(140px,1.2fr)";

export default function Fleet() {
  const api = useApi();
  const { may } = useAuth();
  const [search, setSearch] = useState("");
  const [tag, setTag] = useState("");
  const [connectivity, setConnectivity] = useState<Connectivity | null>(null);
  const [debouncedSearch] = useDebouncedValue(search.trim(), 250);
  const [debouncedTag] = useDebouncedValue(tag.trim(), 250);
  const [registering, setRegistering] = useState(false);
  const tagFilter = /^[A-Za-z0-9_.-]{1,64}[:=].*$/.test(debouncedTag) ? [debouncedTag.replace("=", ":")] : undefined;

  const devices = useInfiniteQuery({
    queryKey: ["devices", "list", debouncedSearch, tagFilter?.[0] ?? "", connectivity],
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET("/api/v1/devices", {
          params: {
            query: {
              limit: PAGE,
              cursor: pageParam ?? undefined,
              search: debouncedSearch || undefined,
              tag: tagFilter,
              connectivity: connectivity ?? undefined,
            },
          },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const rows = useMemo(() => devices.data?.pages.flatMap((p) => p.items) ?? [], [devices.data]);

  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 10,
  });
  const items = virtualizer.getVirtualItems();
  const lastIndex = items.length ? items[items.length - 1].index : -1;
  useEffect(() => {
    if (lastIndex >= rows.length - 20 && devices.hasNextPage && !devices.isFetchingNextPage) void devices.fetchNextPage();
  }, [lastIndex, rows.length, devices]);

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">
          Fleet
        </Title>
        {may("tenant-admin") && <Button onClick={() => setRegistering(true)}>Register device</Button>}
      </Group>
      <Group align="end">
        <TextInput label="Search" placeholder="Device id or name" value={search} onChange={(e) => setSearch(e.currentTarget.value)} />
        <TextInput
          label="Tag"
          placeholder="site=berlin"
          value={tag}
          onChange={(e) => setTag(e.currentTarget.value)}
          error={debouncedTag && !tagFilter ? "key=value" : undefined}
        />
        <Select
          label="Status"
          placeholder="Any"
          clearable
          data={["online", "stale", "offline"]}
          value={connectivity}
          onChange={(v) => setConnectivity(v as Connectivity | null)}
        />
        <Text size="sm" c="dimmed" data-testid="loaded-count" aria-live="polite">
          {rows.length} loaded{devices.hasNextPage ? ", more on scroll" : ""}
        </Text>
      </Group>
      <ProblemNotice error={devices.error} title="Devices could not be loaded" />
      <Box role="table" aria-label="Devices" aria-rowcount={rows.length + 1} style={{ border: "1px solid var(--mantine-color-gray-3)", borderRadius: 4 }}>
        <Box role="row" style={{ display: "grid", gridTemplateColumns: COLUMNS, gap: 8, padding: "8px 12px", background: "var(--mantine-color-gray-0)", fontWeight: 600 }}>
          {["Device", "Name", "Status", "Last seen", "Last values", "Tags"].map((h) => (
            <Text role="columnheader" size="sm" fw={600} key={h}>
              {h}
            </Text>
          ))}
        </Box>
        <div ref={scroller} data-testid="fleet-scroller" style={{ height: "calc(100vh - 300px)", minHeight: 240, overflow: "auto" }} role="rowgroup">
          <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
            {items.map((item) => {
              const device = rows[item.index];
              return (
                <DeviceRow key={device.device_id} device={device} top={item.start} index={item.index} />
              );
            })}
          </div>
          {!devices.isLoading && rows.length === 0 && (
            <Text p="md" c="dimmed">
              No devices match.
            </Text>
          )}
        </div>
      </Box>
      <RegisterDevice opened={registering} onClose={() => setRegistering(false)} />
    </Stack>
  );
}

/** A positioned row; only its position changes while scrolling, so its cells are memoised. */
function DeviceRow({ device, top, index }: { device: Device; top: number; index: number }) {
  return (
    <div
      role="row"
      aria-rowindex={index + 2}
      data-testid="device-row"
      style={{
        position: "absolute",
        top: 0,
        left: 0,
        right: 0,
        transform: `translateY(${top}px)`,
        height: ROW_HEIGHT,
        display: "grid",
        gridTemplateColumns: COLUMNS,
        gap: 8,
        alignItems: "center",
        padding: "0 12px",
        borderTop: "1px solid var(--mantine-color-gray-2)",
      }}
    >
      <DeviceCells device={device} />
    </div>
  );
}

const DeviceCells = memo(function DeviceCells({ device }: { device: Device }) {
  const values = Object.entries(device.last_values ?? {}).slice(0, 4);
  return (
    <>
      <Box role="cell" style={{ minWidth: 0 }}>
        <Anchor component={Link} to={`/devices/${encodeURIComponent(device.device_id)}`} size="sm" truncate display="block">
          {device.device_id}
        </Anchor>
      </Box>
      <Text role="cell" size="sm" truncate>
        {device.name ?? "—"}
      </Text>
      <Box role="cell">
        {device.status === "decommissioned" ? <Badge color="gray">decommissioned</Badge> : <ConnectivityBadge value={device.connectivity ?? "offline"} />}
      </Box>
      <Text role="cell" size="sm">
        {ago(device.last_seen)}
      </Text>
      <Text role="cell" size="sm" truncate>
        {values.map(([k, v]) => `${k} ${String(v)}`).join(" · ") || "—"}
      </Text>
      <Text role="cell" size="sm" c="dimmed" truncate>
        {formatTags(device.tags) || "—"}
      </Text>
    </>
  );
});

function RegisterDevice({ opened, onClose }: { opened: boolean; onClose: () => void }) {
  const api = useApi();
  const queryClient = useQueryClient();
  const [deviceId, setDeviceId] = useState("");
  const [name, setName] = useState("");
  const [tags, setTags] = useState("");
  const [tagError, setTagError] = useState<string | null>(null);
  const [password, setPassword] = useState<string | null>(null);
  const register = useMutation({
    mutationFn: (body: { device_id: string; name?: string; tags: Record<string, string> }) =>
      unwrap(api.POST("/api/v1/devices", { body })),
    onSuccess: (device) => {
      void queryClient.invalidateQueries({ queryKey: ["devices"] });
      setPassword(device.mqtt.password ? `${device.mqtt.username}\n${device.mqtt.password}` : "(certificate issued)");
      onClose();
      setDeviceId("");
      setName("");
      setTags("");
    },
  });
  const submit = () => {
    try {
      const parsed = parseTags(tags);
      setTagError(null);
      register.mutate({ device_id: deviceId.trim(), name: name.trim() || undefined, tags: parsed });
    } catch (error) {
      setTagError(String((error as Error).message));
    }
  };
  return (
    <>
      <Modal opened={opened} onClose={onClose} title="Register device">
        <Stack>
          <TextInput label="Device id" required value={deviceId} onChange={(e) => setDeviceId(e.currentTarget.value)} description="Letters, digits, - and _" />
          <TextInput label="Name" value={name} onChange={(e) => setName(e.currentTarget.value)} />
          <TextInput label="Tags" placeholder="site=berlin, kind=reefer" value={tags} onChange={(e) => setTags(e.currentTarget.value)} error={tagError} />
          <ProblemNotice error={register.error} />
          <Group justify="flex-end">
            <Button onClick={submit} loading={register.isPending}>
              Register
            </Button>
          </Group>
        </Stack>
      </Modal>
      <SecretOnce label="MQTT user name and password" value={password} onDone={() => setPassword(null)} caption="First line: MQTT user name (also the client id). Second line: password." />
    </>
  );
}
