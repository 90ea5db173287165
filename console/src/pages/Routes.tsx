import { Button, Group, MultiSelect, NumberInput, Select, Stack, TextInput } from "@mantine/core";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { ifMatch, unwrap } from "../api/client";
import { useApi } from "../api/context";
import type { components } from "../api/schema";
import { Catalog } from "../components/Catalog";
import { ProblemNotice } from "../components/common";
import { formatTags, parseTags } from "../tags";

type Route = components["schemas"]["Route"];
type RouteIn = components["schemas"]["RouteIn"];
type Severity = NonNullable<components["schemas"]["RouteMatch"]["severity_at_least"]>;

function matchText(route: Route): string {
  const match = route.match as components["schemas"]["RouteMatch"];
  const parts = [
    match.severity_at_least ? `severity ≥ ${match.severity_at_least}` : null,
    match.rule_ids?.length ? `rules ${match.rule_ids.join(", ")}` : null,
    match.device_tags && Object.keys(match.device_tags).length ? `devices ${formatTags(match.device_tags)}` : null,
  ].filter(Boolean);
  return parts.join("; ") || "every alert";
}

export default function RoutesPage() {
  const api = useApi();
  const integrations = useQuery({ queryKey: ["integrations"], queryFn: () => unwrap(api.GET("/api/v1/integrations", { params: { query: { limit: 500 } } })) });
  const integrationName = (id: string) => integrations.data?.items.find((i) => i.integration_id === id)?.name ?? id;
  return (
    <Catalog<Route>
      title="Routes"
      noun="route"
      queryKey="routes"
      list={() => unwrap(api.GET("/api/v1/routes", { params: { query: { limit: 500 } } }))}
      id={(r) => r.route_id}
      columns={[
        { header: "Name", cell: (r) => r.name },
        { header: "Matches", cell: matchText },
        { header: "Integration", cell: (r) => integrationName(r.integration_id) },
        { header: "Group wait", cell: (r) => `${r.group_wait_s}s` },
        { header: "Id", cell: (r) => r.route_id },
      ]}
      remove={(r) => unwrap(api.DELETE("/api/v1/routes/{route_id}", { params: { path: { route_id: r.route_id }, header: ifMatch(r.version) } }))}
      form={(props) => <RouteForm {...props} />}
    />
  );
}

function RouteForm({ row, done }: { row: Route | null; done: () => void }) {
  const api = useApi();
  const match = (row?.match ?? {}) as components["schemas"]["RouteMatch"];
  const integrations = useQuery({ queryKey: ["integrations"], queryFn: () => unwrap(api.GET("/api/v1/integrations", { params: { query: { limit: 500 } } })) });
  const rules = useQuery({ queryKey: ["rules"], queryFn: () => unwrap(api.GET("/api/v1/rules", { params: { query: { limit: 500 } } })) });
  const [name, setName] = useState(row?.name ?? "");
  const [integration, setIntegration] = useState<string | null>(row?.integration_id ?? null);
  const [severity, setSeverity] = useState<string | null>(match.severity_at_least ?? null);
  const [ruleIds, setRuleIds] = useState<string[]>(match.rule_ids ?? []);
  const [tags, setTags] = useState(formatTags(match.device_tags));
  const [groupWait, setGroupWait] = useState<number | string>(row?.group_wait_s ?? 0);
  const [tagError, setTagError] = useState<string | null>(null);
  const save = useMutation({
    mutationFn: (body: RouteIn) =>
      row
        ? unwrap(api.PUT("/api/v1/routes/{route_id}", { params: { path: { route_id: row.route_id }, header: ifMatch(row.version) }, body }))
        : unwrap(api.POST("/api/v1/routes", { body })),
    onSuccess: done,
  });
  const submit = () => {
    let device_tags: Record<string, string>;
    try {
      device_tags = parseTags(tags);
      setTagError(null);
    } catch (error) {
      setTagError((error as Error).message);
      return;
    }
    save.mutate({
      name,
      integration_id: integration ?? "",
      match: {
        severity_at_least: (severity as Severity | null) ?? null,
        rule_ids: ruleIds.length ? ruleIds : null,
        device_tags: Object.keys(device_tags).length ? device_tags : null,
      },
      group_wait_s: Number(groupWait),
    });
  };
  return (
    <Stack>
      <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} />
      <Select
        label="Integration"
        required
        data={(integrations.data?.items ?? []).map((i) => ({ value: i.integration_id, label: `${i.name} (${i.kind})` }))}
        value={integration}
        onChange={setIntegration}
      />
      <Select label="Severity at least" placeholder="Any severity" clearable data={["critical", "major", "minor", "warning", "info"]} value={severity} onChange={setSeverity} />
      <MultiSelect label="Rules" placeholder="Any rule" data={(rules.data?.items ?? []).map((r) => ({ value: r.rule_id, label: r.name }))} value={ruleIds} onChange={setRuleIds} clearable />
      <TextInput label="Device tags" placeholder="site=berlin (empty: any device)" value={tags} onChange={(e) => setTags(e.currentTarget.value)} error={tagError} />
      <NumberInput label="Group wait (s)" min={0} value={groupWait} onChange={setGroupWait} />
      <ProblemNotice error={integrations.error ?? rules.error} />
      <ProblemNotice error={save.error} />
      <Group justify="flex-end">
        <Button onClick={submit} loading={save.isPending}>
          Save route
        </Button>
      </Group>
    </Stack>
  );
}
