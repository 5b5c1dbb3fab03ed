import { Hono } from "hono";
import type { AppEnv } from "../app-env";

/**
 * `/docs`: Swagger UI on the served `/openapi.json`, with its script and stylesheet served by
 * this Worker (swagger-ui-dist, pinned; inlined by scripts/gen-assets.mjs), so the page works
 * offline on `npm run dev`. The 1.9 MB module is imported when someone opens the docs, not at startup.
 */
const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Edge Commerce API docs</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
`;

const INIT = `window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });\n`;

/** Swagger UI sets inline styles and uses data: images; everything else comes from this origin. */
export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const files: Record<string, { type: string; load: () => Promise<string>; cache: string }> = {
  "/docs": { type: "text/html; charset=utf-8", load: async () => PAGE, cache: "no-cache" },
  "/docs/init.js": { type: "text/javascript; charset=utf-8", load: async () => INIT, cache: "no-cache" },
  "/docs/swagger-ui-bundle.js": {
    type: "text/javascript; charset=utf-8",
    load: async () => (await import("./swagger-ui.generated")).SWAGGER_UI_JS,
    cache: "public, max-age=86400",
  },
  "/docs/swagger-ui.css": {
    type: "text/css; charset=utf-8",
    load: async () => (await import("./swagger-ui.generated")).SWAGGER_UI_CSS,
    cache: "public, max-age=86400",
  },
};

export const docsRoutes = new Hono<AppEnv>();
for (const [path, file] of Object.entries(files)) {
  docsRoutes.get(path, async (c) => {
    c.header("Content-Security-Policy", DOCS_CSP);
    c.header("Cache-Control", file.cache);
    c.header("X-Content-Type-Options", "nosniff");
    return c.body(await file.load(), 200, { "Content-Type": file.type });
  });
}
