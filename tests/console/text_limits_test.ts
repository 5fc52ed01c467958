// How long a reply or a note may be, counted as WeChat and the bridge count, and which failed
// replies are worth sending again unchanged.

import assert from "node:assert/strict";
import {
  canRetry,
  editedBox,
  NOTE_MAX_CHARS,
  REPLY_MAX_BYTES,
  textLength,
} from "../../static/console/text_limits.js";
import { NOTE_MAX } from "../../src/agents/agent_messages.ts";

Deno.test("textLength() counts a reply in UTF-8 bytes and a note in characters", () => {
  assert.equal(NOTE_MAX_CHARS, NOTE_MAX, "the bridge's note limit");
  assert.deepEqual(textLength("reply", "说".repeat(682)), {
    used: 2046,
    max: REPLY_MAX_BYTES,
    unit: "bytes",
    near: true,
    over: false,
  });
  assert.equal(textLength("reply", "说".repeat(683)).over, true);
  assert.equal(textLength("reply", "a".repeat(2048)).over, false);
  // What goes is counted: a reply loses its trailing blanks, a note is trimmed, as they go.
  assert.equal(textLength("reply", `${"a".repeat(2048)}\n\n `).over, false);
  assert.equal(textLength("note", `  ${"备".repeat(2000)}  `).over, false);
  assert.equal(textLength("note", "备".repeat(2001)).over, true);
  assert.equal(textLength("note", "备".repeat(1599)).near, false);
  assert.equal(textLength("note", "备".repeat(1600)).near, true);
  // To a colleague: WeChat never sees it.
  assert.equal(textLength("agent", "说".repeat(3000)).over, false);
});

Deno.test("canRetry(): never a text too long, a closed window only once it reopens", () => {
  assert.equal(canRetry({ errcode: 45002 }, true), false);
  assert.equal(canRetry({ errcode: 45047 }, false), false);
  assert.equal(canRetry({ errcode: 45015 }, false), false);
  assert.equal(canRetry({ errcode: 45047 }, true), true);
  assert.equal(canRetry({ limit: "quota" }, false), false);
  assert.equal(canRetry({ errcode: 40003 }, false), true);
  assert.equal(canRetry({ errcode: -1 }, true), true);
  assert.equal(canRetry(null, true), true);
});

Deno.test("editedBox() keeps what the agent typed since under the text taken back", () => {
  assert.equal(editedBox("", "long text"), "long text");
  assert.equal(editedBox("  ", "long text"), "long text");
  assert.equal(editedBox("more", "long text"), "long text\nmore");
  assert.equal(editedBox(undefined, "long text"), "long text");
});
