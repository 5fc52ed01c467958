// `since=` and `limit=` are whole numbers written in digits: Number() took 0x10, 1e3, " 1" and
// 1.0 as well, while the refusal says "a whole number".

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";
import { upgradeAnswer } from "../helpers/upgrade.ts";

const B = "/im_component/wx_official_account";

Deno.test("since= and limit= take digits only", async (t) => {
  const server = await startBridge();
  try {
    for (const raw of ["0x10", "1e3", "%201", "1.0", "+1", "-0", "0b1"]) {
      await t.step(`since=${raw} on the socket: 400`, async () => {
        const { status, text } = await upgradeAnswer(
          `${server.base}${B}/msg?userid=qn&since=${raw}`,
        );
        assert.equal(status, 400, `${raw}: ${text}`);
        assert.match(text, /since must be a whole number/);
      });
      await t.step(`limit=${raw} on contacts: 400`, async () => {
        const res = await fetch(`${server.base}${B}/contacts?userid=qn&limit=${raw}`);
        const text = await res.text();
        assert.equal(res.status, 400, `${raw}: ${text}`);
        assert.match(text, /limit must be a whole number/);
      });
    }
    await t.step("digits are taken", async () => {
      const res = await fetch(`${server.base}${B}/contacts?userid=qn&limit=0010`);
      assert.equal(res.status, 200, await res.text());
    });
  } finally {
    await server.close();
  }
});
