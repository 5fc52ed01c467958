// The one limiter is the process's, not an account's: two accounts' voice uploads at once still
// run at most 2 ffprobe processes. The uploads are MP3s: an AMR's length is its frames', measured
// without ffprobe. ffprobe is a wrapper that notes each start and end in a log,
// and pauses before the real tool, so runs not held back overlap.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { DEFAULT_MAX_TOOL_RUNS } from "../../src/media/tool_limiter.ts";
import { startBridge } from "../helpers/server.ts";
import { A, Bq, writeAccountsFile } from "../accounts/_accounts_env.ts";
import { countingTool, peakOf, skipWithoutFfmpeg, voiceMp3 } from "./_media_tools.ts";

const B = "/im_component/wx_official_account";

Deno.test({
  name: "two accounts' voice uploads share the one limit of ffprobe runs at once",
  ignore: skipWithoutFfmpeg,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "tool-accounts-" });
    const log = `${dir}/runs.log`;
    await Deno.writeTextFile(log, "");
    const ffprobe = await countingTool(dir, "ffprobe", log);
    const fakes = {
      [A.id]: await startFakeWechat({ appId: A.appId, secret: A.secret }),
      [Bq.id]: await startFakeWechat({ appId: Bq.appId, secret: Bq.secret }),
    };
    const server = await startBridge({
      env: { ACCOUNTS_FILE: await writeAccountsFile(dir, fakes) },
      ffprobe,
    });
    try {
      const voice = await voiceMp3(dir);
      // carol serves both accounts: three uploads to each at once.
      const upload = (account: string) =>
        fetch(`${server.base}${B}/upload?userid=carol&account=${account}`, {
          method: "POST",
          body: new Uint8Array(voice),
          headers: { "content-type": "audio/mpeg" },
        }).then(async (res) => ({ status: res.status, text: await res.text() }));
      const results = await Promise.all([A.id, A.id, A.id, Bq.id, Bq.id, Bq.id].map(upload));
      for (const res of results) assert.equal(res.status, 201, res.text);
      for (const fake of Object.values(fakes)) {
        assert.equal(fake.calls.filter((c) => c.path.endsWith("cgi-bin/media/upload")).length, 3);
      }

      const { peak, runs } = await peakOf(log);
      assert.equal(runs, 6);
      assert.ok(peak <= DEFAULT_MAX_TOOL_RUNS, `${peak} ffprobe processes at once`);
    } finally {
      await server.close();
      for (const fake of Object.values(fakes)) await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
