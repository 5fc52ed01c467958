// A journal line of the SQLite store: every section read back as written, ids that need
// escaping, JSON that holds the characters the format uses, lines cut short refused, and a
// follower message's history item said once, by its log entry.

import assert from "node:assert/strict";
import {
  CommitLine,
  commitOfBytes,
  itemOfFrame,
  parseCommitLine,
  parsedItemOfFrame,
  sameAsFrame,
} from "../../src/store/sqlite_journal_line.ts";
import { seededRandom } from "../helpers/seeded_random.ts";

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
  line.cut("f3", '{"a1":7}');
  line.outcome("f1", { n: 3, id: odd }, { status: "failed", error: "errcode 45015" });
  line.outcome("f1", { n: 4, id: "r4" }, { status: "sent" });
  line.outcome("f1", { n: 5, id: "r5" }, { status: "failed", error: "timeout", unconfirmed: true });
  line.quickReply("q1", '{"id":"q1"}');
  line.quickReplyDeleted("q2");
  line.signedBody("0a".repeat(20), "AbC+/dEf01234567", 1_764_000_301_000);
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
      g: [["f3", '{"a1":7}']],
      u: [
        ["f1", 3, "failed", "errcode 45015", odd, false],
        ["f1", 4, "sent", null, "r4", false],
        ["f1", 5, "failed", "timeout", "r5", true],
      ],
      p: [["q1", '{"id":"q1"}']],
      x: ["q2"],
      s: [["0a".repeat(20), "AbC+/dEf01234567", 1_764_000_301_000]],
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

Deno.test("parseCommitLine() reads a reply's outcome written before it named the reply", () => {
  // `u`, as lines before the `v` section were written: no reply id, so none is checked.
  const US = "\x1f";
  const text = ["9", "1", "u", '"f1"', "3", "failed", '"errcode 45015"', "u", '"f1"', "4"]
    .concat(["sent", "-"]).join(US);
  assert.deepEqual(parseCommitLine(text).u, [
    ["f1", 3, "failed", "errcode 45015", null, false],
    ["f1", 4, "sent", null, null, false],
  ]);
});

Deno.test("parseCommitLine() reads a reply's outcome written before it said unconfirmed", () => {
  // `v`, as lines before the `o` section were written: a reply id, no word on how it failed.
  const US = "\x1f";
  const text = ["9", "1", "v", '"f1"', "3", '"r3"', "failed", '"timeout"'].join(US);
  assert.deepEqual(parseCommitLine(text).u, [["f1", 3, "failed", "timeout", "r3", false]]);
});

Deno.test("a follower message's history item is written once, as its log entry", async (t) => {
  // As the model makes them: the envelope's data, then the logged copy with its seq.
  const data = {
    id: "7000000000000000001",
    name: "f1",
    avatar: "",
    msg_type: "text",
    contact_id: "f1",
    company_id: "acme",
    send_time: 1_700_000_000,
    msg: { content: "你好 \x1f \n" },
  };
  const logged = { ...data, seq: 12 };
  const item = { ...data, direction: "in" };
  const frame = JSON.stringify({ data: logged, result: { code: 1001, message: "common" } });

  await t.step("the store finds it the same, and the line reads back its JSON", () => {
    assert.equal(sameAsFrame(item, logged), true);
    const line = new CommitLine(1, 1);
    line.log("a1", 12, frame);
    line.inbound("f1", 3, 0);
    const commit = parseCommitLine(line.text().slice(0, -1));
    assert.deepEqual(commit.h, [["f1", 3, JSON.stringify(item)]]);
  });
  await t.step("anything else is written out", () => {
    assert.equal(sameAsFrame({ ...item, name: "another" }, logged), false);
    assert.equal(sameAsFrame({ ...data, direction: "out" }, logged), false);
    assert.equal(sameAsFrame({ ...item, status: "sent" }, logged), false);
    assert.equal(sameAsFrame({ direction: "in", ...data }, logged), false, "another order");
    assert.equal(sameAsFrame(item, data), false, "not logged with a seq");
  });
  await t.step("an entry that is not in the line is refused", () => {
    const line = new CommitLine(1, 1);
    line.inbound("f1", 3, 0);
    assert.throws(() => parseCommitLine(line.text().slice(0, -1)), SyntaxError);
  });
});

Deno.test("a history item cut from its frame is the one parsing makes", async (t) => {
  const random = seededRandom(17);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  // Text that looks like the frame's own edges, escapes, and lone surrogates.
  const pieces = [
    ',"seq":12},"result":',
    '},"result":{"code":1,"message":"x"}}',
    '"',
    "\\",
    "\n",
    "\x1f",
    "\ud800",
    "长",
    "😀",
    "seq",
    "",
  ];
  const text = () => Array.from({ length: Math.floor(random() * 4) }, () => pick(pieces)).join("");
  const value = (depth: number): unknown => {
    const kind = Math.floor(random() * (depth > 2 ? 4 : 6));
    if (kind === 0) return text();
    if (kind === 1) return pick([0, -1, 12, 1.5, 1e21, -0, 2 ** 53]);
    if (kind === 2) return pick([true, false, null]);
    if (kind === 3) return { seq: 12 };
    if (kind === 4) return [value(depth + 1), value(depth + 1)];
    const o: Record<string, unknown> = {};
    for (let k = Math.floor(random() * 3); k > 0; k--) {
      o[pick(["seq", "result", "data", text()])] = value(depth + 1);
    }
    return o;
  };
  const frames: Array<[string, number]> = [];
  for (let i = 0; i < 2000; i++) {
    const seq = pick([12, 1, 123456789]);
    const data: Record<string, unknown> = { id: String(i), msg: value(0) };
    for (let k = Math.floor(random() * 3); k > 0; k--) data[text() || "extra"] ??= value(0);
    delete data["seq"];
    data["seq"] = seq;
    const message = pick(["common", text()]);
    frames.push([JSON.stringify({ data, result: { code: pick([1001, -1]), message } }), seq]);
  }

  await t.step("for frames as the model makes them, whatever their content", () => {
    for (const [frame, seq] of frames) {
      const data = (JSON.parse(frame) as { data: Record<string, unknown> }).data;
      const { seq: _, ...item } = data;
      const expected = JSON.stringify({ ...item, direction: "in" });
      assert.equal(parsedItemOfFrame(frame), expected, frame);
      assert.equal(itemOfFrame(frame, seq), expected, frame);
    }
  });
  await t.step("and for frames of another shape, which are parsed", () => {
    const odd = [
      JSON.stringify({ data: { seq: 12 }, result: { code: 1, message: "m" } }),
      JSON.stringify({ data: { a: 1, seq: 12 }, result: { code: 1, message: "m", extra: 1 } }),
      JSON.stringify({ data: { a: 1, seq: 12 }, result: { code: 1, message: "m" }, more: 1 }),
      JSON.stringify({ result: { code: 1, message: "m" }, data: { a: 1, seq: 12 } }),
      JSON.stringify({ data: { a: 1, seq: 13 }, result: { code: 1, message: "m" } }),
      // The frame's edge again, inside what follows the data.
      JSON.stringify({
        data: { a: 1, seq: 12 },
        result: { code: 1, message: "m", more: { b: 1, seq: 12 }, result: 1 },
      }),
    ];
    for (const frame of odd) assert.equal(itemOfFrame(frame, 12), parsedItemOfFrame(frame), frame);
  });
});
