// PowerFlex-style object ids: 16 lowercase hex digits, "<8 hex type prefix><8 hex counter>".
// The counter half is unique across all objects of a system, so the data plane can key a
// volume by its low 32 bits and still check the high half.

export const ID_PATTERN = /^[0-9a-f]{16}$/;

export function isId(s: string): boolean {
  return ID_PATTERN.test(s);
}

/** Split a 16-hex id into its two u32 halves (for the binary data plane). */
export function idToHalves(id: string): { hi: number; lo: number } {
  if (!isId(id)) throw new Error(`not a 16-hex id: ${JSON.stringify(id)}`);
  return { hi: Number.parseInt(id.slice(0, 8), 16), lo: Number.parseInt(id.slice(8), 16) };
}

export function halvesToId(hi: number, lo: number): string {
  return hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
}
