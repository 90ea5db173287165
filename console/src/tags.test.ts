import { describe, expect, it } from "vitest";
import { formatTags, parseTags } from "./tags";

describe("tags", () => {
  it("round-trips key=value lists", () => {
    expect(parseTags(" site=berlin, kind:reefer ,")).toEqual({ site: "berlin", kind: "reefer" });
    expect(formatTags({ site: "berlin", kind: "reefer" })).toBe("site=berlin, kind=reefer");
    expect(parseTags("")).toEqual({});
  });
  it("refuses a tag without a key", () => {
    expect(() => parseTags("=x")).toThrow(/key=value/);
    expect(() => parseTags("lonely")).toThrow(/key=value/);
  });
});
