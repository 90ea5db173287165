/** The typed API client (openapi-fetch over the generated schema) with the user's token. */
import createClient, { type Middleware } from "openapi-fetch";
import type { paths } from "./schema";
import { ApiError, problemFrom } from "./problem";

export type Api = ReturnType<typeof createApi>;
export type TokenSource = () => string | null;

export function createApi(apiUrl: string, token: TokenSource) {
  const bearer: Middleware = {
    onRequest({ request }) {
      const value = token();
      if (value) request.headers.set("Authorization", `Bearer ${value}`);
      return request;
    },
  };
  const client = createClient<paths>({ baseUrl: apiUrl });
  client.use(bearer);
  return client;
}

interface Result<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The data of a call, or an ApiError (problem document, or the network failure). */
export async function unwrap<T>(call: Promise<Result<T>>): Promise<T> {
  let result: Result<T>;
  try {
    result = await call;
  } catch (error) {
    throw new ApiError(0, "The API cannot be reached", String(error));
  }
  if (!result.response.ok) throw problemFrom(result.response.status, result.error);
  return result.data as T; // undefined only for 204 No Content
}

/** The If-Match header for a row's version (the API's optimistic concurrency). */
export function ifMatch(version: number): { "If-Match": string } {
  return { "If-Match": `"${version}"` };
}
