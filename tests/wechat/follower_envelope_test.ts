// CreateTime as the envelope's send_time (SPEC): a number as is, a date as China time (+08:00),
// anything else the time the message was received.

import assert from "node:assert/strict";
import { parseSendTime } from "../../src/wechat/follower_envelope.ts";

const RECEIVED_MS = Date.UTC(2026, 0, 2, 3, 4, 5);
const RECEIVED_S = RECEIVED_MS / 1000;

Deno.test("parseSendTime() reads CreateTime as SPEC says", async (t) => {
  await t.step("a number is Unix seconds", () => {
    assert.equal(parseSendTime("1348831860", RECEIVED_MS), 1348831860);
  });
  await t.step("the seed's date is China time", () => {
    assert.equal(
      parseSendTime("1976-04-10 12:21:47", RECEIVED_MS),
      Date.UTC(1976, 3, 10, 4, 21, 47) / 1000,
    );
    assert.equal(
      parseSendTime("1976-04-10 12:21", RECEIVED_MS),
      Date.UTC(1976, 3, 10, 4, 21) / 1000,
    );
  });
  await t.step("a date that is no date is the receive time, not another day", () => {
    // Date.UTC rolls these over (30 February is 1 March): the follower did not write then.
    for (
      const text of [
        "1976-02-30 12:21:47",
        "1976-13-01 12:21:47",
        "1976-04-00 12:21:47",
        "1976-04-10 24:00:00",
        "1976-04-10 12:60:00",
        "1976-04-10 12:21:60",
      ]
    ) {
      assert.equal(parseSendTime(text, RECEIVED_MS), RECEIVED_S, text);
    }
  });
  await t.step("anything else is the receive time", () => {
    for (const text of ["", "garbage", "-5"]) {
      assert.equal(parseSendTime(text, RECEIVED_MS), RECEIVED_S, text);
    }
  });
});
