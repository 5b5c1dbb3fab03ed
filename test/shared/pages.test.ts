import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ADMIN_TOKEN } from "../support/http";

/** The pages outside /api: the operator console and the docs UI, served whole by this Worker. */
const get = (path: string) => exports.default.fetch(new Request(`http://localhost${path}`));

describe("GET /admin/console", () => {
  it("serves the page, its module and its stylesheet with their content types and a strict CSP", async () => {
    const expected: Record<string, string> = {
      "/admin/console": "text/html; charset=utf-8",
      "/admin/console.js": "text/javascript; charset=utf-8",
      "/admin/console.css": "text/css; charset=utf-8",
    };
    for (const [path, type] of Object.entries(expected)) {
      const res = await get(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toBe(type);
      expect(res.headers.get("x-content-type-options"), path).toBe("nosniff");
      const csp = res.headers.get("content-security-policy") ?? "";
      expect(csp, path).toContain("script-src 'self'");
      expect(csp, path).toContain("default-src 'none'");
      expect(csp, path).not.toContain("unsafe-inline");
      expect(csp, path).toContain("frame-ancestors 'none'");
    }
  });

  it("carries no secret and no inline script: the page loads its module by URL, the token is typed by the operator", async () => {
    const html = await (await get("/admin/console")).text();
    expect(html).toContain('<script type="module" src="/admin/console.js"></script>');
    expect(html.match(/<script/g)).toHaveLength(1);
    expect(html).not.toContain(ADMIN_TOKEN);
    expect(html).not.toMatch(/style=/);
    const js = await (await get("/admin/console.js")).text();
    expect(js).not.toContain(ADMIN_TOKEN);
    expect(js).toContain("sessionStorage");
    expect(js).not.toContain("localStorage");
    expect(js).not.toContain("innerHTML");
  });
});

describe("GET /docs", () => {
  it("loads Swagger UI from this Worker, never from a CDN", async () => {
    const html = await (await get("/docs")).text();
    expect(html).not.toMatch(/https?:\/\//);
    const sources = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(sources).toEqual(["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/init.js"]);
    const bundle = await get("/docs/swagger-ui-bundle.js");
    expect([bundle.status, bundle.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
    const js = await bundle.text();
    expect(js.length).toBeGreaterThan(1_000_000);
    expect(js).toContain("SwaggerUIBundle");
    expect(js).not.toContain("sourceMappingURL=");
    const css = await get("/docs/swagger-ui.css");
    expect([css.status, css.headers.get("content-type")]).toEqual([200, "text/css; charset=utf-8"]);
    expect((await css.text()).length).toBeGreaterThan(100_000);
    const init = await (await get("/docs/init.js")).text();
    expect(init).toContain('url: "/openapi.json"');
    expect((await get("/docs")).headers.get("content-security-policy")).toContain("script-src 'self'");
  });
});
