import { Badge, Button, Group, Select, Stack, TextInput } from "@mantine/core";
import { useMutation } from "@tanstack/react-query";
import { useState } from "react";
import { ifMatch, unwrap } from "../api/client";
import { useApi } from "../api/context";
import type { components } from "../api/schema";
import { Catalog } from "../components/Catalog";
import { ProblemNotice, SecretOnce } from "../components/common";

type Integration = components["schemas"]["Integration"];
type IntegrationIn =
  | components["schemas"]["WebhookIn"]
  | components["schemas"]["EmailIn"]
  | components["schemas"]["MqttIn"]
  | components["schemas"]["SnsIn"];

function target(row: Integration): string {
  const config = row.config as Record<string, unknown>;
  if (row.kind === "email") return ((config.to as string[]) ?? []).join(", ");
  return String(config.url ?? config.topic ?? config.topic_arn ?? "");
}

export default function Integrations() {
  const api = useApi();
  const [secret, setSecret] = useState<string | null>(null);
  return (
    <>
      <Catalog<Integration>
        title="Integrations"
        noun="integration"
        queryKey="integrations"
        list={() => unwrap(api.GET("/api/v1/integrations", { params: { query: { limit: 500 } } }))}
        id={(r) => r.integration_id}
        columns={[
          { header: "Name", cell: (r) => r.name },
          { header: "Kind", cell: (r) => r.kind },
          { header: "Target", cell: target },
          {
            header: "Status",
            cell: (r) => (
              <Badge color={r.status === "enabled" ? "green" : "gray"} variant="light" title={r.disabled_reason ?? undefined}>
                {r.status}
              </Badge>
            ),
          },
          { header: "Id", cell: (r) => r.integration_id },
        ]}
        remove={(r) =>
          unwrap(api.DELETE("/api/v1/integrations/{integration_id}", { params: { path: { integration_id: r.integration_id }, header: ifMatch(r.version) } }))
        }
        form={(props) => <IntegrationForm {...props} onSecret={setSecret} />}
      />
      <SecretOnce label="Webhook signing secret" value={secret} onDone={() => setSecret(null)} />
    </>
  );
}

function IntegrationForm({ row, done, onSecret }: { row: Integration | null; done: () => void; onSecret: (s: string) => void }) {
  const api = useApi();
  const config = (row?.config ?? {}) as Record<string, unknown>;
  const [name, setName] = useState(row?.name ?? "");
  const [kind, setKind] = useState<string>(row?.kind ?? "webhook");
  const [url, setUrl] = useState(String(config.url ?? ""));
  const [to, setTo] = useState(((config.to as string[] | undefined) ?? []).join(", "));
  const [topic, setTopic] = useState(String(config.topic ?? ""));
  const [topicArn, setTopicArn] = useState(String(config.topic_arn ?? ""));
  const save = useMutation({
    mutationFn: (body: IntegrationIn) =>
      row
        ? unwrap(api.PUT("/api/v1/integrations/{integration_id}", { params: { path: { integration_id: row.integration_id }, header: ifMatch(row.version) }, body }))
        : unwrap(api.POST("/api/v1/integrations", { body })),
    onSuccess: (result) => {
      const secret = (result as { secret?: string | null }).secret;
      if (secret) onSecret(secret);
      done();
    },
  });
  const body = (): IntegrationIn => {
    if (kind === "email") return { kind: "email", name, to: to.split(",").map((s) => s.trim()).filter(Boolean) };
    if (kind === "mqtt") return { kind: "mqtt", name, topic };
    if (kind === "sns") return { kind: "sns", name, topic_arn: topicArn };
    return { kind: "webhook", name, url };
  };
  return (
    <Stack>
      <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} />
      <Select
        label="Kind"
        data={["webhook", "email", "mqtt", "sns"]}
        value={kind}
        onChange={(v) => setKind(v ?? "webhook")}
        allowDeselect={false}
        disabled={row !== null}
      />
      {kind === "webhook" && (
        <TextInput label="URL" required placeholder="https://hooks.example.com/fleetpulse" value={url} onChange={(e) => setUrl(e.currentTarget.value)} description="Signed with Standard Webhooks; the secret is shown once after creating" />
      )}
      {kind === "email" && <TextInput label="To" required placeholder="ops@example.com, oncall@example.com" value={to} onChange={(e) => setTo(e.currentTarget.value)} />}
      {kind === "mqtt" && <TextInput label="Topic" required value={topic} onChange={(e) => setTopic(e.currentTarget.value)} />}
      {kind === "sns" && <TextInput label="Topic ARN" required value={topicArn} onChange={(e) => setTopicArn(e.currentTarget.value)} />}
      <ProblemNotice error={save.error} />
      <Group justify="flex-end">
        <Button onClick={() => save.mutate(body())} loading={save.isPending}>
          Save integration
        </Button>
      </Group>
    </Stack>
  );
}
