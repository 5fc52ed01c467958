// What an agent id may be: the one rule for `userid` in URLs and `sub` in tokens, so an id the
// stores, keys and logs cannot hold never gets in by either door.

import { SYSTEM_CONTACT } from "../protocol/envelope.ts";

/** Letters, digits and `_ . @ : -`, 1 to 64 of them. */
const AGENT_ID = /^[\p{L}\p{N}_.@:-]{1,64}$/u;

/** The rule, as error messages say it. */
export const AGENT_ID_RULE = `1-64 letters, digits or _ . @ : -, not ${SYSTEM_CONTACT}`;

/** True when `text` is a well-formed agent id. */
export function isAgentId(text: string): boolean {
  // The system's contact_id: an agent under it would write into colleagues' system thread.
  return AGENT_ID.test(text) && text !== SYSTEM_CONTACT;
}
