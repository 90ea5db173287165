import { Badge, Stack, Table, Text, Title } from "@mantine/core";
import { useLive } from "../live/LiveProvider";
import { when } from "../components/common";

export default function Live() {
  const { status, recent } = useLive();
  return (
    <Stack>
      <Title order={1} size="h2">
        Live
      </Title>
      <Text size="sm">
        Events of your tenant as they happen (server-sent events), newest first. Stream: <Badge variant="dot">{status}</Badge>
      </Text>
      <Table striped data-testid="live-table">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Position</Table.Th>
            <Table.Th>Event</Table.Th>
            <Table.Th>Stream</Table.Th>
            <Table.Th>Recorded</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {recent.map((e) => (
            <Table.Tr key={e.position} data-testid="live-row">
              <Table.Td>{e.position}</Table.Td>
              <Table.Td>{e.type}</Table.Td>
              <Table.Td>{e.stream_id}</Table.Td>
              <Table.Td>{when(e.recorded_at)}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      {recent.length === 0 && <Text c="dimmed">Waiting for events…</Text>}
    </Stack>
  );
}
