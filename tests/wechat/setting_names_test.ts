import assert from "node:assert/strict";
import { nameSettings } from "../../src/wechat/setting_names.ts";

Deno.test("nameSettings() names WECHAT_* for one account, the file's fields for an account of it", () => {
  assert.equal(nameSettings(undefined, "token"), "WECHAT_TOKEN");
  assert.equal(nameSettings(undefined, "aesKey", "appId"), "WECHAT_AES_KEY and WECHAT_APPID");
  assert.equal(nameSettings("brand-a", "token"), "account brand-a's token (ACCOUNTS_FILE)");
  assert.equal(
    nameSettings("brand-a", "aesKey", "appId", "secret"),
    "account brand-a's aes_key, appid and secret (ACCOUNTS_FILE)",
  );
});
