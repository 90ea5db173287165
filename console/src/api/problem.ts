/** Errors of the API as the console shows them: problem documents (RFC 9457) made readable. */
export interface FieldError {
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string | null,
    readonly errors: FieldError[] = [],
  ) {
    super(detail ? `${title}: ${detail}` : title);
  }
}

const STATUS_TITLES: Record<number, string> = {
  0: "The API cannot be reached",
  401: "Not signed in",
  403: "Not allowed",
  404: "Not found",
  409: "Conflict",
  412: "Changed meanwhile",
  413: "Too large",
  422: "Invalid input",
  429: "Too many requests",
  503: "Temporarily unavailable",
};

/** An ApiError from a response status and its (possibly non-JSON) body. */
export function problemFrom(status: number, body: unknown): ApiError {
  const doc = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const title = typeof doc.title === "string" ? doc.title : STATUS_TITLES[status] ?? `HTTP ${status}`;
  const detail = typeof doc.detail === "string" ? doc.detail : null;
  const errors = Array.isArray(doc.errors)
    ? doc.errors
        .filter((e): e is FieldError => typeof e?.field === "string" && typeof e?.message === "string")
        .map((e) => ({ field: e.field, message: e.message }))
    : [];
  return new ApiError(status, title, detail, errors);
}

/** Headline and lines for an error of any kind (what <ProblemNotice> renders). */
export function describe(error: unknown): { headline: string; lines: string[] } {
  if (error instanceof ApiError) {
    const headline = error.status ? `${error.status} ${error.title}` : error.title;
    const hint =
      error.status === 403
        ? ["Your role does not allow this. Ask a tenant admin if you need it."]
        : error.status === 412
          ? ["Someone changed it since you loaded it: reload and try again."]
          : [];
    const lines = [
      ...(error.detail ? [error.detail] : []),
      ...error.errors.map((e) => `${e.field.replace(/^body\./, "")}: ${e.message}`),
      ...hint,
    ];
    return { headline, lines };
  }
  return { headline: "Something went wrong", lines: [error instanceof Error ? error.message : String(error)] };
}
