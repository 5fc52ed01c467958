// GET contacts says the bridge's clock (`now`), by which its `window_expires_at` counts: the
// console counts a follower's window on it, not on a PC clock that may be minutes off.

import assert from "node:assert/strict";
import { connectRoutedAgent, startBridge } from "../helpers/server.ts";
import { B, postFollowerMessage } from "../browser/browser.ts";

Deno.test("GET contacts' now is the bridge's clock, and the window counts from it", async () => {
  // The bridge's clock, 10 minutes behind this host's.
  const skew = -600_000;
  const server = await startBridge({ now: () => Date.now() + skew });
  const agent = await connectRoutedAgent(server, "agentnow");
  try {
    await postFollowerMessage(server.base, "oNow", {
      MsgType: "text",
      Content: "hi",
      CreateTime: Math.floor((Date.now() + skew) / 1000),
    });
    const before = (Date.now() + skew) / 1000;
    const res = await fetch(`${server.base}${B}/contacts?userid=agentnow`);
    const body = await res.json();
    const after = (Date.now() + skew) / 1000;
    assert.equal(typeof body.now, "number");
    assert.ok(body.now >= before - 0.001 && body.now <= after + 0.001, `${before} ${body.now}`);
    const contact = body.contacts.find((c: { contact_id: string }) => c.contact_id === "oNow");
    const left = contact.window_expires_at - body.now;
    assert.ok(left > 48 * 3600 - 60 && left <= 48 * 3600, `${left}`);
  } finally {
    await agent.close();
    await server.close();
  }
});
