// The route table: exact paths found through a Map, paths with `:params` through URLPattern
// (which cost a third of the bridge's CPU when every request tried every pattern), and the
// JSON answers every route shares.

/** One row of the route table: `path` is exact, or a URLPattern pathname with `:params`;
 * `info` is the connection the request came on, when the server knows it (read only when
 * needed: its address is a call into Deno). */
export interface Route {
  method: string;
  path: string;
  handler: (
    req: Request,
    url: URL,
    params: Record<string, string | undefined>,
    info?: { readonly remoteAddr: Deno.NetAddr },
  ) => Response | Promise<Response>;
}

/** A JSON answer, never kept by a cache: the API's answers are one company's conversations
 * (contacts, history, search), and a browser's disk or a proxy must not keep them. */
export const json = (body: unknown, status = 200): Response =>
  new Response(JSON.stringify(body), { status, headers: JSON_HEADERS });

/** The headers of every JSON answer, the connection guard's own too (src/http/connections.ts). */
export const JSON_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "application/json; charset=utf-8",
  "cache-control": "no-store",
};

/** The body of a JSON error answer: `{"error": message}`, plus the -1 envelope's result. */
export const errorBody = (message: string) => ({ error: message, result: { code: -1, message } });

/** A JSON error answer: `{"error": message}` for HTTP clients, plus the -1 envelope's result. */
export function errorResponse(status: number, message: string, headers?: HeadersInit): Response {
  const res = json(errorBody(message), status);
  if (headers) new Headers(headers).forEach((v, k) => res.headers.set(k, v));
  return res;
}

/** Builds the lookup: exact paths first, then the patterns. */
export function createRouteTable(routes: Route[]) {
  type Found =
    | { handler: Route["handler"]; params: Record<string, string | undefined> }
    | { allowed: string[] };
  // An exact path's answer has no params: it is made once and frozen (every webhook comes this
  // way, and a Set and two objects a request were garbage), so no handler can change the next.
  const exact = new Map<string, Array<{ method: string; found: Found }>>();
  const patterns: Array<{ pattern: URLPattern; route: Route }> = [];
  for (const route of routes) {
    if (route.path.includes(":")) {
      patterns.push({ pattern: new URLPattern({ pathname: route.path }), route });
    } else {
      const list = exact.get(route.path) ?? [];
      const params = Object.freeze({});
      list.push({ method: route.method, found: Object.freeze({ handler: route.handler, params }) });
      exact.set(route.path, list);
    }
  }
  return {
    find(method: string, url: URL): Found {
      const listed = exact.get(url.pathname);
      if (listed !== undefined) {
        for (const route of listed) if (route.method === method) return route.found;
      }
      const allowed = new Set<string>();
      for (const route of listed ?? []) allowed.add(route.method);
      if (allowed.size === 0) {
        for (const { pattern, route } of patterns) {
          const match = pattern.exec(url);
          if (!match) continue;
          if (route.method === method) {
            return { handler: route.handler, params: match.pathname.groups };
          }
          allowed.add(route.method);
        }
      }
      return { allowed: [...allowed] };
    },
  };
}
