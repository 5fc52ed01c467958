// The sentence an agent reads for each event WeChat documents, in the agents' language (zh-CN):
// who did what, with what the event carries (scene, scan result, place, counts, templates).
// An event not listed still gets a sentence, with its raw name.

type Fields = Record<string, unknown>;

const str = (v: unknown): string => typeof v === "string" ? v : typeof v === "number" ? `${v}` : "";
const obj = (v: unknown): Fields =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? v as Fields : {};
const list = (v: unknown): Fields[] =>
  Array.isArray(v) ? v.map(obj) : v === undefined || v === "" ? [] : [obj(v)];
const scene = (key: string) => key ? `（场景 ${key}）` : "";

/** Subscribe-message templates by what the follower chose: `accept` 2 个，`reject` 1 个. */
function templates(items: Fields[], statusField: string): string {
  const accepted = items.filter((i) => str(i[statusField]) === "accept").length;
  const rejected = items.filter((i) => str(i[statusField]) === "reject").length;
  const other = items.length - accepted - rejected;
  const parts = [];
  if (accepted) parts.push(`同意 ${accepted} 个`);
  if (rejected) parts.push(`拒绝 ${rejected} 个`);
  if (other) parts.push(`其他 ${other} 个`);
  return parts.length ? parts.join("，") : "无模板";
}

/** The sentence for `event`; `who` names the follower (or the account, for reports). */
export function describeEvent(who: string, event: string, f: Fields): string {
  const key = str(f["event_key"]);
  const scan = obj(f["scan_code_info"]);
  const pics = obj(f["send_pics_info"]);
  const place = obj(f["send_location_info"]);
  switch (event) {
    case "subscribe":
      return key.startsWith("qrscene_")
        ? `${who} 扫码关注了公众号${scene(key.slice("qrscene_".length))}`
        : `${who} 关注了公众号`;
    case "unsubscribe":
      return `${who} 取消关注了公众号，之后的回复将无法送达`;
    case "SCAN":
      return `${who} 扫描了带参数二维码${scene(key)}`;
    case "LOCATION":
      return `${who} 上报了地理位置：纬度 ${str(f["latitude"])}，经度 ${
        str(f["longitude"])
      }，精度 ${str(f["precision"])} 米`;
    case "CLICK":
      return `${who} 点击了菜单（${key}）`;
    case "VIEW":
      return `${who} 点击菜单打开了网页 ${key}`;
    case "view_miniprogram":
      return `${who} 点击菜单打开了小程序页面 ${key}`;
    case "scancode_push":
      return `${who} 通过菜单扫码（${str(scan["scan_type"])}），结果：${str(scan["scan_result"])}`;
    case "scancode_waitmsg":
      return `${who} 通过菜单扫码并等待回复（${str(scan["scan_type"])}），结果：${
        str(scan["scan_result"])
      }`;
    case "pic_sysphoto":
      return `${who} 通过菜单拍照发图（${str(pics["count"]) || 0} 张）`;
    case "pic_photo_or_album":
      return `${who} 通过菜单拍照或从相册发图（${str(pics["count"]) || 0} 张）`;
    case "pic_weixin":
      return `${who} 通过菜单从微信相册发图（${str(pics["count"]) || 0} 张）`;
    case "location_select":
      return `${who} 通过菜单发送了位置：${str(place["label"]).trim() || "未命名地点"}${
        str(place["poiname"]) ? `（${str(place["poiname"])}）` : ""
      }`;
    case "subscribe_msg_popup_event":
      return `${who} 在订阅消息弹窗中${
        templates(list(f["subscribe_msg_popup_event"]), "subscribe_status_string")
      }模板`;
    case "subscribe_msg_change_event":
      return `${who} 在设置中更改了订阅消息：${
        templates(list(f["subscribe_msg_change_event"]), "subscribe_status_string")
      }模板`;
    case "subscribe_msg_sent_event": {
      const items = list(f["subscribe_msg_sent_event"]);
      const failed = items.filter((i) => str(i["error_code"]) !== "0").length;
      return `订阅消息已发送给 ${who}：成功 ${items.length - failed} 条，失败 ${failed} 条`;
    }
    case "TEMPLATESENDJOBFINISH":
      return str(f["status"]) === "success"
        ? `模板消息已送达 ${who}`
        : `模板消息未送达 ${who}：${str(f["status"])}`;
    case "MASSSENDJOBFINISH":
      return `群发任务 ${str(f["msg_id"])} 已结束（${str(f["status"])}）：共 ${
        str(f["total_count"])
      } 人，过滤后 ${str(f["filter_count"])} 人，成功 ${str(f["sent_count"])} 人，失败 ${
        str(f["error_count"])
      } 人`;
    case "PUBLISHJOBFINISH": {
      const info = obj(f["publish_event_info"]);
      const status = str(info["publish_status"]);
      return status === "0"
        ? `发布任务 ${str(info["publish_id"])} 已成功发布`
        : `发布任务 ${str(info["publish_id"])} 未成功（状态 ${status}）`;
    }
    case "kf_create_session":
      return `客服 ${str(f["kf_account"])} 接入了与 ${who} 的会话（微信客服工具）`;
    case "kf_close_session":
      return `客服 ${str(f["kf_account"])} 关闭了与 ${who} 的会话（微信客服工具）`;
    case "kf_switch_session":
      return `${who} 的会话由客服 ${str(f["from_kf_account"])} 转给了 ${
        str(f["to_kf_account"])
      }（微信客服工具）`;
    case "user_info_modified":
      return `${who} 的资料有风险，已被微信清理：请更新或清理其昵称和头像`;
    case "user_authorization_revoke":
      return `${who} 撤回了授权，其资料和会话记录已删除`;
    case "user_authorization_cancellation":
      return `${who} 注销了微信账号，其资料和会话记录已删除`;
    case "user_get_card":
      return `${who} 领取了卡券 ${str(f["card_id"])}`;
    case "user_gifting_card":
      return `${who} 转赠了卡券 ${str(f["card_id"])}`;
    case "user_del_card":
      return `${who} 删除了卡券 ${str(f["card_id"])}`;
    case "user_consume_card":
      return `${who} 核销了卡券 ${str(f["card_id"])}`;
    case "user_pay_from_pay_cell":
      return `${who} 通过卡券买单付款（卡券 ${str(f["card_id"])}）`;
    case "user_view_card":
      return `${who} 查看了会员卡 ${str(f["card_id"])}`;
    case "user_enter_session_from_card":
      return `${who} 从卡券 ${str(f["card_id"])} 进入了公众号会话`;
    case "update_member_card":
      return `${who} 的会员卡 ${str(f["card_id"])} 积分或余额有变动`;
    case "card_pass_check":
      return `卡券 ${str(f["card_id"])} 已通过审核`;
    case "card_not_pass_check": {
      // The card docs' own sample has no RefuseReason: no reason, no colon before nothing.
      const reason = str(f["refuse_reason"]);
      return `卡券 ${str(f["card_id"])} 未通过审核${reason ? `：${reason}` : ""}`;
    }
    case "card_sku_remind":
      return `卡券 ${str(f["card_id"])} 库存不足：${str(f["detail"])}`;
    case "card_pay_order":
      return `卡券券点流水 ${str(f["order_id"])}：${str(f["status"])}`;
    case "submerchant_check":
      return `子商户 ${str(f["merchant_id"])} 审核结果：${str(f["is_pass"])} ${str(f["reason"])}`;
    case "qualification_verify_success":
      return "公众号资质认证成功";
    case "qualification_verify_fail":
      return `公众号资质认证失败：${str(f["fail_reason"])}`;
    case "naming_verify_success":
      return "公众号名称认证成功";
    case "naming_verify_fail":
      return `公众号名称认证失败：${str(f["fail_reason"])}`;
    case "annual_renew":
      return "公众号需要年审，请尽快完成";
    case "verify_expired":
      return "公众号认证已过期，请尽快重新认证";
    case "poi_check_notify":
      return `门店 ${str(f["poi_id"])} 审核结果：${str(f["result"])} ${str(f["msg"])}`;
    case "merchant_order":
      return `${who} 下了订单 ${str(f["order_id"])}（商品 ${str(f["product_id"])}）`;
    case "ShakearoundUserShake":
      return `${who} 摇了摇周边设备`;
    case "WifiConnected": {
      // WeChat names the shop in <PlaceId> (its sample, wechatpy's shop_id); ShopId as a fallback.
      const shop = str(f["place_id"]) || str(f["shop_id"]);
      return `${who} 连接了门店 Wi-Fi${shop ? `（门店 ${shop}）` : ""}`;
    }
    case "user_scan_product":
    case "user_scan_product_enter_session":
      return `${who} 扫描了商品 ${str(f["key_str"])}`;
    default:
      return `${who} 触发了事件 ${event}${key ? `（${key}）` : ""}`;
  }
}
