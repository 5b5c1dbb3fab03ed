import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types
import { staleModules } from "../../scripts/gen-assets.mjs";

describe("generated page modules", () => {
  it("match their sources (console.{html,js,css}, the pinned swagger-ui-dist): run `npm run assets` after an edit", () => {
    expect(staleModules()).toEqual([]);
  });
});
