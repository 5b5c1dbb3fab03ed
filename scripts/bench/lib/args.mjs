/**
 * Command-line helpers shared by the benchmark scripts: `--name value` options and `--help`.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * `--name value` / `--name=value` from argv, as a number when `fallback` is a number.
 * @template {string | number | undefined} T
 * @param {string} name
 * @param {T} fallback
 * @returns {T extends number ? number : T extends string ? string : string | undefined}
 */
export function arg(name, fallback) {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (a === `--${name}`) return coerce(argv[i + 1], fallback);
    if (a.startsWith(`--${name}=`)) return coerce(a.slice(name.length + 3), fallback);
  }
  return /** @type {any} */ (fallback);
}

/**
 * @param {string | undefined} v
 * @param {unknown} fallback
 * @returns {any}
 */
function coerce(v, fallback) {
  if (v === undefined) return fallback;
  return typeof fallback === "number" ? Number(v) : v;
}

/** Whether `--name` (or `--name=...`) is on the command line. */
export function hasArg(/** @type {string} */ name) {
  return process.argv.slice(2).some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
}

/**
 * With `--help` or `-h`: prints the script's leading doc comment (its usage) and exits 0,
 * before the script starts a server or sends a request. Call it right after the imports.
 * @param {string} scriptUrl the script's `import.meta.url`
 */
export function exitWithHelpIfAsked(scriptUrl) {
  if (!process.argv.slice(2).some((a) => a === "--help" || a === "-h")) return;
  const source = readFileSync(fileURLToPath(scriptUrl), "utf8");
  const doc = /\/\*\*([\s\S]*?)\*\//.exec(source)?.[1] ?? "(no usage text)";
  console.log(
    doc
      .split("\n")
      .map((l) => l.replace(/^\s*\* ?/, ""))
      .join("\n")
      .trim(),
  );
  process.exit(0);
}
