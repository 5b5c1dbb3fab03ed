import { Hono } from "hono";
import type { AppEnv } from "../app-env";
import { CONSOLE_CSS, CONSOLE_HTML, CONSOLE_JS } from "./assets.generated";

/**
 * The page may load only what this Worker serves (its module and stylesheet) and call only
 * this origin; no inline script or style, no framing, no form posts elsewhere. The page
 * carries no secret: the operator types the admin token, kept in the tab's sessionStorage.
 */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const asset = (body: string, type: string) => ({ body, type });
const ASSETS = {
  "/admin/console": asset(CONSOLE_HTML, "text/html; charset=utf-8"),
  "/admin/console.js": asset(CONSOLE_JS, "text/javascript; charset=utf-8"),
  "/admin/console.css": asset(CONSOLE_CSS, "text/css; charset=utf-8"),
} as const;

/** `/admin/console` and its two files: the operator console (src/console/console.js says what it shows). */
export const consoleRoutes = new Hono<AppEnv>();
for (const [path, { body, type }] of Object.entries(ASSETS)) {
  consoleRoutes.get(path, (c) => {
    c.header("Content-Security-Policy", CONSOLE_CSP);
    // Revalidated on every load: a deploy must not leave an old module against a new API.
    c.header("Cache-Control", "no-cache");
    c.header("X-Content-Type-Options", "nosniff");
    return c.body(body, 200, { "Content-Type": type });
  });
}
