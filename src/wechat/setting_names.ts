// What the operator set each WeChat credential as: the WECHAT_* variables for one account, an
// account's fields in ACCOUNTS_FILE for several. A message about a missing or wrong credential
// names the one to fix, not a variable that account has no use for.

/** One of an account's WeChat credentials. */
export type WechatSetting = "token" | "aesKey" | "aesKeyPrevious" | "appId" | "secret";

const VARIABLES: Record<WechatSetting, string> = {
  token: "WECHAT_TOKEN",
  aesKey: "WECHAT_AES_KEY",
  aesKeyPrevious: "WECHAT_AES_KEY_PREVIOUS",
  appId: "WECHAT_APPID",
  secret: "WECHAT_SECRET",
};

const FIELDS: Record<WechatSetting, string> = {
  token: "token",
  aesKey: "aes_key",
  aesKeyPrevious: "aes_key_previous",
  appId: "appid",
  secret: "secret",
};

/** Names `settings` for a message: `WECHAT_AES_KEY and WECHAT_APPID` for the single account,
 * `account brand-a's aes_key and appid (ACCOUNTS_FILE)` for account `accountId`. */
export function nameSettings(accountId: string | undefined, ...settings: WechatSetting[]): string {
  const and = (names: string[]) =>
    names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
  if (accountId === undefined) return and(settings.map((s) => VARIABLES[s]));
  return `account ${accountId}'s ${and(settings.map((s) => FIELDS[s]))} (ACCOUNTS_FILE)`;
}
