// A journal line of the SQLite store: every section read back as written, ids that need
// escaping, JSON that holds the characters the format uses, and lines cut short refused.

import assert from "node:assert/strict";
import { CommitLine, commitOfBytes, parseCommitLine } from "../../src/store/sqlite_journal_line.ts";

Deno.test("parseCommitLine() reads back what CommitLine wrote", async (t) => {
  // Ids with quotes, a backslash, a newline and the separator itself; content with all of
  // those, as JSON.stringify escapes them.
  const odd = 'o"d\\d\n\x1fid 长';
  const frame = JSON.stringify({ data: { msg: { content: 'line\nnext \x1f "q" 长' } } });
  const line = new CommitLine(42, 1_764_000_000_000);
  line.log(odd, 7, frame);
  line.history("f1", 3, '{"direction":"in"}');
  line.queued("f2", 1, 9, frame);
  line.dequeued("f2", 1);
  line.contact(["f1", '{"follower_id":"f1"}', null, 5, null]);
  line.contact(["f2", '{"follower_id":"f2"}', "a1", 6, 7]);
  line.agent("a1", '{"agent_id":"a1"}');
  line.dedup("msg:1", 99);
  line.forgotten("f3");
  line.outcome("f1", 3, "failed", "errcode 45015");
  line.outcome("f1", 4, "sent");
  line.quickReply("q1", '{"id":"q1"}');
  line.quickReplyDeleted("q2");
  const text = line.text();

  await t.step("one line, whatever the content", () => {
    assert.equal(text.indexOf("\n"), text.length - 1);
  });
  await t.step("every section, in order", () => {
    assert.deepEqual(parseCommitLine(text.slice(0, -1)), {
      id: 42,
      t: 1_764_000_000_000,
      l: [[odd, 7, frame]],
      h: [["f1", 3, '{"direction":"in"}']],
      q: [["f2", 1, 9, frame]],
      d: [["f2", 1]],
      c: [["f1", '{"follower_id":"f1"}', null, 5, null], [
        "f2",
        '{"follower_id":"f2"}',
        "a1",
        6,
        7,
      ]],
      a: [["a1", '{"agent_id":"a1"}']],
      k: [["msg:1", 99]],
      f: ["f3"],
      u: [["f1", 3, "failed", "errcode 45015"], ["f1", 4, "sent"]],
      p: [["q1", '{"id":"q1"}']],
      x: ["q2"],
    });
  });
  await t.step("from the bytes the journal wrote", () => {
    assert.deepEqual(commitOfBytes(new TextEncoder().encode(text)).l, [[odd, 7, frame]]);
  });
  await t.step("a line cut short is refused, not read in part", () => {
    for (const cut of [text.lastIndexOf("\x1f"), text.indexOf("\x1fh\x1f") + 3, 1]) {
      assert.throws(() => parseCommitLine(text.slice(0, cut)), SyntaxError, `cut at ${cut}`);
    }
  });
});
