// Two official accounts for the accounts tests: their credentials, the ACCOUNTS_FILE naming
// them, and callbacks encrypted and signed by wechat-crypto (the other side) as WeChat sends them.

import WXBizMsgCrypt from "wechat-crypto";
import { computeSignature } from "../../src/wechat/signature.ts";
import type { FakeWechat } from "../../tools/fake_wechat.ts";

export interface Account {
  id: string;
  originalId: string;
  token: string;
  aesKey: string;
  appId: string;
  secret: string;
  agents: string[];
  /** The kf account (客服账号) each agent's replies show in this account. */
  kfAccounts: Record<string, string>;
}

export const A: Account = {
  id: "brand-a",
  originalId: "gh_aaaa00000001",
  token: "token-of-brand-a",
  aesKey: "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
  appId: "wxaaaa000000000001",
  secret: "secret-a",
  agents: ["alice", "carol"],
  kfAccounts: { alice: "kf2001@brand_a", carol: "kf2002@brand_a" },
};
export const Bq: Account = {
  id: "brand-b",
  originalId: "gh_bbbb00000002",
  token: "token-of-brand-b",
  aesKey: "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
  appId: "wxbbbb000000000002",
  secret: "secret-b",
  agents: ["bob", "carol"],
  kfAccounts: { bob: "kf3001@brand_b", carol: "kf3002@brand_b" },
};

let counter = 0;

/** A number no other call gave. */
export const next = () => ++counter;

/** A safe-mode callback for `account`, encrypted and signed by wechat-crypto as WeChat does. */
export function encryptedCallback(account: Account, plainXml: string, as: Account = account) {
  const cryptor = new WXBizMsgCrypt(as.token, as.aesKey, as.appId);
  const encrypt = cryptor.encrypt(plainXml);
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = `acct${next()}`;
  const query = new URLSearchParams({
    signature: computeSignature(as.token, timestamp, nonce),
    timestamp,
    nonce,
    encrypt_type: "aes",
    msg_signature: cryptor.getSignature(timestamp, nonce, encrypt),
  });
  const body =
    `<xml><ToUserName><![CDATA[${account.originalId}]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`;
  return { query, body };
}

/** Writes `entries` as ACCOUNTS_FILE in `dir`, readable by its owner only; returns its path. */
export async function writeAccounts(dir: string, entries: Record<string, unknown>[]) {
  const file = `${dir}/accounts.json`;
  await Deno.writeTextFile(file, JSON.stringify({ accounts: entries }), { mode: 0o600 });
  return file;
}

/** Writes ACCOUNTS_FILE for both accounts in `dir`, each with its own fake WeChat. */
export async function writeAccountsFile(
  dir: string,
  fakes: Record<string, FakeWechat>,
): Promise<string> {
  const entry = (a: Account) => ({
    id: a.id,
    original_id: a.originalId,
    token: a.token,
    aes_key: a.aesKey,
    appid: a.appId,
    secret: a.secret,
    api_base: fakes[a.id]!.url,
    agents: a.agents,
    kf_accounts: a.kfAccounts,
  });
  const file = `${dir}/accounts.json`;
  await Deno.writeTextFile(file, JSON.stringify({ accounts: [entry(A), entry(Bq)] }, null, 2), {
    mode: 0o600,
  });
  return file;
}
