import { describe as suite, expect, it } from "vitest";
import { ApiError, describe, problemFrom } from "./problem";

suite("problem documents", () => {
  it("keeps title, detail and field errors", () => {
    const error = problemFrom(422, {
      type: "https://fleetpulse.dev/problems/validation",
      title: "Unprocessable Content",
      status: 422,
      detail: "1 invalid field",
      errors: [{ field: "body.threshold", message: "Input should be a valid number" }, { bogus: 1 }],
    });
    expect(describe(error)).toEqual({
      headline: "422 Unprocessable Content",
      lines: ["1 invalid field", "threshold: Input should be a valid number"],
    });
  });

  it("explains 403 and 412, and survives non-JSON bodies", () => {
    expect(describe(problemFrom(403, { title: "Forbidden", detail: "this needs the operator role" })).lines).toEqual([
      "this needs the operator role",
      "Your role does not allow this. Ask a tenant admin if you need it.",
    ]);
    expect(describe(problemFrom(412, "oops")).headline).toBe("412 Changed meanwhile");
    expect(describe(problemFrom(502, null)).headline).toBe("502 HTTP 502");
    expect(describe(new ApiError(0, "The API cannot be reached", "TypeError: Failed to fetch")).headline).toBe(
      "The API cannot be reached",
    );
  });
});
