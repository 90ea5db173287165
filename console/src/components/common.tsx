/** Small pieces every page uses: readable errors, badges, secrets shown once, confirmations. */
import { Alert, Badge, Button, Code, CopyButton, Group, Modal, Stack, Text } from "@mantine/core";
import type { ReactNode } from "react";
import { describe } from "../api/problem";

export function ProblemNotice({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const { headline, lines } = describe(error);
  return (
    <Alert color="red" variant="light" title={title ? `${title}: ${headline}` : headline} role="alert" data-testid="problem">
      {lines.map((line) => (
        <Text size="sm" key={line}>
          {line}
        </Text>
      ))}
    </Alert>
  );
}

const CONNECTIVITY_COLOR = { online: "green", stale: "yellow", offline: "gray" } as const;
export function ConnectivityBadge({ value }: { value: "online" | "stale" | "offline" }) {
  return (
    <Badge color={CONNECTIVITY_COLOR[value]} variant="light">
      {value}
    </Badge>
  );
}

const SEVERITY_COLOR: Record<string, string> = { critical: "red", major: "orange", minor: "yellow", warning: "yellow", info: "blue" };
export function SeverityBadge({ value }: { value: string }) {
  return (
    <Badge color={SEVERITY_COLOR[value] ?? "gray"} variant="light">
      {value}
    </Badge>
  );
}

export function StatusBadge({ value }: { value: string }) {
  const color = value === "open" ? "red" : value === "acknowledged" ? "orange" : value === "resolved" ? "green" : "gray";
  return (
    <Badge color={color} variant="outline">
      {value}
    </Badge>
  );
}

/** A secret the API returns exactly once: shown with a copy button and a warning. */
export function SecretOnce({ label, value, onDone, caption }: { label: string; value: string | null | undefined; onDone: () => void; caption?: string }) {
  return (
    <Modal opened={Boolean(value)} onClose={onDone} title={label} size="lg">
      <Stack>
        <Alert color="yellow" variant="light" title="Shown only once">
          FleetPulse keeps no copy. Store it now: it cannot be shown again.
        </Alert>
        {caption && <Text size="sm">{caption}</Text>}
        <Code block data-testid="secret-once">
          {value}
        </Code>
        <Group justify="flex-end">
          <CopyButton value={value ?? ""}>
            {({ copied, copy }) => (
              <Button variant="default" onClick={copy}>
                {copied ? "Copied" : "Copy"}
              </Button>
            )}
          </CopyButton>
          <Button onClick={onDone}>I have stored it</Button>
        </Group>
      </Stack>
    </Modal>
  );
}

export function Confirm({ opened, title, children, action, busy, onConfirm, onCancel }: {
  opened: boolean;
  title: string;
  children: ReactNode;
  action: string;
  busy?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  return (
    <Modal opened={opened} onClose={onCancel} title={title}>
      <Stack>
        {children}
        <Group justify="flex-end">
          <Button variant="default" onClick={onCancel}>
            Cancel
          </Button>
          <Button color="red" loading={busy} onClick={onConfirm}>
            {action}
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}

export function when(value: string | null | undefined): string {
  if (!value) return "—";
  return new Date(value).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function ago(value: string | null | undefined, now: number = Date.now()): string {
  if (!value) return "never";
  const seconds = Math.max(0, Math.round((now - new Date(value).getTime()) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}
