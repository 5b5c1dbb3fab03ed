#!/usr/bin/env node
// @ts-check
/**
 * Documentation references resolve (run by .ci/run; `npx node scripts/check-doc-refs.mjs`):
 *
 * 1. In code (src/, test/, scripts/, wrangler.toml), every `docs/X.md` names a file that exists, every
 *    `docs/X.md §N` (also `§N, §M`) names a heading numbered N in it (`## N. Title`), and every
 *    `docs/X.md, "Title"` a heading that contains Title.
 * 2. No bare `DESIGN §N` is left anywhere (code, README.md, docs/): the design of record is
 *    docs/ARCHITECTURE.md, and a reference to a document outside the repository cannot be followed.
 * 3. Every relative Markdown link in README.md and docs/*.md (`[text](path)`, `![alt](path)`) names a file
 *    that exists, and its `#anchor`, if any, a heading of that file (GitHub's slugs).
 *
 * Prints each broken reference as `file:line: what` and exits 1 when there is one.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CODE_ROOTS = ["src", "test", "scripts", "wrangler.toml"];
const CODE_FILE = /\.(ts|mjs|js|cjs|toml|sh)$/;
/** Generated modules hold third-party text (Swagger UI), not our references; this file names the patterns it checks. */
const SKIP = /\.generated\.ts$|^check-doc-refs\.mjs$/;

/** @typedef {{ file: string, line: number, what: string }} Problem */

/** @type {Problem[]} */
const problems = [];

/**
 * Every file under `path` (or `path` itself) whose name matches `pattern`.
 * @param {string} path relative to the repository root
 * @param {RegExp} pattern
 * @returns {string[]} paths relative to the repository root
 */
function filesUnder(path, pattern) {
  const abs = join(ROOT, path);
  if (!existsSync(abs)) return [];
  if (statSync(abs).isFile()) return pattern.test(path) ? [path] : [];
  /** @type {string[]} */
  const out = [];
  for (const entry of readdirSync(abs, { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
    const child = join(path, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(child, pattern));
    else if (pattern.test(entry.name) && !SKIP.test(entry.name)) out.push(child);
  }
  return out;
}

/**
 * The headings of a Markdown file (outside fenced code blocks), as text.
 * @param {string} text
 * @returns {string[]}
 */
function headingsOf(text) {
  /** @type {string[]} */
  const out = [];
  let fenced = false;
  for (const line of text.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    else if (!fenced) {
      const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
      if (m) out.push(m[1] ?? "");
    }
  }
  return out;
}

/**
 * GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, `-`, `_` and spaces kept),
 * spaces to `-`.
 * @param {string} heading
 * @returns {string}
 */
function slugOf(heading) {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** @type {Map<string, string[] | null>} headings per docs path (null: no such file) */
const headingCache = new Map();

/**
 * @param {string} path relative to the repository root
 * @returns {string[] | null}
 */
function headingsOfFile(path) {
  if (!headingCache.has(path)) {
    const abs = join(ROOT, path);
    headingCache.set(path, existsSync(abs) && statSync(abs).isFile() ? headingsOf(readFileSync(abs, "utf8")) : null);
  }
  return headingCache.get(path) ?? null;
}

// 1 and 2: references in code.
const DOC_REF = /docs\/([A-Za-z0-9_-]+\.md)((?:[ ,]*(?:and )?§\s?\d+)*)(,\s*"([^"]+)")?/g;
for (const file of CODE_ROOTS.flatMap((r) => filesUnder(r, CODE_FILE))) {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  lines.forEach((text, i) => {
    const at = { file, line: i + 1 };
    if (/DESIGN\s*§/.test(text)) problems.push({ ...at, what: `a bare "DESIGN §" reference: cite docs/ARCHITECTURE.md §N` });
    for (const m of text.matchAll(DOC_REF)) {
      const doc = `docs/${m[1]}`;
      const headings = headingsOfFile(doc);
      if (!headings) {
        problems.push({ ...at, what: `${doc} does not exist` });
        continue;
      }
      for (const n of (m[2] ?? "").matchAll(/§\s?(\d+)/g)) {
        if (!headings.some((h) => h.startsWith(`${n[1]}. `)))
          problems.push({ ...at, what: `${doc} has no heading "${n[1]}. ..." (cited as §${n[1]})` });
      }
      const title = m[4];
      if (title && !headings.some((h) => h.toLowerCase().includes(title.toLowerCase()))) {
        problems.push({ ...at, what: `${doc} has no heading containing "${title}"` });
      }
    }
  });
}

// 2 and 3: the Markdown documents.
const LINK = /!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g;
for (const file of ["README.md", ...filesUnder("docs", /\.md$/)]) {
  if (!existsSync(join(ROOT, file))) continue;
  let fenced = false;
  readFileSync(join(ROOT, file), "utf8")
    .split("\n")
    .forEach((text, i) => {
      const at = { file, line: i + 1 };
      if (/^\s*(```|~~~)/.test(text)) fenced = !fenced;
      if (/DESIGN\s*§/.test(text)) problems.push({ ...at, what: `a bare "DESIGN §" reference: cite docs/ARCHITECTURE.md §N` });
      if (fenced) return;
      for (const m of text.matchAll(LINK)) {
        const target = m[1] ?? "";
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
        const [path = "", anchor] = target.split("#");
        const resolved = path === "" ? file : relative(ROOT, resolve(join(ROOT, dirname(file)), decodeURIComponent(path)));
        if (!existsSync(join(ROOT, resolved))) {
          problems.push({ ...at, what: `link to ${target}: ${resolved} does not exist` });
          continue;
        }
        if (anchor && resolved.endsWith(".md")) {
          const headings = headingsOfFile(resolved) ?? [];
          if (!headings.some((h) => slugOf(h) === anchor))
            problems.push({ ...at, what: `link to ${target}: no heading with anchor #${anchor} in ${resolved}` });
        }
      }
    });
}

if (problems.length > 0) {
  console.error(`doc refs: ${problems.length} broken reference(s):`);
  for (const p of problems) console.error(`  ${p.file}:${p.line}: ${p.what}`);
  process.exit(1);
}
console.log("doc refs: every docs/X.md §N and Markdown link resolves; no bare DESIGN § left");
