// Whole numbers in an agent's query (`since=`, `limit=`): decimal digits only, as the refusals
// say. Number() took 0x10, 1e3, " 1" and 1.0 too.

const DIGITS = /^[0-9]{1,15}$/;

/** `raw` as a whole number when it is decimal digits (at most 15), else null. */
export function wholeNumberOf(raw: string): number | null {
  return DIGITS.test(raw) ? Number(raw) : null;
}
