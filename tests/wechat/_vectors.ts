// The public WeChat crypto and signature vectors, copied into tests/fixtures/wechat/vectors.json
// (sources in tests/fixtures/README.md), typed once for the tests that read them.

/** A callback signature: `signature` over token, timestamp and nonce. */
export interface SignatureVector {
  id: string;
  token: string;
  timestamp: string;
  nonce: string;
  signature: string;
  must_fail_with?: string;
}

/** A safe-mode frame: `encrypt` opens to `plaintext` with `aes_key` for `appid`. Encrypt
 * vectors also give the 16 random bytes; signed ones give `msg_signature` and its parts. */
export interface MessageVector {
  id: string;
  aes_key: string;
  appid: string;
  plaintext: string;
  encrypt: string;
  random?: string;
  token?: string;
  timestamp?: string;
  nonce?: string;
  msg_signature?: string;
}

/** An encrypt vector: a message vector with its random bytes. */
export type EncryptVector = MessageVector & { random: string };

/** A msg_signature over a published ciphertext whose key was not published. */
export interface MsgSignatureVector {
  id: string;
  token: string;
  timestamp: string;
  nonce: string;
  encrypt: string;
  msg_signature: string;
}

/** The vector file. */
export const vectors: {
  signature: SignatureVector[];
  encrypt: EncryptVector[];
  decrypt: MessageVector[];
  msg_signature: MsgSignatureVector[];
} = JSON.parse(
  await Deno.readTextFile(new URL("../fixtures/wechat/vectors.json", import.meta.url)),
);
