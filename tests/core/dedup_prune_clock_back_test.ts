// Review of 7db0d8d: Model.pruneSeen() stops at the first live key, which assumes the keys are
// held in the order they expire. A clock that was ahead and is set back breaks that order: one
// key recorded while it was ahead sits first with a far expiry, and every key recorded after
// the correction stays held behind it, expired, until that far expiry (the step, not "at most
// one TTL longer" as the comment says). A VM booting with a wrong clock a day ahead, corrected
// by NTP a minute later, holds every retry key of the next day: the memory the 1 h TTL saved.

import assert from "node:assert/strict";
import type { Envelope } from "../../src/protocol/envelope.ts";
import type { InboundItem, Presence } from "../../src/core/store.ts";
import { Model } from "../../src/core/model.ts";

const TTL = 1_000;
const DAY = 86_400_000;
const nobody: Presence = { isOnline: () => false, onlineAgents: () => [] };

function item(id: string, at: number): InboundItem {
  const envelope: Envelope = {
    data: {
      id,
      name: "oA",
      avatar: "",
      msg_type: "text",
      contact_id: "oA",
      company_id: "",
      send_time: 1_700_000_000,
      msg: { content: id },
    },
    result: { code: 1001, message: "common" },
  };
  return {
    followerId: "oA",
    name: null,
    to: "",
    envelope,
    kind: "message",
    receivedAt: at,
    dedupKey: `m|${id}`,
  };
}

Deno.test("Model.pruneSeen() forgets expired keys after a clock set back a day", () => {
  const m = new Model({ companyId: "", now: () => 0, newId: () => "id", dedupTtlMs: TTL });
  // One message while the clock is a day ahead; then the clock is set back to the true time.
  assert.equal(m.inbound(item("ahead", DAY), nobody), "waiting");
  for (let i = 0; i < 1_000; i++) {
    assert.equal(m.inbound(item(`k${i}`, i), nobody), "waiting");
  }
  // Two TTLs past the last of those keys' expiry (1,999), with the prune run every "minute".
  for (let now = 0; now <= 4_000; now += 100) m.pruneSeen(now);
  const held = [...m.seen.keys()].filter((k) => k !== "m|ahead").length;
  assert.equal(held, 0, `${held} keys past their time still held, two TTLs after they expired`);
});
