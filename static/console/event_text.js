// The sentence the console shows for a follower's event or a notice about one (a menu tap, a
// scan, a place, a message of a type it cannot show), in the console's language, built from the
// envelope's fields: the bridge's own `text` is Chinese (src/wechat/event_text.ts), which an
// English console showed as it was. Plain module, no DOM.

const str = (v) => typeof v === "string" ? v : typeof v === "number" ? String(v) : "";
const obj = (v) => typeof v === "object" && v !== null && !Array.isArray(v) ? v : {};

/** The string-table key and parameters for the system notice `m`, or null when the table has
 * none for its event. */
export function eventKey(m) {
  const name = str(m?.follower_name) || str(m?.follower_id);
  const event = str(m?.event);
  const key = str(m?.event_key);
  const scan = obj(m?.scan_code_info);
  const pics = obj(m?.send_pics_info);
  const place = obj(m?.send_location_info);
  switch (event) {
    case "subscribe":
      return key.startsWith("qrscene_")
        ? { key: "sys.subscribe_scan", params: { name, scene: key.slice("qrscene_".length) } }
        : { key: "sys.subscribe", params: { name } };
    case "SCAN":
    case "CLICK":
    case "VIEW":
    case "view_miniprogram":
      return { key: `sys.${event}`, params: { name, key } };
    case "LOCATION":
      return {
        key: "sys.LOCATION",
        params: {
          name,
          lat: str(m.latitude),
          lon: str(m.longitude),
          precision: str(m.precision),
        },
      };
    case "scancode_push":
    case "scancode_waitmsg":
      return {
        key: `sys.${event}`,
        params: { name, type: str(scan.scan_type), result: str(scan.scan_result) },
      };
    case "pic_sysphoto":
    case "pic_photo_or_album":
    case "pic_weixin":
      return { key: `sys.${event}`, params: { name, n: str(pics.count) || "0" } };
    case "location_select":
      return {
        key: "sys.location_select",
        params: { name, label: str(place.label).trim() || str(place.poiname) || "—" },
      };
    case "unknown_type":
      return { key: "sys.unknown_type", params: { name, type: str(m.msg_type) || "?" } };
    case "kf_create_session":
    case "kf_close_session":
      return { key: `sys.${event}`, params: { name, kf: str(m.kf_account) } };
    case "kf_switch_session":
      return {
        key: "sys.kf_switch_session",
        params: { name, from: str(m.from_kf_account), to: str(m.to_kf_account) },
      };
    case "MASSSENDJOBFINISH":
      return {
        key: "sys.MASSSENDJOBFINISH",
        params: {
          id: str(m.msg_id),
          status: str(m.status),
          total: str(m.total_count),
          filtered: str(m.filter_count),
          sent: str(m.sent_count),
          failed: str(m.error_count),
        },
      };
    case "TEMPLATESENDJOBFINISH":
      return str(m.status) === "success"
        ? { key: "sys.template_sent", params: { name } }
        : { key: "sys.template_failed", params: { name, status: str(m.status) } };
    case "unsubscribe":
    case "user_info_modified":
    case "user_authorization_revoke":
    case "user_authorization_cancellation":
      return { key: `sys.${event}`, params: { name } };
    default:
      return null;
  }
}

/** Whether `text` is in Chinese (the bridge's own sentences are). */
const chinese = (text) => /[\u3400-\u9fff]/.test(text);

/**
 * The sentence for the system notice `m` (PROTOCOL.md, system 102) in `lang`: from the string
 * table where it has the notice's event; else the bridge's `text` when it is in `lang`'s
 * language, else a plain "{name}: WeChat event {event}". `t` is createTranslator(lang).
 */
export function eventText(m, t, lang) {
  const name = str(m?.follower_name) || str(m?.follower_id);
  const found = eventKey(m);
  if (found) return t(found.key, found.params);
  // The notices of the bridge's own (assigned, closed, window_*…) have keys of their own.
  const own = `sys.${str(m?.event)}`;
  const ownText = t(own, { name, agent: str(m?.agent_id), to: str(m?.to) });
  if (ownText !== own) return ownText;
  const text = str(m?.text);
  if (text && (lang === "zh-CN" || !chinese(text))) return text;
  if (!m?.event) return text;
  return t("sys.event", { name: name || t("sys.account"), event: str(m.event) });
}

// The bridge's sentences (src/wechat/event_text.ts describeEvent), read back into the event and
// fields they were made from: GET contacts gives a conversation's last message as that sentence
// only. tests/console/event_text_test.ts checks each against the bridge's own wording.
const BRIDGE_SENTENCES = [
  [
    /^(.+) 扫码关注了公众号（场景 (.*)）$/u,
    (v) => ({ event: "subscribe", event_key: `qrscene_${v[0]}` }),
  ],
  [/^(.+) 取消关注了公众号，之后的回复将无法送达$/u, () => ({ event: "unsubscribe" })],
  [/^(.+) 关注了公众号$/u, () => ({ event: "subscribe" })],
  [
    /^(.+) 扫描了带参数二维码(?:（场景 (.*)）)?$/u,
    (v) => ({ event: "SCAN", event_key: v[0] ?? "" }),
  ],
  [
    /^(.+) 上报了地理位置：纬度 (.*)，经度 (.*)，精度 (.*) 米$/u,
    (v) => ({ event: "LOCATION", latitude: v[0], longitude: v[1], precision: v[2] }),
  ],
  [/^(.+) 点击了菜单（(.*)）$/u, (v) => ({ event: "CLICK", event_key: v[0] })],
  [/^(.+) 点击菜单打开了网页 (.*)$/u, (v) => ({ event: "VIEW", event_key: v[0] })],
  [
    /^(.+) 点击菜单打开了小程序页面 (.*)$/u,
    (v) => ({ event: "view_miniprogram", event_key: v[0] }),
  ],
  [
    /^(.+) 通过菜单扫码并等待回复（(.*)），结果：(.*)$/u,
    (v) => ({ event: "scancode_waitmsg", scan_code_info: { scan_type: v[0], scan_result: v[1] } }),
  ],
  [
    /^(.+) 通过菜单扫码（(.*)），结果：(.*)$/u,
    (v) => ({ event: "scancode_push", scan_code_info: { scan_type: v[0], scan_result: v[1] } }),
  ],
  [
    /^(.+) 通过菜单拍照发图（(\d+) 张）$/u,
    (v) => ({ event: "pic_sysphoto", send_pics_info: { count: v[0] } }),
  ],
  [
    /^(.+) 通过菜单拍照或从相册发图（(\d+) 张）$/u,
    (v) => ({ event: "pic_photo_or_album", send_pics_info: { count: v[0] } }),
  ],
  [
    /^(.+) 通过菜单从微信相册发图（(\d+) 张）$/u,
    (v) => ({ event: "pic_weixin", send_pics_info: { count: v[0] } }),
  ],
  [
    /^(.+) 通过菜单发送了位置：(.*)$/u,
    (v) => ({ event: "location_select", send_location_info: { label: v[0] } }),
  ],
  [/^(.+) 发来一条暂不支持的 (.+) 类型消息$/u, (v) => ({ event: "unknown_type", msg_type: v[0] })],
  [
    /^(.+) 的资料有风险，已被微信清理：请更新或清理其昵称和头像$/u,
    () => ({ event: "user_info_modified" }),
  ],
  [/^(.+) 撤回了授权，其资料和会话记录已删除$/u, () => ({ event: "user_authorization_revoke" })],
  [
    /^(.+) 注销了微信账号，其资料和会话记录已删除$/u,
    () => ({ event: "user_authorization_cancellation" }),
  ],
  [
    /^客服 (.*) 接入了与 (.+) 的会话（微信客服工具）$/u,
    (_, all) => ({ event: "kf_create_session", kf_account: all[0], follower_name: all[1] }),
  ],
  [
    /^客服 (.*) 关闭了与 (.+) 的会话（微信客服工具）$/u,
    (_, all) => ({ event: "kf_close_session", kf_account: all[0], follower_name: all[1] }),
  ],
  [
    /^群发任务 (.*) 已结束（(.*)）：共 (.*) 人，过滤后 (.*) 人，成功 (.*) 人，失败 (.*) 人$/u,
    (_, all) => ({
      event: "MASSSENDJOBFINISH",
      follower_name: "",
      msg_id: all[0],
      status: all[1],
      total_count: all[2],
      filter_count: all[3],
      sent_count: all[4],
      error_count: all[5],
    }),
  ],
  [/^(.+) 触发了事件 (\S+?)(?:（.*）)?$/u, (v) => ({ event: v[0] })],
];

/** The notice (event and fields, as eventText takes them) a bridge's sentence was made from,
 * or null when it is none of them (cut at 80 characters, or an account's report). */
export function parseBridgeSentence(text) {
  for (const [pattern, fields] of BRIDGE_SENTENCES) {
    const found = String(text ?? "").match(pattern);
    // Most name the follower first; the few that do not say who in their fields.
    if (found) return { follower_name: found[1], ...fields(found.slice(2), found.slice(1)) };
  }
  return null;
}

/** What the list says of a conversation whose last message is a notice the bridge previewed
 * as `text` (its Chinese sentence): in `lang`, read back from that sentence where it can be. */
export function noticePreview(text, t, lang) {
  if (lang === "zh-CN" || !chinese(String(text ?? ""))) return String(text ?? "");
  const m = parseBridgeSentence(text);
  return m ? eventText(m, t, lang) : t("sys.someEvent");
}
