// Deno's fetch sends a request again, without telling the caller, when the keep-alive
// connection it reused closes before the answer: even a POST the server had read whole (hyper's
// retry of a reused connection). A customer-service send that WeChat took just as its side
// closed the connection then reached the follower twice, though api_client.ts tries a send
// again only after a failure that "surely never reached WeChat". Expected: the send is never
// written twice; it fails as unconfirmed (-1) instead.

import assert from "node:assert/strict";
import { createWechatClient } from "../../src/wechat/api_client.ts";

Deno.test({
  name: "a send on a reused connection closed after the request is not sent again by fetch",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const sends: string[] = [];
    const ok = (body: string) =>
      new TextEncoder().encode(
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
          `connection: keep-alive\r\n\r\n${body}`,
      );
    const serving = (async () => {
      for await (const conn of listener) {
        (async () => {
          const buf = new Uint8Array(65536);
          while (true) {
            const n = await conn.read(buf).catch(() => null);
            if (n === null) break;
            const line = new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0] ?? "";
            if (line.includes("stable_token")) {
              await conn.write(ok(JSON.stringify({ access_token: "TOK", expires_in: 7200 })));
            } else if (line.includes("custom/send")) {
              sends.push(line);
              // WeChat read it (and may have delivered it); the connection closes unanswered.
              if (sends.length === 1) {
                conn.close();
                break;
              }
              await conn.write(ok(JSON.stringify({ errcode: 0, errmsg: "ok" })));
            }
          }
        })();
      }
    })();
    try {
      const client = createWechatClient({
        apiBase: `http://127.0.0.1:${port}/`,
        appId: "wx1",
        secret: "s",
        fetch: globalThis.fetch,
        sleep: () => Promise.resolve(),
      });
      let failure: unknown = null;
      await client.sendCustomMessage({ touser: "oF", msgtype: "text", text: { content: "hi" } })
        .catch((e) => failure = e);
      assert.equal(sends.length, 1, `WeChat was asked ${sends.length} times: ${sends.join(" | ")}`);
      assert.ok(failure !== null, "one unanswered send must fail (unconfirmed)");
      assert.ok(!String((failure as Error).message).includes("TOK"), "token in the error");
    } finally {
      listener.close();
      await serving.catch(() => {});
    }
  },
});
