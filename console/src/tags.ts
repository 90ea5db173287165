/** Tags as people type them: "site=berlin, kind=reefer" <-> {site: "berlin", kind: "reefer"}. */
export function parseTags(text: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const part of text.split(",")) {
    const trimmed = part.trim();
    if (!trimmed) continue;
    const at = trimmed.search(/[=:]/);
    if (at <= 0) throw new Error(`"${trimmed}" is not key=value`);
    tags[trimmed.slice(0, at).trim()] = trimmed.slice(at + 1).trim();
  }
  return tags;
}

export function formatTags(tags: Record<string, string> | null | undefined): string {
  return Object.entries(tags ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}
