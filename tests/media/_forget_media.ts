// What the tests of a forgotten follower's media files share: its pictures, the revoke WeChat's
// push service sends, and whether a file is on disk.

/** A PNG-looking body of `size` bytes, different for each `seed`. */
export function png(seed: number, size = 3_000): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 8; i < size; i++) bytes[i] = (i * seed + seed) % 251;
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return bytes;
}

/** A follower's picture, as WeChat posts it. */
export function imageXml(follower: string, mediaId: string, msgId: string): string {
  return `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[${follower}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://127.0.0.1:9/none.png]]></PicUrl><MediaId><![CDATA[${mediaId}]]></MediaId><MsgId>${msgId}</MsgId></xml>`;
}

/** WeChat's push service names the user in <OpenID>. */
export function revokeXml(follower: string): string {
  return `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[owPushService]]></FromUserName><CreateTime>1700000001</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[${follower}]]></OpenID><AppID><![CDATA[wxtest]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>`;
}
