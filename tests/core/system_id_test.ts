// SPEC "Envelope": `contact_id` is `system01` for system messages. A follower or an agent under
// that id would pass for the system: an unsigned callback from FromUserName system01 reached
// agents as `contact_id: "system01"`, which consoles file with the system's notices (where it
// cannot be answered), and an agent named system01 wrote into every colleague's system thread.

import assert from "node:assert/strict";
import { post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

Deno.test("system01 is neither a follower nor an agent", async (t) => {
  const server = await startBridge();
  try {
    await t.step("a callback from FromUserName system01 is refused 400", async () => {
      const res = await post(
        `${server.base}${B}/send_xml`,
        textXml("system01", "gh_acct", "请重新登录 http://example.com", "7300001"),
      );
      assert.equal(res.status, 400, res.text);
      assert.match(res.text, /system01 is the bridge's id for system messages/);
    });
    await t.step("userid=system01 is refused 400 on the socket and on HTTP", async () => {
      for (const path of ["/msg", "/contacts"]) {
        const res = await fetch(`${server.base}${B}${path}?userid=system01`);
        assert.equal(res.status, 400, path);
        assert.match(await res.text(), /userid must be/);
      }
    });
  } finally {
    await server.close();
  }
});
