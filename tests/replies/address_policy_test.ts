// Which addresses an agent's media_url may reach (address_policy.ts), judged alone: the media_url
// tests drive the same function through a real bridge with private answers.

import assert from "node:assert/strict";
import { isPublicAddress } from "../../src/replies/address_policy.ts";

Deno.test("isPublicAddress() takes the public internet in every spelling a resolver gives", () => {
  for (
    const address of [
      "93.184.216.34",
      "::ffff:93.184.216.34", // IPv4-mapped: what a dual-stack socket reports
      "2606:2800:220:1:248:1893:25c8:1946",
      "[2001:4860:4860::8888]",
      // DNS64's answer for an IPv4-only host, on an IPv6-only server behind NAT64 (RFC 6052's
      // well-known prefix, which a translator may only use for global IPv4 addresses).
      "64:ff9b::5db8:d822",
      "64:ff9b::93.184.216.34",
    ]
  ) {
    assert.equal(isPublicAddress(address), true, address);
  }
});

Deno.test("isPublicAddress() refuses private IPv4 inside any IPv6 form, NAT64 included", () => {
  for (
    const address of [
      "127.0.0.1",
      "::1",
      "::ffff:127.0.0.1",
      "::127.0.0.1",
      "64:ff9b::7f00:1", // loopback behind the well-known NAT64 prefix
      "64:ff9b::a9fe:a9fe", // cloud metadata
      "64:ff9b::10.0.0.7",
      "64:ff9b::100.64.0.1",
      "64:ff9b:1::5db8:d822", // RFC 8215's local-use prefix: the network's own, it maps anything
      "2002:7f00:1::1", // 6to4
      "2001::1", // Teredo
      "fd00::1",
      "fe80::1",
      "2001:db8::1",
      "3fff::1",
      "not an address",
    ]
  ) {
    assert.equal(isPublicAddress(address), false, address);
  }
});
