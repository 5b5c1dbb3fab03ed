import { AppError } from "./errors";

/**
 * The API's one list convention (besides the catalogue's page/size, the original
 * system's contract): an opaque `cursor` naming the last row of the previous page
 * and a `nextCursor` (null on the last page). A page is read by an index range
 * starting after that row, so a page costs D1 its own rows whatever came before it.
 * The text is base64url of `<tag>:<id>`; the tag keeps one list's cursor from being
 * taken by another.
 */
export function encodeCursor(id: number, tag = "h"): string {
  return btoa(`${tag}:${id}`).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

/** The id after which the page starts (0 without a cursor); 400 VALIDATION_FAILED for anything this API did not issue. */
export function decodeCursor(cursor: string | undefined, tag = "h"): number {
  if (cursor === undefined) return 0;
  try {
    const text = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
    const match = new RegExp(`^${tag}:([1-9][0-9]{0,15})$`).exec(text);
    const id = match ? Number(match[1]) : NaN;
    if (Number.isSafeInteger(id)) return id;
  } catch {
    // fall through
  }
  throw new AppError("VALIDATION_FAILED", "cursor: not a cursor returned by this API");
}
