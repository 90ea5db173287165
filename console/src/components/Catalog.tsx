/** The list + create/edit/delete frame shared by rules, integrations and routes. */
import { Button, Group, Modal, Stack, Table, Text, Title } from "@mantine/core";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type ReactNode } from "react";
import { useAuth } from "../auth/AuthProvider";
import { Confirm, ProblemNotice } from "./common";

export interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
}

export interface CatalogProps<T> {
  title: string;
  noun: string;
  queryKey: string;
  list: () => Promise<{ items: T[] }>;
  id: (row: T) => string;
  columns: Column<T>[];
  remove: (row: T) => Promise<unknown>;
  /** The create/edit form; calls done() when saved. */
  form: (props: { row: T | null; done: () => void }) => ReactNode;
}

export function Catalog<T>({ title, noun, queryKey, list, id, columns, remove, form }: CatalogProps<T>) {
  const { may } = useAuth();
  const admin = may("tenant-admin");
  const queryClient = useQueryClient();
  const rows = useQuery({ queryKey: [queryKey], queryFn: list });
  const [editing, setEditing] = useState<T | "new" | null>(null);
  const [deleting, setDeleting] = useState<T | null>(null);
  const deletion = useMutation({
    mutationFn: (row: T) => remove(row),
    onSuccess: () => {
      setDeleting(null);
      void queryClient.invalidateQueries({ queryKey: [queryKey] });
    },
  });
  const done = () => {
    setEditing(null);
    void queryClient.invalidateQueries({ queryKey: [queryKey] });
  };
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">
          {title}
        </Title>
        {admin && <Button onClick={() => setEditing("new")}>New {noun}</Button>}
      </Group>
      <ProblemNotice error={rows.error} title={`${title} could not be loaded`} />
      <Table striped highlightOnHover>
        <Table.Thead>
          <Table.Tr>
            {columns.map((c) => (
              <Table.Th key={c.header}>{c.header}</Table.Th>
            ))}
            {admin && <Table.Th>Actions</Table.Th>}
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {(rows.data?.items ?? []).map((row) => (
            <Table.Tr key={id(row)} data-testid={`${queryKey}-row`}>
              {columns.map((c) => (
                <Table.Td key={c.header}>{c.cell(row)}</Table.Td>
              ))}
              {admin && (
                <Table.Td>
                  <Group gap="xs" wrap="nowrap">
                    <Button size="xs" variant="default" onClick={() => setEditing(row)}>
                      Edit
                    </Button>
                    <Button size="xs" variant="light" color="red" onClick={() => setDeleting(row)}>
                      Delete
                    </Button>
                  </Group>
                </Table.Td>
              )}
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      {rows.data && rows.data.items.length === 0 && <Text c="dimmed">No {noun}s yet.</Text>}
      <Modal opened={editing !== null} onClose={() => setEditing(null)} title={editing === "new" ? `New ${noun}` : `Edit ${noun}`} size="lg">
        {editing !== null && form({ row: editing === "new" ? null : editing, done })}
      </Modal>
      <Confirm
        opened={deleting !== null}
        title={`Delete ${noun}`}
        action="Delete"
        busy={deletion.isPending}
        onConfirm={() => deleting && deletion.mutate(deleting)}
        onCancel={() => setDeleting(null)}
      >
        <Text>Delete {deleting ? id(deleting) : ""}? This cannot be undone.</Text>
        <ProblemNotice error={deletion.error} />
      </Confirm>
    </Stack>
  );
}
