// The window and quota pills (static/console/pills.js) and the filters that read the same rule:
// an unfollowed follower or a closed window promises no replies, the last minute is not "0m".

import assert from "node:assert/strict";
import { quotaPill, windowPill } from "../../static/console/pills.js";
import { formatDuration } from "../../static/console/i18n.js";
import { createTranslator } from "../../static/console/i18n.js";
import { matchesTriage } from "../../static/console/triage.js";
import { WINDOW_S } from "../../static/console/limits.js";

const now = 1_800_000_000;
const en = createTranslator("en");
const zh = createTranslator("zh-CN");

Deno.test("an unfollowed follower's pills promise nothing, and it is not 'closing'", () => {
  const c = { last_inbound_time: now - 60, subscribed: false };
  const win = windowPill(c, now, en, "en");
  assert.equal(win.state, "unsubscribed");
  assert.equal(win.label, "Unfollowed");
  assert.equal(windowPill(c, now, zh, "zh-CN").label, "已取消关注");
  assert.equal(quotaPill(c, now, en), null);
  const closing = { last_inbound_time: now - WINDOW_S + 600, subscribed: false };
  assert.equal(matchesTriage(closing, "closing", "a", now), false);
  assert.equal(matchesTriage({ ...closing, subscribed: true }, "closing", "a", now), true);
});

Deno.test("a closed window has no quota pill; an open one counts WeChat's replies", () => {
  const follow = { window_expires_at: now + 57, reply_quota: 3 };
  assert.equal(windowPill(follow, now, en, "en").label, "<1m left");
  assert.equal(windowPill(follow, now, zh, "zh-CN").label, "剩余 不到 1 分钟");
  assert.equal(quotaPill(follow, now, en)?.text, "3 of 3 replies left");
  assert.equal(windowPill(follow, now + 120, en, "en").label, "Window closed");
  assert.equal(quotaPill(follow, now + 120, en), null);
  assert.equal(quotaPill({ last_inbound_time: now, window_closed: true }, now, en), null);
  assert.equal(quotaPill({}, now, en), null, "no window known");
  assert.equal(quotaPill({ kind: "agent" }, now, en), null);
});

Deno.test("formatDuration() never says 0m of a window still open", () => {
  assert.equal(formatDuration(57, "en"), "<1m");
  assert.equal(formatDuration(0, "en"), "0m");
  assert.equal(formatDuration(61, "en"), "1m");
  assert.equal(formatDuration(3 * 3600 + 300, "en"), "3h 05m");
});
