import { Button, Group, NumberInput, Select, Stack, Text, TextInput } from "@mantine/core";
import { useDebouncedValue } from "@mantine/hooks";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { ifMatch, unwrap } from "../api/client";
import { useApi } from "../api/context";
import type { components } from "../api/schema";
import { Catalog } from "../components/Catalog";
import { ProblemNotice, SeverityBadge } from "../components/common";
import { formatTags, parseTags } from "../tags";

type Rule = components["schemas"]["Rule"];
type RuleIn = components["schemas"]["ThresholdRuleIn"] | components["schemas"]["NoDataRuleIn"];
const SEVERITIES = ["critical", "major", "minor", "warning", "info"];
const OPERATORS = [
  { value: "gt", label: ">" },
  { value: "gte", label: "≥" },
  { value: "lt", label: "<" },
  { value: "lte", label: "≤" },
  { value: "eq", label: "=" },
  { value: "ne", label: "≠" },
];

function condition(rule: Rule): string {
  if (rule.kind === "no_data") return `no data for ${rule.timeout_s}s`;
  if (rule.kind === "condition") {
    const parts = (rule as { all?: unknown[] | null; any?: unknown[] | null });
    const list = parts.all ?? parts.any ?? [];
    const each = list as { metric: string; aggregate?: string; operator: string; threshold?: number | null; threshold_from?: string | null }[];
    const text = each
      .map((c) => {
        const op = OPERATORS.find((o) => o.value === c.operator)?.label ?? c.operator;
        const what = c.aggregate && c.aggregate !== "last" ? `${c.aggregate}(${c.metric})` : c.metric;
        return `${what} ${op} ${c.threshold ?? c.threshold_from}`;
      })
      .join(parts.all ? " and " : " or ");
    return `${text}${rule.duration_s ? ` for ${rule.duration_s}s` : ""}`;
  }
  const op = OPERATORS.find((o) => o.value === rule.operator)?.label ?? rule.operator;
  return `${rule.metric} ${op} ${rule.threshold}${rule.duration_s ? ` for ${rule.duration_s}s` : ""}`;
}

export default function Rules() {
  const api = useApi();
  return (
    <Catalog<Rule>
      title="Rules"
      noun="rule"
      queryKey="rules"
      list={() => unwrap(api.GET("/api/v1/rules", { params: { query: { limit: 500 } } }))}
      id={(r) => r.rule_id}
      columns={[
        { header: "Name", cell: (r) => r.name },
        { header: "Condition", cell: condition },
        { header: "Severity", cell: (r) => <SeverityBadge value={r.severity} /> },
        { header: "Devices", cell: (r) => formatTags((r.device_selector as { tags?: Record<string, string> }).tags) || "all" },
        { header: "Id", cell: (r) => r.rule_id },
      ]}
      remove={(r) => unwrap(api.DELETE("/api/v1/rules/{rule_id}", { params: { path: { rule_id: r.rule_id }, header: ifMatch(r.version) } }))}
      form={(props) => <RuleForm {...props} />}
    />
  );
}

function RuleForm({ row, done }: { row: Rule | null; done: () => void }) {
  const api = useApi();
  const [name, setName] = useState(row?.name ?? "");
  const [kind, setKind] = useState<string>(row?.kind ?? "threshold");
  const [metric, setMetric] = useState(row?.metric ?? "");
  const [operator, setOperator] = useState<string>(row?.operator ?? "gt");
  const [threshold, setThreshold] = useState<number | string>(row?.threshold ?? 0);
  const [clear, setClear] = useState<number | string>(row?.clear_threshold ?? "");
  const [duration, setDuration] = useState<number | string>(row?.duration_s ?? 0);
  const [timeout, setTimeoutS] = useState<number | string>(row?.timeout_s ?? 300);
  const [severity, setSeverity] = useState<string>(row?.severity ?? "major");
  const [selector, setSelector] = useState(formatTags((row?.device_selector as { tags?: Record<string, string> } | undefined)?.tags));
  const [debouncedSelector] = useDebouncedValue(selector, 300);
  let selectorTags: Record<string, string> | null = null;
  let selectorError: string | null = null;
  try {
    selectorTags = parseTags(debouncedSelector);
  } catch (error) {
    selectorError = (error as Error).message;
  }
  const matches = useQuery({
    queryKey: ["selector-preview", JSON.stringify(selectorTags)],
    enabled: selectorTags !== null,
    queryFn: () => unwrap(api.POST("/api/v1/rules/selector-preview", { body: { device_selector: { tags: selectorTags! } } })),
  });
  const save = useMutation({
    mutationFn: (body: RuleIn) =>
      row
        ? unwrap(api.PUT("/api/v1/rules/{rule_id}", { params: { path: { rule_id: row.rule_id }, header: ifMatch(row.version) }, body }))
        : unwrap(api.POST("/api/v1/rules", { body })),
    onSuccess: done,
  });
  const submit = () => {
    const device_selector = { tags: parseTags(selector) };
    const sev = severity as RuleIn["severity"];
    // a PUT replaces the whole rule: keep a disabled rule disabled when it is edited here
    const enabled = (row as { enabled?: boolean } | undefined)?.enabled ?? true;
    const body: RuleIn =
      kind === "no_data"
        ? { kind: "no_data", name, severity: sev, timeout_s: Number(timeout), device_selector, enabled }
        : {
            kind: "threshold",
            name,
            enabled,
            severity: sev,
            metric,
            operator: operator as components["schemas"]["ThresholdRuleIn"]["operator"],
            threshold: Number(threshold),
            clear_threshold: clear === "" ? null : Number(clear),
            duration_s: Number(duration),
            device_selector,
          };
    save.mutate(body);
  };
  return (
    <Stack>
      <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} />
      <Group grow>
        <Select label="Kind" data={[{ value: "threshold", label: "Threshold" }, { value: "no_data", label: "No data" }]} value={kind} onChange={(v) => setKind(v ?? "threshold")} allowDeselect={false} />
        <Select label="Severity" data={SEVERITIES} value={severity} onChange={(v) => setSeverity(v ?? "major")} allowDeselect={false} />
      </Group>
      {kind === "threshold" ? (
        <>
          <Group grow>
            <TextInput label="Metric" required placeholder="temp_c" value={metric} onChange={(e) => setMetric(e.currentTarget.value)} />
            <Select label="Operator" data={OPERATORS} value={operator} onChange={(v) => setOperator(v ?? "gt")} allowDeselect={false} />
            <NumberInput label="Threshold" required value={threshold} onChange={setThreshold} />
          </Group>
          <Group grow>
            <NumberInput label="Clear threshold" description="Hysteresis (optional)" value={clear} onChange={setClear} />
            <NumberInput label="Duration (s)" description="How long it must hold" min={0} value={duration} onChange={setDuration} />
          </Group>
        </>
      ) : (
        <NumberInput label="Timeout (s)" description="Alert when a device sends nothing this long" min={1} value={timeout} onChange={setTimeoutS} />
      )}
      <TextInput label="Device selector" placeholder="site=berlin (empty: every device)" value={selector} onChange={(e) => setSelector(e.currentTarget.value)} error={selectorError} />
      <Text size="sm" data-testid="selector-matches" aria-live="polite">
        {matches.data ? `Matches ${matches.data.matched_devices} active device${matches.data.matched_devices === 1 ? "" : "s"}` : matches.isFetching ? "Counting devices…" : ""}
      </Text>
      <ProblemNotice error={matches.error} />
      <ProblemNotice error={save.error} />
      <Group justify="flex-end">
        <Button onClick={submit} loading={save.isPending}>
          Save rule
        </Button>
      </Group>
    </Stack>
  );
}
