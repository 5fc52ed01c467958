// ACCOUNTS_FILE: several official accounts in one deployment, each with its own WeChat
// credentials and the agents who serve it. Read once at start by config.ts; a file that is not
// what this expects stops start-up with a line naming the account and the field.

import { aesKeyFault } from "./wechat/crypto.ts";

/** One official account of the file. */
export interface AccountConfig {
  /** The account's name in URLs (`B/send_xml/<id>`, `account=<id>`) and metric labels. */
  id: string;
  /** Its original id, `gh_…` (XML `ToUserName`): plain callbacks are routed by it. */
  originalId?: string;
  token?: string;
  aesKey?: string;
  aesKeyPrevious?: string;
  appId?: string;
  secret?: string;
  /** WeChat's API root for this account (a proxy, a local fake); unset: WECHAT_API_BASE. */
  apiBase?: string;
  /** The agents who serve it; null: any agent. */
  agents: string[] | null;
  /** As AGENT_KF_ACCOUNTS, for this account: agent userid -> its kf account here. */
  kfAccounts: Record<string, string>;
  /** As AUTO_REPLY_TEXT, for this account (each brand says its own); unset: AUTO_REPLY_TEXT. */
  autoReplyText?: string;
}

const ID = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const USER_ID = /^[A-Za-z0-9_.@:-]{1,64}$/;
const FIELDS = new Set([
  "id",
  "original_id",
  "token",
  "aes_key",
  "aes_key_previous",
  "appid",
  "secret",
  "api_base",
  "agents",
  "kf_accounts",
  "auto_reply_text",
]);

/**
 * Parses the file's text: `{"accounts": [{"id", "original_id", "token", "aes_key",
 * "aes_key_previous", "appid", "secret", "api_base", "agents", "kf_accounts", "auto_reply_text"}, …]}`; throws SyntaxError saying which
 * account and field is wrong, never a secret's value.
 */
export function parseAccounts(text: string): AccountConfig[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new SyntaxError(`not JSON (${(error as Error).message})`);
  }
  const list = (doc as { accounts?: unknown } | null)?.accounts;
  if (!Array.isArray(list) || list.length === 0) {
    throw new SyntaxError('expected {"accounts": [{"id": …}, …]} with at least one account');
  }
  // Id -> its position in the file; for what must be one account's own, value -> that account.
  const seen = new Map<string, number>();
  const originals = new Map<string, string>();
  const appIds = new Map<string, string>();
  const secrets = new Map<string, string>();
  const tokens = new Map<string, string>();
  const aesKeys = new Map<string, string>();
  return list.map((raw, index) => {
    const where = `account ${index + 1}`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw new SyntaxError(`${where} is not an object`);
    }
    const entry = raw as Record<string, unknown>;
    for (const key of Object.keys(entry)) {
      if (!FIELDS.has(key)) {
        throw new SyntaxError(
          `${where}: unknown field "${key}" (known: ${[...FIELDS].join(", ")})`,
        );
      }
    }
    const str = (key: string): string | undefined => {
      const value = entry[key];
      if (value === undefined || value === null || value === "") return undefined;
      if (typeof value !== "string") throw new SyntaxError(`${where}: ${key} must be a string`);
      return value;
    };
    const id = str("id") ?? "";
    if (!ID.test(id)) {
      throw new SyntaxError(`${where}: id "${id}" must be 1-32 of a-z 0-9 _ - (it goes in URLs)`);
    }
    const named = `account ${id}`;
    const first = seen.get(id);
    // The id is the account's callback path (send_xml/<id>), its data directory and its Redis
    // prefix: two accounts under one would share all three.
    if (first !== undefined) {
      throw new SyntaxError(
        `${named} is listed twice (accounts ${first + 1} and ${
          index + 1
        } of the file): each id is its own callback URL, send_xml/${id}`,
      );
    }
    seen.set(id, index);
    const originalId = str("original_id");
    if (originalId !== undefined) {
      if (!/^gh_[A-Za-z0-9_]{1,40}$/.test(originalId)) {
        throw new SyntaxError(`${named}: original_id must be the account's gh_… id`);
      }
      const other = ownerBesides(originals, originalId, id);
      if (other !== undefined) {
        throw new SyntaxError(`${named}: original_id ${originalId} is account ${other}'s as well`);
      }
    }
    const appId = str("appid");
    // One appid is one account at WeChat: listed twice, its followers' openids, its access token
    // (each refresh revokes the other's) and its callbacks would be split between two stores.
    const otherApp = ownerBesides(appIds, appId, id);
    if (otherApp !== undefined) {
      throw new SyntaxError(`${named}: appid ${appId} is account ${otherApp}'s as well`);
    }
    // A token signs callbacks without naming the URL they are for: shared, one account's
    // callbacks would pass on the other's URL (send_xml/<id>), which must take its own only.
    const token = str("token");
    const otherToken = ownerBesides(tokens, token, id);
    if (otherToken !== undefined) {
      throw new SyntaxError(
        `${named}: token is account ${otherToken}'s as well; give each account its own`,
      );
    }
    const aesKey = str("aes_key");
    const aesKeyPrevious = str("aes_key_previous");
    const secret = str("secret");
    if ((aesKey || secret) && !appId) {
      throw new SyntaxError(`${named}: aes_key and secret need the account's appid`);
    }
    if (aesKeyPrevious !== undefined && aesKey === undefined) {
      throw new SyntaxError(`${named}: aes_key_previous needs the account's aes_key`);
    }
    // Checked here, so the line names the account and field rather than WECHAT_AES_KEY.
    // A key (current or previous) under two accounts is one account's pasted into the other's
    // entry: the account it is not for could decrypt none of its messages.
    for (const [field, key] of [["aes_key", aesKey], ["aes_key_previous", aesKeyPrevious]]) {
      const fault = key === undefined ? undefined : aesKeyFault(key);
      if (fault !== undefined) throw new SyntaxError(`${named}: ${field}: ${fault}`);
      const other = ownerBesides(aesKeys, key, id);
      if (other !== undefined) {
        throw new SyntaxError(
          `${named}: ${field} is account ${other}'s as well; give each account its own`,
        );
      }
    }
    // An AppSecret is one appid's: the same one under two accounts is a copy left in place, and
    // the account it is not for would never get an access token.
    const otherSecret = ownerBesides(secrets, secret, id);
    if (otherSecret !== undefined) {
      throw new SyntaxError(`${named}: secret is account ${otherSecret}'s as well`);
    }
    const apiBase = str("api_base");
    if (apiBase !== undefined && !/^https?:\/\/[^/\s]+/.test(apiBase)) {
      throw new SyntaxError(`${named}: api_base must be an http(s) URL`);
    }
    const agents = entry["agents"];
    if (
      agents !== undefined &&
      (!Array.isArray(agents) || agents.some((a) => typeof a !== "string" || !USER_ID.test(a)))
    ) {
      throw new SyntaxError(`${named}: agents must be a list of userids`);
    }
    const kf = entry["kf_accounts"] ?? {};
    if (
      typeof kf !== "object" || kf === null || Array.isArray(kf) ||
      Object.entries(kf).some(([agent, account]) =>
        !USER_ID.test(agent) || typeof account !== "string" || !/^[^@\s]+@\S+$/.test(account)
      )
    ) {
      throw new SyntaxError(`${named}: kf_accounts must map userids to kf_account@account`);
    }
    return {
      id,
      originalId,
      token,
      aesKey,
      aesKeyPrevious,
      appId,
      secret,
      apiBase: apiBase?.replace(/\/+$/, ""),
      agents: agents === undefined ? null : [...agents as string[]],
      kfAccounts: { ...kf as Record<string, string> },
      autoReplyText: str("auto_reply_text"),
    };
  });
}

/** The account other than `id` that `value` is already recorded for, recording it for `id`
 * otherwise; undefined for no value. Never puts the value in a message: it may be a secret. */
function ownerBesides(
  owners: Map<string, string>,
  value: string | undefined,
  id: string,
): string | undefined {
  if (value === undefined) return undefined;
  const owner = owners.get(value);
  if (owner !== undefined && owner !== id) return owner;
  owners.set(value, id);
  return undefined;
}

/** The accounts `agent` serves, in the file's order. */
export function accountsOf(accounts: AccountConfig[], agent: string): AccountConfig[] {
  return accounts.filter((a) => a.agents === null || a.agents.includes(agent));
}
