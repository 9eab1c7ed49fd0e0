/** The message of anything thrown, for a person. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
